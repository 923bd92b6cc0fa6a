"""Tests of the distances wing (sec. 3.1-3.2): the measures against known answers and
scikit-image, the runs on a tiny randomly initialised digits world, and the report's tables."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_world
from diffrob import claims, purifiers, verdicts
from diffrob.distances import analysis, report, report_randomness, runs
from diffrob.figures import Table
from diffrob.params import PURIFIERS


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- analysis: distances, SSIM, correlations ------------------------------------------

def test_l2_linf_known_values():
    x = torch.zeros(2, 1, 2, 2)
    y = x.clone()
    y[0, 0, 0, 0], y[0, 0, 1, 1] = 0.3, -0.4
    y[1] = 0.5
    assert analysis.l2(x, y).tolist() == pytest.approx([0.5, 1.0])
    assert analysis.linf(x, y).tolist() == pytest.approx([0.4, 0.5])


def test_uniform_noise_sizes_match_tables_s2_s3():
    # CIFAR-10 shape, uniform noise of 8/255: l2 ~ eps sqrt(3072 / 3) = 1.004, linf = 0.031.
    x = torch.zeros(64, 3, 32, 32, dtype=torch.float64)
    eps = 8 / 255
    noise = (2 * _rand(64, 3, 32, 32) - 1) * eps
    d2, dinf = analysis.l2(x + noise, x), analysis.linf(x + noise, x)
    assert d2.mean().item() == pytest.approx(1.004, abs=0.01)
    assert dinf.max().item() <= eps and dinf.min().item() > 0.99 * eps


def test_distances_broadcast_over_trajectories():
    traj, clean = _rand(5, 3, 1, 4, 4), _rand(3, 1, 4, 4, seed=1)
    d = analysis.l2(traj, clean)
    assert d.shape == (5, 3)
    assert d[2, 1].item() == pytest.approx((traj[2, 1] - clean[1]).norm().item())


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="C, H, W"):
        analysis.l2(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match="broadcast"):
        analysis.linf(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="win_size"):
        analysis.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), win_size=9)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (3, 1, 8, 8), (1, 2, 13, 11)])
def test_ssim_matches_skimage(shape):
    skm = pytest.importorskip("skimage.metrics")
    x = _rand(*shape)
    y = (x + 0.2 * (_rand(*shape, seed=1) - 0.5)).clamp(0, 1)
    ours = analysis.ssim(x, y)
    win = analysis.ssim_window(min(shape[-2:]))
    for i in range(shape[0]):
        ref = skm.structural_similarity(x[i].numpy(), y[i].numpy(), data_range=1.0,
                                        channel_axis=0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, win_size=win)
        assert ours[i].item() == pytest.approx(ref, abs=1e-10)


def test_ssim_properties():
    x = _rand(4, 3, 16, 16)
    assert analysis.ssim(x, x).tolist() == pytest.approx([1.0] * 4)
    noise = _rand(4, 3, 16, 16, seed=2) - 0.5
    values = [analysis.ssim(x, (x + s * noise).clamp(0, 1)) for s in (0.05, 0.2, 0.8)]
    assert (values[0] < 1).all() and (values[0] > values[1]).all() and (values[1] > values[2]).all()
    y = (x + 0.1 * noise).clamp(0, 1)
    assert torch.allclose(analysis.ssim(x, y), analysis.ssim(y, x))
    assert analysis.ssim(x.float(), y.float()).dtype == torch.float64


def test_ssim_hand_computed_constant_images():
    # Constant images a and b: variances vanish, SSIM = (2ab + C1) C2 / ((a^2 + b^2 + C1) C2).
    a, b = 0.2, 0.6
    c1 = 0.01**2
    x, y = (torch.full((1, 1, 9, 9), v, dtype=torch.float64) for v in (a, b))
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert analysis.ssim(x, y).item() == pytest.approx(expected, rel=1e-9)


def test_ssim_window_sizes():
    assert analysis.ssim_window(32) == 11
    assert analysis.ssim_window(8) == 7
    assert analysis.ssim_window(7) == 7


def test_mean_correlation_known_answers():
    base = np.arange(10.0)
    same = np.stack([base, 2 * base + 1, 0.5 * base])
    assert analysis.mean_correlation(same) == pytest.approx(1.0)
    mixed = np.stack([base, -base, base])
    # pairs: (0,1) -1, (0,2) +1, (1,2) -1 -> mean -1/3
    assert analysis.mean_correlation(torch.tensor(mixed)) == pytest.approx(-1 / 3)
    rng = np.random.default_rng(0)
    assert abs(analysis.mean_correlation(rng.normal(size=(50, 4000)))) < 0.01
    with pytest.raises(ValueError, match="n >= 2"):
        analysis.mean_correlation(np.zeros((1, 5)))


def test_mean_std():
    assert analysis.mean_std([1.0, 3.0]) == (2.0, 1.0)
    assert analysis.mean_std(torch.tensor([1.0, 3.0])) == (2.0, 1.0)
    with pytest.raises(ValueError):
        analysis.mean_std([math.nan])


def test_init_max_end():
    d = torch.arange(7.0).view(7, 1).repeat(1, 4)
    d[:, 0] += 1
    row = analysis.init_max_end(d, 3)
    assert row["init"][0] == pytest.approx(0.25) and row["max"][0] == pytest.approx(3.25)
    assert row["end"] == pytest.approx((6.25, np.std([7, 6, 6, 6])))
    with pytest.raises(ValueError, match="2 t"):
        analysis.init_max_end(d, 2)


def test_floor_ratios():
    init, end = {"a": 2.0, "u": 0.5}, {"a": 3.0, "u": 2.5}
    assert analysis.floor_ratios(init, end, "u", ["a"]) == {
        "a": {"init l2": 2.0, "floor / init": 1.25, "end / init": 1.5}}


def test_randomness_statistics_of_known_outputs():
    clean = torch.zeros(2, 1, 2, 2)
    direction = torch.tensor([1.0, -1.0, 2.0, 0.0]).view(1, 2, 2)
    same = torch.stack([k * direction.expand(2, 1, 2, 2) for k in (1.0, 2.0, 3.0)])  # (3, 2, ...)
    r = analysis.randomness_statistics({"fixed seed": same}, clean)
    assert r.correlation["fixed seed"] == pytest.approx([1.0, 1.0])
    assert r.example["fixed seed"].shape == (3, 3)
    # the outputs k d around their centroid 2 d: distances |k - 2| ||d||
    assert r.centroid["fixed seed"][:, 0] == pytest.approx([6**0.5, 0.0, 6**0.5])


# --- runs on a tiny world -------------------------------------------------------------

@pytest.fixture(scope="module")
def world():
    return tiny_world(5, batch_size=2, t_star=3, eot=3)


def test_uniform_inputs_stay_in_ball_and_are_seeded(world):
    eps = 8 / 255
    x = runs.uniform_inputs(world, eps, seed=3)
    assert analysis.linf(x, world.images).max().item() <= eps + 1e-7
    assert torch.equal(x, runs.uniform_inputs(world, eps, seed=3))
    assert not torch.equal(x, runs.uniform_inputs(world, eps, seed=4))


def test_purify_uses_the_batch_index_of_eq9(world):
    y = purifiers.purify(world, world.images)
    purifier = world.purifier()
    assert torch.equal(y[2:4], purifier(world.images[2:4], 0, 1))
    assert not torch.equal(y[2:4], purifier(world.images[2:4], 0, 0))


def test_distance_curves_match_the_trajectory(world):
    x = runs.uniform_inputs(world, 16 / 255)
    c = runs.distance_curves(world, x, keep=3)
    assert c.l2.shape == c.linf.shape == (2 * 3 + 1, 5)
    assert c.states.shape == (7, 3, 1, 8, 8)
    assert torch.allclose(c.l2[0], analysis.l2(x, world.images))
    # the last state is the purified image, the same as purify() gives
    y = purifiers.purify(world, x)
    assert torch.allclose(c.l2[-1], analysis.l2(y, world.images), atol=1e-6)
    assert torch.allclose(c.states[-1], y[:3])
    assert torch.equal(c.states, purifiers.first_states(world, x, 3))
    assert (c.linf <= c.l2 + 1e-6).all()
    assert c.mean_l2(-1) == pytest.approx(c.l2[-1].double().mean().item())
    r = runs.distance_curves(world, x, method="reverse")
    assert r.l2.shape == (3 + 1, 5)


def test_before_after_rows(world):
    x = runs.uniform_inputs(world, 8 / 255)
    after = {m: purifiers.purify(world, x, m) for m in ("ddpm", "onestep")}
    t = analysis.before_after(world.images, x, after)
    assert set(t) == {"before", "ddpm", "onestep"}
    assert t["before"]["l2"][0] == pytest.approx(analysis.l2(x, world.images).mean().item())
    assert t["onestep"]["l2"][0] == pytest.approx(
        analysis.l2(after["onestep"], world.images).mean().item())
    assert 0 < t["before"]["ssim"][0] < 1


def test_randomness_conditions(world):
    eps = 8 / 255
    r = runs.randomness(world, eps, n_images=3, n_seeds=4, n_neighbours=5)
    assert set(r.correlation) == {*analysis.CONDITIONS, "perturbation"}
    assert r.correlation["fixed input"].shape == (3,)
    assert r.centroid["fixed seed"].shape == (5, 3) and r.centroid["fixed input"].shape == (4, 3)
    assert r.example["both vary"].shape == (5, 5)
    # with one seed the purifier's noise is shared, so the outputs stay close:
    # their spread is at most a little more than the inputs'
    assert r.centroid["fixed seed"].mean() < r.centroid["fixed input"].mean()
    # the inputs lie in the eps ball: distance to their centroid <= 2 eps per pixel
    assert (r.centroid["perturbation"] <= 2 * eps * 8 + 1e-6).all()
    # folding seeds into the batch changes nothing: one draw per purifier call agrees
    r1 = runs.randomness(world, eps, n_images=3, n_seeds=4, n_neighbours=2, chunk=1)
    assert np.allclose(r1.correlation["fixed input"], r.correlation["fixed input"])
    assert np.allclose(r1.centroid["fixed input"], r.centroid["fixed input"], atol=1e-6)


def test_randomness_runs_only_the_conditions_asked_for(world):
    eps = 8 / 255
    full = runs.randomness(world, eps, n_images=3, n_seeds=2, n_neighbours=3)
    part = runs.randomness(world, eps, n_images=3, n_seeds=2, n_neighbours=3,
                           conditions=("fixed seed",))
    assert set(part.correlation) == {"fixed seed", "perturbation"}
    assert np.allclose(part.correlation["fixed seed"], full.correlation["fixed seed"])
    with pytest.raises(ValueError, match="conditions"):
        runs.randomness(world, eps, 2, 2, 2, conditions=("fixed",))


def test_randomness_rejects_bad_sizes(world):
    with pytest.raises(ValueError, match="n_images"):
        runs.randomness(world, 0.1, n_images=6, n_seeds=2, n_neighbours=2)
    with pytest.raises(ValueError, match="n_seeds"):
        runs.randomness(world, 0.1, n_images=2, n_seeds=1, n_neighbours=2)


def test_unclipped_uniform_inputs_are_the_same_draw_and_purify(world):
    x = runs.uniform_inputs(world, 64 / 255, seed=3)
    raw = runs.uniform_inputs(world, 64 / 255, seed=3, clip=False)
    torch.testing.assert_close(x, raw.clamp(0, 1))
    noise = raw - world.images
    assert noise.abs().max() <= 64 / 255 and (raw.min() < 0 or raw.max() > 1)
    # clipping shrinks the perturbation: the unclipped l2 is eps sqrt(D / 3) on average
    d = world.images[0].numel()
    assert analysis.l2(raw, world.images).mean() == pytest.approx(64 / 255 * (d / 3) ** 0.5,
                                                                  rel=0.05)
    assert analysis.l2(x, world.images).mean() < analysis.l2(raw, world.images).mean()
    # the purifier refuses inputs outside [0,1] unless told they are unclipped on purpose
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        runs.distance_curves(world, raw)
    curves = runs.distance_curves(world, raw, unclipped=True)
    torch.testing.assert_close(curves.l2[0], analysis.l2(raw, world.images))
    assert torch.isfinite(curves.l2).all()


# --- report: the chapters' tables -----------------------------------------------------

@pytest.fixture(scope="module")
def distances(tmp_path_factory):
    """Chapter 02's measurements with no attack configured (no adversarial stage)."""
    w = tiny_world(4, batch_size=2, t_star=2, attacks=[], uniform_eps_255=[8, 64],
                   results_dir=str(tmp_path_factory.mktemp("results")))
    return report.distances(w)


