"""Tests of diffrob.trajectories on a tiny randomly initialised digits world."""

import numpy as np
import pytest
import torch

from diffrob import metrics, params, trajectories
from diffrob.worlds import World
from diffrob.worlds import digits


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    p = params.load(None, n_images=5, batch_size=2, t_star=3, eot=3)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return World("digits", x, torch.arange(5), digits.DigitsCNN().eval(),
                 digits.build_unet().eval(), digits.build_scheduler(), p)


def test_uniform_inputs_stay_in_ball_and_are_seeded(world):
    eps = 8 / 255
    x = trajectories.uniform_inputs(world, eps, seed=3)
    assert metrics.linf(x, world.images).max().item() <= eps + 1e-7
    assert torch.equal(x, trajectories.uniform_inputs(world, eps, seed=3))
    assert not torch.equal(x, trajectories.uniform_inputs(world, eps, seed=4))


def test_purify_uses_the_batch_index_of_eq9(world):
    y = trajectories.purify(world, world.images)
    purifier = world.purifier()
    assert torch.equal(y[2:4], purifier(world.images[2:4], 0, 1))
    assert not torch.equal(y[2:4], purifier(world.images[2:4], 0, 0))


def test_distance_curves_match_the_trajectory(world):
    x = trajectories.uniform_inputs(world, 16 / 255)
    c = trajectories.distance_curves(world, x, keep=3)
    assert c.l2.shape == c.linf.shape == (2 * 3 + 1, 5)
    assert c.states.shape == (7, 3, 1, 8, 8)
    assert torch.allclose(c.l2[0], metrics.l2(x, world.images))
    # the last state is the purified image, the same as purify() gives
    y = trajectories.purify(world, x)
    assert torch.allclose(c.l2[-1], metrics.l2(y, world.images), atol=1e-6)
    assert torch.allclose(c.states[-1], y[:3])
    assert (c.linf <= c.l2 + 1e-6).all()
    r = trajectories.distance_curves(world, x, method="reverse")
    assert r.l2.shape == (3 + 1, 5)


def test_init_max_end(world):
    d = torch.arange(7.0).view(7, 1).repeat(1, 4)
    d[:, 0] += 1
    row = trajectories.init_max_end(d, 3)
    assert row["init"][0] == pytest.approx(0.25) and row["max"][0] == pytest.approx(3.25)
    assert row["end"] == pytest.approx((6.25, np.std([7, 6, 6, 6])))
    with pytest.raises(ValueError, match="2 t"):
        trajectories.init_max_end(d, 2)


def test_before_after_rows(world):
    x = trajectories.uniform_inputs(world, 8 / 255)
    after = {m: trajectories.purify(world, x, m) for m in ("ddpm", "onestep")}
    t = trajectories.before_after(world, x, after)
    assert set(t) == {"before", "ddpm", "onestep"}
    assert t["before"]["l2"][0] == pytest.approx(metrics.l2(x, world.images).mean().item())
    assert t["onestep"]["l2"][0] == pytest.approx(metrics.l2(after["onestep"], world.images).mean().item())
    assert 0 < t["before"]["ssim"][0] < 1


def test_randomness_conditions(world):
    eps = 8 / 255
    r = trajectories.randomness(world, eps, n_images=3, n_seeds=4, n_neighbours=5)
    assert set(r.correlation) == {*trajectories.CONDITIONS, "perturbation"}
    assert r.correlation["fixed input"].shape == (3,)
    assert r.centroid["fixed seed"].shape == (5, 3) and r.centroid["fixed input"].shape == (4, 3)
    assert r.example["both vary"].shape == (5, 5)
    # with one seed the purifier's noise is shared, so the outputs stay close:
    # their spread is at most a little more than the inputs'
    assert r.centroid["fixed seed"].mean() < r.centroid["fixed input"].mean()
    # the inputs lie in the eps ball: distance to their centroid <= 2 eps per pixel
    assert (r.centroid["perturbation"] <= 2 * eps * 8 + 1e-6).all()
    # folding seeds into the batch changes nothing: one draw per purifier call agrees
    r1 = trajectories.randomness(world, eps, n_images=3, n_seeds=4, n_neighbours=2, chunk=1)
    assert np.allclose(r1.correlation["fixed input"], r.correlation["fixed input"])
    assert np.allclose(r1.centroid["fixed input"], r.centroid["fixed input"], atol=1e-6)


def test_randomness_runs_only_the_conditions_asked_for(world):
    eps = 8 / 255
    full = trajectories.randomness(world, eps, n_images=3, n_seeds=2, n_neighbours=3)
    part = trajectories.randomness(world, eps, n_images=3, n_seeds=2, n_neighbours=3,
                                   conditions=("fixed seed",))
    assert set(part.correlation) == {"fixed seed", "perturbation"}
    assert np.allclose(part.correlation["fixed seed"], full.correlation["fixed seed"])
    with pytest.raises(ValueError, match="conditions"):
        trajectories.randomness(world, eps, 2, 2, 2, conditions=("fixed",))


def test_randomness_rejects_bad_sizes(world):
    with pytest.raises(ValueError, match="n_images"):
        trajectories.randomness(world, 0.1, n_images=6, n_seeds=2, n_neighbours=2)
    with pytest.raises(ValueError, match="n_seeds"):
        trajectories.randomness(world, 0.1, n_images=2, n_seeds=1, n_neighbours=2)


def test_unclipped_uniform_inputs_are_the_same_draw_and_purify(world):
    x = trajectories.uniform_inputs(world, 64 / 255, seed=3)
    raw = trajectories.uniform_inputs(world, 64 / 255, seed=3, clip=False)
    torch.testing.assert_close(x, raw.clamp(0, 1))
    noise = raw - world.images
    assert noise.abs().max() <= 64 / 255 and (raw.min() < 0 or raw.max() > 1)
    # clipping shrinks the perturbation: the unclipped l2 is eps sqrt(D / 3) on average
    d = world.images[0].numel()
    assert metrics.l2(raw, world.images).mean() == pytest.approx(64 / 255 * (d / 3) ** 0.5, rel=0.05)
    assert metrics.l2(x, world.images).mean() < metrics.l2(raw, world.images).mean()
    # the purifier refuses inputs outside [0,1] unless told they are unclipped on purpose
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        trajectories.distance_curves(world, raw)
    curves = trajectories.distance_curves(world, raw, unclipped=True)
    torch.testing.assert_close(curves.l2[0], metrics.l2(raw, world.images))
    assert torch.isfinite(curves.l2).all()
