"""Tests of diffrob.metrics against known answers and scikit-image."""

import math

import numpy as np
import pytest
import torch

from diffrob import metrics


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_l2_linf_known_values():
    x = torch.zeros(2, 1, 2, 2)
    y = x.clone()
    y[0, 0, 0, 0], y[0, 0, 1, 1] = 0.3, -0.4
    y[1] = 0.5
    assert metrics.l2(x, y).tolist() == pytest.approx([0.5, 1.0])
    assert metrics.linf(x, y).tolist() == pytest.approx([0.4, 0.5])


def test_uniform_noise_sizes_match_tables_s2_s3():
    # CIFAR-10 shape, uniform noise of 8/255: l2 ~ eps sqrt(3072 / 3) = 1.004, linf = 0.031.
    x = torch.zeros(64, 3, 32, 32, dtype=torch.float64)
    eps = 8 / 255
    noise = (2 * _rand(64, 3, 32, 32) - 1) * eps
    d2, dinf = metrics.l2(x + noise, x), metrics.linf(x + noise, x)
    assert d2.mean().item() == pytest.approx(1.004, abs=0.01)
    assert dinf.max().item() <= eps and dinf.min().item() > 0.99 * eps


def test_distances_broadcast_over_trajectories():
    traj, clean = _rand(5, 3, 1, 4, 4), _rand(3, 1, 4, 4, seed=1)
    d = metrics.l2(traj, clean)
    assert d.shape == (5, 3)
    assert d[2, 1].item() == pytest.approx((traj[2, 1] - clean[1]).norm().item())


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="C, H, W"):
        metrics.l2(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match="broadcast"):
        metrics.linf(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="win_size"):
        metrics.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), win_size=9)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (3, 1, 8, 8), (1, 2, 13, 11)])
def test_ssim_matches_skimage(shape):
    skm = pytest.importorskip("skimage.metrics")
    x = _rand(*shape)
    y = (x + 0.2 * (_rand(*shape, seed=1) - 0.5)).clamp(0, 1)
    ours = metrics.ssim(x, y)
    win = metrics.ssim_window(min(shape[-2:]))
    for i in range(shape[0]):
        ref = skm.structural_similarity(x[i].numpy(), y[i].numpy(), data_range=1.0,
                                        channel_axis=0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, win_size=win)
        assert ours[i].item() == pytest.approx(ref, abs=1e-10)


def test_ssim_properties():
    x = _rand(4, 3, 16, 16)
    assert metrics.ssim(x, x).tolist() == pytest.approx([1.0] * 4)
    noise = _rand(4, 3, 16, 16, seed=2) - 0.5
    values = [metrics.ssim(x, (x + s * noise).clamp(0, 1)) for s in (0.05, 0.2, 0.8)]
    assert (values[0] < 1).all() and (values[0] > values[1]).all() and (values[1] > values[2]).all()
    y = (x + 0.1 * noise).clamp(0, 1)
    assert torch.allclose(metrics.ssim(x, y), metrics.ssim(y, x))
    assert metrics.ssim(x.float(), y.float()).dtype == torch.float64


def test_ssim_hand_computed_constant_images():
    # Constant images a and b: variances vanish, SSIM = (2ab + C1) C2 / ((a^2 + b^2 + C1) C2).
    a, b = 0.2, 0.6
    c1 = 0.01**2
    x, y = (torch.full((1, 1, 9, 9), v, dtype=torch.float64) for v in (a, b))
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert metrics.ssim(x, y).item() == pytest.approx(expected, rel=1e-9)


def test_ssim_window_sizes():
    assert metrics.ssim_window(32) == 11
    assert metrics.ssim_window(8) == 7
    assert metrics.ssim_window(7) == 7


def test_mean_correlation_known_answers():
    base = np.arange(10.0)
    same = np.stack([base, 2 * base + 1, 0.5 * base])
    assert metrics.mean_correlation(same) == pytest.approx(1.0)
    mixed = np.stack([base, -base, base])
    # pairs: (0,1) -1, (0,2) +1, (1,2) -1 -> mean -1/3
    assert metrics.mean_correlation(torch.tensor(mixed)) == pytest.approx(-1 / 3)
    rng = np.random.default_rng(0)
    assert abs(metrics.mean_correlation(rng.normal(size=(50, 4000)))) < 0.01
    with pytest.raises(ValueError, match="n >= 2"):
        metrics.mean_correlation(np.zeros((1, 5)))


def test_mean_std_and_format():
    assert metrics.mean_std([1.0, 3.0]) == (2.0, 1.0)
    assert metrics.format_mean_std(torch.tensor([1.0, 3.0])) == "2.000 ± 1.000"
    with pytest.raises(ValueError):
        metrics.mean_std([math.nan])