def _frame(t: Table) -> pd.DataFrame:
    assert isinstance(t, Table) and t.name.startswith("tbl-")
    return t.frame


def test_measure_without_attacks_uses_uniform_noise(distances):
    m = distances.measured
    assert m.levels == [8, 48, 64] and m.same_size == ["uniform_48"]
    assert set(m.curves) == set(m.clipped) == {"uniform_8", "uniform_48", "uniform_64"}
    assert distances.smallest == "uniform_8"
    assert distances.end["uniform_8"] == pytest.approx(m.curves["uniform_8"].mean_l2(-1))


def test_init_max_end_tables(distances):
    for table, metric in [(report.l2_table(distances), "l2"),
                          (report.linf_table(distances), "linf")]:
        frame = _frame(table)
        assert list(frame.index) == ["uniform_8", "uniform_48", "uniform_64", "uniform_8, clipped",
                                     "uniform_48, clipped", "uniform_64, clipped"]
        ours = analysis.init_max_end(getattr(distances.measured.curves["uniform_8"], metric), 2)
        assert frame.loc["uniform_8", "ours end"] == "{:.3f} ± {:.3f}".format(*ours["end"])
        # the paper's CIFAR-10 row of the same name, where it has one
        assert frame.loc["uniform_8", "paper (cifar10) init"].count("±") == 1
        assert frame.loc["uniform_48", "paper (cifar10) init"] == ""
    assert report.l2_table(distances).name == "tbl-distances-l2"


def test_distance_claims_table(distances, capsys):
    frame = _frame(report.distance_claims(distances))
    assert list(frame.index) == ["l2_grows", "linf_grows", "attacks_like_uniform",
                                 "large_noise_shrinks", "gaussian_toy_model"]
    out = capsys.readouterr().out
    assert "end/init l2:" in out and "toy model at uniform 48/255" in out
    linf = claims.spec("sec31", "linf_grows")["criterion"]      # half the paper's ratio (C.1)
    assert frame.loc["linf_grows", "criterion"] == verdicts.describe(
        {k: v for k, v in linf.items() if k != "registered"})
    assert {"MDE", "n needed"} <= set(frame.columns)


def test_floor_table(distances):
    frame = _frame(report.floor_table(distances))
    assert frame.empty   # no attack: no row, ours nor the paper's


def _sliders(widget) -> list:
    """The IntSliders anywhere in a widget tree (ipywidgets 7 and 8 lay them out differently)."""
    import ipywidgets

    if isinstance(widget, ipywidgets.IntSlider):
        return [widget]
    return [s for child in getattr(widget, "children", ()) for s in _sliders(child)]


def test_scrubber_is_a_slider(distances):
    (slider,) = _sliders(report.scrubber(distances))
    assert slider.max == 2 * 2   # 2 t* + 1 states


def test_samplers_need_examples_in_the_unit_cube(distances):
    # without attacks Table S5 falls back on the unclipped uniform noise, which the
    # purifiers refuse
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        report.samplers(distances)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """Chapter 02's measurements with one attack (BPDA, 2 steps), its store in a temp folder."""
    w = tiny_world(4, batch_size=2, t_star=2, attacks=["bpda"], uniform_eps_255=[8, 64],
                   results_dir=str(tmp_path_factory.mktemp("results")))
    return report.distances(w)


def test_floor_table_with_an_attack(attacked):
    frame = _frame(report.floor_table(attacked))
    ours, theirs = frame.columns.levels[0]
    assert list(frame.index) == ["bpda"]
    init, end = attacked.init, attacked.end
    assert frame.loc["bpda", (ours, "end / init")] == round(end["bpda"] / init["bpda"], 3)
    assert frame.loc["bpda", (ours, "floor / init")] == round(end["uniform_8"] / init["bpda"], 3)
    # the paper's Table S2: floor uniform 8/255 (end 3.598) over BPDA's init 1.027
    assert "paper (cifar10)" in theirs
    assert frame.loc["bpda", (theirs, "floor / init")] == round(3.598 / 1.027, 3)


def test_samplers_tables(attacked, capsys):
    s5 = report.samplers(attacked)
    assert s5.attack == "bpda" and "Table S5 uses bpda" in capsys.readouterr().out
    frame = _frame(report.samplers_table(s5))
    assert list(frame.index) == list(PURIFIERS)
    assert frame.loc["ddpm", "ours l2"].startswith(f"{s5.before_after['before']['l2'][0]:.3f} -> ")
    assert frame.loc["ddpm", "paper (cifar10) ssim"] == "0.963 -> 0.791"
    claims = _frame(report.sampler_claims(s5))
    assert list(claims.index) == ["samplers_push_away", "ssim_falls"]
    assert "(paper: 0.963, 0.966, 0.791)" in capsys.readouterr().out
    said = report.distances_said(attacked, s5)
    assert said["dist_floor_name"] == "uniform 8/255"
    assert said["dist_ratios"].startswith("bpda ") and "uniform 48/255" in said["dist_ratios"]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    w = tiny_world(3, batch_size=2, t_star=2, n_seeds=3, n_neighbours=3, randomness_images=3,
                   results_dir=str(tmp_path_factory.mktemp("results")))
    return report_randomness.randomness(w)


def test_correlation_table(seeds):
    frame = _frame(report_randomness.correlation_table(seeds))
    # the smoke world's attack radius (48/255) is not the ball (8/255): the repeat at 48/255
    assert list(frame.index) == [*report_randomness.ORDER, "fixed seed, attack radius"]
    assert frame.loc["fixed seed", "ours: mean correlation"] == round(
        seeds.r.correlation["fixed seed"].mean(), 4)
    assert frame.loc["fixed input", "paper (cifar10) (ball 8/255)"] == 0.2368
    assert frame.loc["fixed seed, attack radius", "ball (1/255)"] == "48"


def test_centroid_and_claims_tables(seeds):
    frame = _frame(report_randomness.centroid_table(seeds))
    assert list(frame.index) == report_randomness.ORDER
    assert frame.loc["perturbation", "mean l2 to centroid"] == round(
        float(seeds.r.centroid["perturbation"].mean()), 4)
    claims = _frame(report_randomness.randomness_claims(seeds))
    assert list(claims.index) == ["seeds_weakly_correlated", "inputs_almost_identical",
                                  "centroid_spread"]
    said = report_randomness.randomness_said(seeds)
    assert said["rand_seeds"] == f"{seeds.r.correlation['fixed input'].mean():.4f}"


# --- the Gaussian toy model built on eq. 3 --------------------------------------------

def _toy_mc(v, noise_var, delta, n=20000, seed=0):
    d = analysis.toy_monte_carlo(v, noise_var, delta, n, torch.Generator().manual_seed(seed))
    d2 = (d**2).numpy()
    return d2.mean(), d2.std() / math.sqrt(n)


def test_toy_noise_var_is_eq1_as_eq3_in_pixel_units():
    assert analysis.toy_noise_var(0.8) == pytest.approx(0.2 / 0.8 / 4)
    assert analysis.toy_noise_var(0.8, scale=1.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="alpha_bar"):
        analysis.toy_noise_var(1.0)


@pytest.mark.parametrize("delta", [0.0, 0.5, 3.0])
def test_toy_closed_form_matches_monte_carlo_and_a_wrong_d_or_t_fails(delta):
    v = np.linspace(0.001, 0.1, 64)
    s2 = analysis.toy_noise_var(0.9)
    mean, se = _toy_mc(v, s2, delta)
    assert abs(mean - analysis.toy_end_distance2(v, s2, delta)) < 4 * se
    wrong_d = analysis.toy_end_distance2(v[:-1], s2, delta)                 # d = 63
    wrong_t = analysis.toy_end_distance2(v, analysis.toy_noise_var(0.88), delta)
    assert abs(mean - wrong_d) > 4 * se and abs(mean - wrong_t) > 4 * se


def test_toy_pushes_small_perturbations_away_and_shrinks_large_ones():
    v, s2 = np.full(64, 0.05), analysis.toy_noise_var(0.9)
    floor = math.sqrt(analysis.toy_end_distance2(v, s2, 0.0))
    assert math.sqrt(analysis.toy_end_distance2(v, s2, 0.1 * floor)) > 0.1 * floor * 2
    assert math.sqrt(analysis.toy_end_distance2(v, s2, 10 * floor)) < 10 * floor
    with pytest.raises(ValueError, match="data_var"):
        analysis.toy_end_distance2(np.array([-1.0]), s2, 0.0)


def test_data_variances_are_the_covariance_eigenvalues():
    x = _rand(50, 1, 2, 3, seed=3)
    want = np.sort(np.linalg.eigvalsh(np.cov(x.flatten(1).double().numpy().T)))[::-1]
    assert np.allclose(analysis.data_variances(x), want)
    few = analysis.data_variances(x[:3])            # singular covariance: per-pixel variances
    assert np.allclose(few, x[:3].flatten(1).double().var(0).numpy())


def test_fuzzy_grade_is_a_ramp_through_one_half():
    g = analysis.fuzzy_grade(np.array([-1.0, 0.0, 1.0]), 0.5)
    assert g[1] == 0.5 and g[0] == pytest.approx(1 - g[2]) and 0 < g[0] < 0.05


@pytest.mark.parametrize("ratio, verdict", [(3.0, "holds"), (1.2, "does not hold")])
def test_gaussian_toy_model_claim_on_both_sides(tmp_path, ratio, verdict):
    from diffrob import params
    p = params.load("params/smoke.yaml", results_dir=str(tmp_path))
    end = ratio + 0.01 * np.random.default_rng(0).standard_normal(200)
    row = claims.record(p, "sec31", "gaussian_toy_model",
                        verdicts.ratio_of_means(end, np.ones(200)))
    assert row["verdict"] == verdict


def test_toy_on_a_world(distances):
    toy = distances.toy
    assert set(toy.init) == set(distances.init) and len(toy.data_var) == \
        math.prod(distances.world.image_shape)
    ab = distances.world.purifier("ddpm").schedule.alphas_cumprod[toy.t_star - 1].item()
    assert toy.noise_var == pytest.approx(analysis.toy_noise_var(ab))
    assert all(len(s) == runs.TOY_SAMPLES for s in toy.sampled.values())
    fig = report.toy_figure(distances)
    assert len(fig.axes) == 2
