"""Tests of diffrob.cap: slices, psychometric fits, GAAS k and cap volume (sec. 5, appendix A),
and the chapter's tables (report)."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from diffrob import params
from diffrob.cap import analysis, report, runs
from diffrob.worlds import World

D = 64  # an 8x8 image


class Linear2(nn.Module):
    """Two classes: logit_1 - logit_0 = <w, x> - c, so the boundary is the hyperplane <w, x> = c."""

    def __init__(self, w: torch.Tensor, c: float) -> None:
        super().__init__()
        self.w, self.c = w.flatten(), c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w - self.c
        return torch.stack([torch.zeros_like(z), z], 1)


def tilted(theta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit w, an 'adversarial' direction at angle theta to w in the plane of w and a unit
    e orthogonal to w, and a second direction spanning that plane with it, (1, 1, 8, 8)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(D, generator=g, dtype=torch.float64)
    w /= w.norm()
    e = torch.randn(D, generator=g, dtype=torch.float64)
    e -= (e @ w) * w
    e /= e.norm()
    adv = math.cos(theta) * w + math.sin(theta) * e
    second = w if theta > 0 else e          # any vector of the plane, not parallel to adv
    return w, adv.view(1, 1, 8, 8), second.view(1, 1, 8, 8)


def test_disc_points_are_uniform_in_the_disc():
    pts = analysis.disc_points(20000, 3.0, torch.Generator().manual_seed(1))
    r = pts.norm(dim=1)
    assert pts.shape == (20000, 2) and r.max() <= 3.0
    assert abs((r < 1.5).double().mean().item() - 0.25) < 0.015   # area fraction (1/2)^2
    assert pts.mean(0).abs().max() < 0.05
    assert abs((pts[:, 0] > 0).double().mean().item() - 0.5) < 0.015
    with pytest.raises(ValueError, match="radius"):
        analysis.disc_points(10, 0.0)


def test_plane_is_orthonormal_and_spans_the_two_directions():
    g = torch.Generator().manual_seed(2)
    a, s = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    u, v = analysis.plane(a, s)
    uf, vf = u.flatten(1), v.flatten(1)
    torch.testing.assert_close(uf.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(vf.norm(dim=1), torch.ones(3))
    assert (uf * vf).sum(1).abs().max() < 1e-5
    torch.testing.assert_close(uf, a.flatten(1) / a.flatten(1).norm(dim=1, keepdim=True))
    # s lies in span(u, v)
    sf = s.flatten(1)
    rest = sf - (sf * uf).sum(1, keepdim=True) * uf - (sf * vf).sum(1, keepdim=True) * vf
    assert rest.abs().max() < 1e-5
    with pytest.raises(ValueError, match="parallel"):
        analysis.plane(a, 2 * a)
    with pytest.raises(ValueError, match="zero length"):
        analysis.plane(torch.zeros_like(a), s)


def test_decisions_of_a_linear_classifier_match_the_half_plane():
    w, adv, rnd = tilted(0.6)
    clf = Linear2(w, 0.8).double()
    x0 = torch.full((1, 1, 8, 8), 0.5, dtype=torch.float64)
    x0 = x0 - (x0.flatten() @ w) * w.view(1, 1, 8, 8)        # <w, x0> = 0: class 0
    u, v = analysis.plane(adv, rnd)
    pts = analysis.disc_points(2000, 3.0, torch.Generator().manual_seed(3))
    dec = analysis.decisions(clf, x0, u, v, pts, batch_size=300)[0]
    wu, wv = (u.flatten() @ w).item(), (v.flatten() @ w).item()
    expected = (pts[:, 0] * wu + pts[:, 1] * wv > 0.8).long()
    assert torch.equal(dec, expected) and 0 < dec.sum() < len(dec)


def linear_slice(theta: float, c: float = 0.8, n: int = 1000, radius: float = 3.0):
    w, adv, rnd = tilted(theta)
    x0 = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    u, v = analysis.plane(adv, rnd)
    pts = analysis.disc_points(n, radius, torch.Generator().manual_seed(4))
    dec = analysis.decisions(Linear2(w, c).double(), x0, u, v, pts)
    return pts[:, 0].numpy(), (dec != 0).numpy()   # label 0: adversarial = class 1


def test_linear_classifier_slope_grows_as_the_boundary_sharpens_threshold_at_the_boundary():
    """Boundary <w, x> = c seen along u at angle theta to w: it crosses the u axis at
    c / cos(theta), and the transition along u sharpens as theta -> 0."""
    c, slopes = 0.5, []
    for theta in (1.0, 0.7, 0.4, 0.2, 0.0):
        x, y = linear_slice(theta, c)
        fit = analysis.fit_psychometric(x, y, C=1e4)
        slopes.append(fit.slope[0])
        # the boundary crosses the u axis at c / cos(theta); a tilted boundary cuts chords
        # of unequal length, which biases the logistic threshold by up to ~0.2 tan(theta)
        assert abs(fit.threshold[0] - c / math.cos(theta)) < 0.03 + 0.2 * math.tan(theta), theta
        assert fit.separable[0] == (theta == 0.0)
    assert all(a < b for a, b in zip(slopes, slopes[1:])), slopes
    assert slopes[-1] > 10 * slopes[0]


def test_fit_recovers_a_known_logistic_slope_and_threshold():
    rng = np.random.default_rng(5)
    x = rng.uniform(-3, 3, size=40000)
    y = rng.random(40000) < 1 / (1 + np.exp(-3.0 * (x - 0.5)))
    fit = analysis.fit_psychometric(x, y[None], C=1e6)
    assert abs(fit.slope[0] - 3.0) < 0.15 and abs(fit.threshold[0] - 0.5) < 0.03
    assert not fit.separable[0]


def test_slices_without_a_boundary_are_flagged_and_excluded():
    x = np.linspace(-3, 3, 101)
    y = np.stack([np.zeros(101, bool), np.ones(101, bool), x > 1.0])
    fit = analysis.fit_psychometric(x, y)
    assert fit.boundary.tolist() == [False, False, True] and fit.n_without_boundary == 2
    assert np.isnan(fit.slope[:2]).all() and np.isnan(fit.threshold[:2]).all()
    assert fit.separable.tolist() == [False, False, True] and abs(fit.threshold[2] - 1.0) < 0.05
    fitted, empirical = analysis.aligned_curve(x, y, fit, np.linspace(-1, 1, 21))
    assert np.isfinite(fitted).all()


def test_regularisation_caps_the_slope_of_a_sharp_boundary():
    """With C = 1 a perfect step in a 1000-point disc of radius 3 fits k of about 7 (the
    paper's scale); weaker regularisation gives a larger k; sharp_slope is that ceiling."""
    x = analysis.disc_points(1000, 3.0, torch.Generator().manual_seed(6))[:, 0].numpy()
    step = (x > 0.0)[None]
    k1 = analysis.fit_psychometric(x, step, C=1.0).slope[0]
    k100 = analysis.fit_psychometric(x, step, C=100.0).slope[0]
    assert 6.0 < k1 < 8.0 and k100 > 3 * k1
    ceiling = analysis.sharp_slope(x, np.array([0.0, np.nan]), C=1.0)
    assert abs(ceiling[0] - k1) < 1e-6 and np.isnan(ceiling[1])
    xt, yt = linear_slice(0.9)
    fit = analysis.fit_psychometric(xt, yt)
    assert fit.slope[0] / analysis.sharp_slope(xt, fit.threshold)[0] < 0.5


def test_aligned_curve_of_steps_is_a_step_at_zero():
    x = np.linspace(-3, 3, 601)
    y = np.stack([x > t for t in (-1.0, 0.3, 1.2)])
    fit = analysis.fit_psychometric(x, y, C=1e4)
    grid = np.linspace(-1.0, 1.0, 41)
    fitted, empirical = analysis.aligned_curve(x, y, fit, grid)
    assert (empirical[grid < -0.1] == 0).all() and (empirical[grid > 0.1] == 1).all()
    assert (np.diff(fitted) >= 0).all() and abs(fitted[20] - 0.5) < 1e-6
    with pytest.raises(ValueError, match="grid"):
        analysis.aligned_curve(x, y, fit, np.array([0.0, 1.0, 3.0]))


def test_gaas_k_known_values():
    assert analysis.gaas_k(0.5, 3072) == 4
    assert analysis.gaas_k(0.2, 3072) == 25           # Tramer et al.'s ~25 directions
    assert analysis.gaas_k(1.0, 3072) == 1
    assert analysis.gaas_k(0.01, 64) == 64             # bounded by the dimension
    assert analysis.gaas_k(1.5, 64) == 0               # threshold beyond the ball
    assert analysis.gaas_k(np.array([0.5, 0.2]), 10).tolist() == [4, 10]
    with pytest.raises(ValueError, match="alpha"):
        analysis.gaas_k(0.0, 10)


@pytest.mark.parametrize("b", [0.0, 0.25, 0.6, 0.95])
def test_cap_volume_closed_forms_in_one_and_three_dimensions(b):
    assert analysis.cap_volume_ratio(b, 1) == pytest.approx((1 - b) / 2)
    h = 1 - b
    assert analysis.cap_volume_ratio(b, 3) == pytest.approx(h**2 * (3 - h) / 4)
    assert analysis.cap_volume_ratio(-b, 3) == pytest.approx(1 - h**2 * (3 - h) / 4)


@pytest.mark.parametrize("d,b", [(2, 0.3), (10, 0.2), (40, 0.1)])
def test_cap_volume_matches_monte_carlo(d, b):
    g = torch.Generator().manual_seed(d)
    n = 400_000
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    r = torch.rand(n, generator=g, dtype=torch.float64) ** (1 / d)
    x1 = z[:, 0] / z.norm(dim=1) * r                    # uniform in the unit d-ball
    mc = (x1 > b).double().mean().item()
    exact = analysis.cap_volume_ratio(b, d)
    assert abs(mc - exact) < 5 * math.sqrt(exact * (1 - exact) / n) + 1e-4


def test_cap_volume_is_finite_and_shrinks_in_high_dimension():
    v = analysis.cap_volume_ratio(np.array([0.0, 0.05, 0.1, 1.0, 2.0]), 3072)
    assert v[0] == pytest.approx(0.5) and v[3] == 0 and v[4] == 0
    assert 0 < v[2] < v[1] < 0.5
    assert analysis.cap_volume_ratio(0.1, 3072) < analysis.cap_volume_ratio(0.1, 64)
    with pytest.raises(ValueError, match="d >= 1"):
        analysis.cap_volume_ratio(0.1, 0)


def linear_world(tmp_path, wrong: tuple[int, ...] = (), c: float = 4.0) -> World:
    """Six random 8x8 images and the linear two-class classifier <w, x> = c (w: ``tilted``),
    labelled by it except the rows ``wrong``; 4 images sliced at 300 points, R = 3."""
    w = tilted(0.0)[0].float()
    clf = Linear2(w, c)
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    labels = clf(images).argmax(1)
    labels[list(wrong)] = 1 - labels[list(wrong)]
    P = params.load(None, cap_images=4, cap_points=300, cap_radius=3.0, batch_size=3,
                    results_dir=str(tmp_path))
    return World("linear", images, labels, clf, None, None, P)


def test_slice_world_on_a_linear_world(monkeypatch, tmp_path):
    """The pipeline on a linear two-class world, with the exact adversarial direction."""
    world = linear_world(tmp_path, wrong=(3,), c=0.5)          # row 3 misclassified: not sliced
    images, clf, w, P = world.images, world.classifier, world.classifier.w, world.params

    def fake(classifier, x, y, eps, steps, step_size, generator=None):
        sign = (1 - 2 * y.float()).view(-1, 1, 1, 1)          # towards the other class
        return 0.1 * sign * w.view(1, 1, 8, 8)

    monkeypatch.setattr(runs, "pgd_directions", fake)
    s = runs.slice_world(world)
    assert s.predictions.shape == (4, 300) and s.index.tolist() == [0, 1, 2, 4]
    fit = analysis.fit_psychometric(s.projection, s.adversarial)
    distance = (clf.c - images[s.index].flatten(1) @ w).abs().numpy()
    assert (distance < 2.5).all()                                # every boundary in the disc
    assert fit.boundary.all() and fit.separable.all()
    np.testing.assert_allclose(fit.threshold, distance, atol=0.1)
    with pytest.raises(ValueError, match="second"):
        runs.slice_world(world, second="other")

    def fail(*args, **kwargs):
        raise AssertionError("recomputed a stored batch")

    monkeypatch.setattr(runs, "pgd_directions", fail)              # now read from the store
    again = runs.slice_world(world)
    assert np.array_equal(again.predictions, s.predictions)
    np.testing.assert_allclose(again.attack_length, 0.1)
    assert again.attack_success.tolist() == s.attack_success.tolist()
    nothing_right = World("linear", images, 1 - clf(images).argmax(1), clf, None, None, P)
    with pytest.raises(ValueError, match="none of the 6 test images is classified correctly"):
        runs.slice_world(nothing_right)


def test_points_are_not_clipped_and_summary_excludes_slices_without_boundary():
    seen = []

    def spy(x):
        seen.append((x.min().item(), x.max().item()))
        return torch.stack([x.flatten(1).sum(1), torch.zeros(len(x))], 1)

    x0 = torch.full((1, 1, 8, 8), 0.5)
    u, v = analysis.plane(torch.ones(1, 1, 8, 8), torch.randn(1, 1, 8, 8))
    analysis.decisions(spy, x0, u, v, analysis.disc_points(100, 3.0))
    assert min(s[0] for s in seen) < 0 and max(s[1] for s in seen) > 1

    x = np.linspace(-3, 3, 201)
    y = np.stack([np.zeros(201, bool), x > 0.5, 1 / (1 + np.exp(-2 * x)) > np.linspace(0, 1, 201)])
    fit = analysis.fit_psychometric(x, y)
    s = analysis.slope_summary(fit, analysis.sharp_slope(x, fit.threshold))
    assert s["slices"] == 3 and s["without boundary"] == 1 and s["separable"] == 1
    k = fit.slope[1:]
    assert s["mean slope"] == pytest.approx(k.mean()) and s["std slope"] == pytest.approx(k.std(ddof=1))
    assert s["fraction slope > 6"] == pytest.approx((k > 6).mean())
    assert s["median sharpness"] <= 1.0 + 1e-6


def test_slice_figure_draws_both_panels():
    import matplotlib
    matplotlib.use("Agg")
    x, y = linear_slice(0.3)
    pts = np.stack([x, np.zeros_like(x)], 1)
    s = runs.Slices(pts, y.astype(int), np.array([0]), np.array([5]), np.array([1.0]),
                   np.array([True]), 3.0, "random")
    fig = report.slice_figure(s, 0, analysis.fit_psychometric(s.projection, s.adversarial))
    assert len(fig.axes) == 2 and "image 5" in fig._suptitle.get_text()


def test_sharpness_of_a_tilted_boundary_depends_on_C():
    """The ratio slope / ceiling is not C-free: for a boundary tilted 45 degrees in the plane
    it falls as the penalty weakens (about 0.27 / 0.13 / 0.06 at C = 1 / 10 / 100)."""
    x, y = linear_slice(math.pi / 4)
    sens = analysis.slope_sensitivity(x, y, Cs=(1.0, 10.0, 100.0))
    sharp = [sens[c]["median sharpness"] for c in (1.0, 10.0, 100.0)]
    assert sharp[0] > 1.5 * sharp[1] > 2.25 * sharp[2], sharp
    xs, ys = linear_slice(0.0)                                   # an untilted step stays at ~1
    assert all(abs(v["median sharpness"] - 1) < 0.05
               for v in analysis.slope_sensitivity(xs, ys).values())


def test_eq7_second_equality_of_the_paper_does_not_hold():
    """Erratum: eq. 7 writes 1/2 I_{1-b^2}((d+1)/2, 1/2) = 1/2 (1 - I_{b^2}((d+1)/2, 1/2)).
    By I_x(a, b) = 1 - I_{1-x}(b, a) the second form should swap the arguments; as printed it
    gives ~0.5 at d = 3072, beta_bar = 0.1, where the first (our) form gives ~1.4e-8."""
    from scipy.special import betainc

    d, b = 3072, 0.1
    first = analysis.cap_volume_ratio(b, d)
    printed_second = 0.5 * (1 - betainc((d + 1) / 2, 0.5, b**2))
    swapped = 0.5 * (1 - betainc(0.5, (d + 1) / 2, b**2))
    assert 1e-8 < first < 2e-8 and abs(printed_second - 0.5) < 1e-6
    assert first == pytest.approx(swapped, rel=1e-6)


def test_l2_threat_radius_of_the_linf_ball():
    assert analysis.linf_ball_l2_radius(8 / 255, 3072) == pytest.approx(1.7388, abs=1e-4)
    with pytest.raises(ValueError, match="eps"):
        analysis.linf_ball_l2_radius(-1.0, 3)


def test_logit_ranges_of_a_linear_classifier():
    w, adv, rnd = tilted(0.0)
    clf = Linear2(w, 0.3).double()
    x0 = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    directions = torch.cat([adv, rnd])
    r = analysis.logit_ranges(clf, x0, directions, radius=2.0, grid=8)
    # logit 1 = <w, x> - c changes by |<w, u>| gamma over gamma in [0, 2): 2 * 7/8 |<w, u>|
    want = 1.75 * (directions.flatten(1) / directions.flatten(1).norm(dim=1, keepdim=True)
                   @ w).abs()
    torch.testing.assert_close(r[:, 1], want)
    torch.testing.assert_close(r[:, 0], torch.zeros(2, dtype=torch.float64))
    assert r[0, 1] > 1.7 and r[1, 1] < 1e-12        # along w vs orthogonal to w


def test_gaas_directions_are_orthogonal_with_equal_projections():
    g = torch.randn(50, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    r = analysis.gaas_directions(g, 7, 0.5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(r @ r.T, 0.25 * torch.eye(7, dtype=torch.float64))
    torch.testing.assert_close(r @ (g / g.norm()), torch.full((7,), 0.5 / 7**0.5, dtype=torch.float64))


@pytest.mark.parametrize("c", [0.1, 0.26, 0.45])  # not on a tie: 1 / alpha^2 an integer
def test_measured_orthogonal_directions_of_a_linear_classifier_match_gaas_k(c):
    """Linear two-class classifier, margin gamma = c, radius eps = 1: the construction finds
    exactly k = floor(1 / alpha^2) adversarial orthogonal directions (A.2), capped at max_k."""
    w, _, _ = tilted(0.0)
    clf = Linear2(w, c).double()
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    count = analysis.orthogonal_adversarial_count(clf, x, y, 1.0, 40, torch.Generator().manual_seed(0))
    assert count[0] == min(analysis.gaas_k(c / 1.0, D), 40)


@pytest.mark.parametrize("d,b", [(2, 0.3), (10, 0.2), (64, 0.05)])
def test_monte_carlo_cap_share_matches_eq7(d, b):
    n = 200_000
    mc = analysis.monte_carlo_cap_share(b, d, n, seed=0)
    exact = analysis.cap_volume_ratio(b, d)
    assert abs(mc - exact) < 5 * math.sqrt(exact * (1 - exact) / n) + 1e-4
    assert mc == analysis.monte_carlo_cap_share(b, d, n, seed=0)          # seeded
    assert analysis.monte_carlo_cap_share(0.0, 1, n, seed=1) == pytest.approx(0.5, abs=0.01)


def test_gaas_k_at_the_fitted_thresholds():
    threshold = np.array([np.nan, 0.5, -0.1, 0.2])
    k, usable = analysis.gaas_k_at_thresholds(threshold, np.array([False, True, True, True]),
                                              1.0, 3072)
    assert k.tolist() == [-1, 4, -1, 25] and usable.tolist() == [False, True, False, True]


def test_logit_range_ratio_is_the_largest_over_logits():
    adv = torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    rand = torch.tensor([[1.0, 0.1], [1.0, 0.0]], dtype=torch.float64)
    ratio = analysis.logit_range_ratio(adv, rand)
    assert ratio.tolist() == pytest.approx([10.0, 3e12])


@pytest.fixture
def sliced(tmp_path) -> report.Sliced:
    """The chapter's slices of the linear world, its boundary about 1 from the images
    (real PGD directions)."""
    return report.slices(linear_world(tmp_path, c=0.5))


def test_report_slices_and_setting(sliced):
    r = sliced
    assert r.d == 64 and r.n_correct == 6 and len(r.random.index) == 4
    assert r.random.second == "random" and r.adversarial.second == "adversarial"
    assert len(r.fits.slope) == len(r.fits2.slope) == len(r.ceiling) == 4
    assert r.eps_l2 == pytest.approx(32 / 255 * 8)
    assert r.example == (int(np.flatnonzero(r.fits.boundary)[0]) if r.fits.boundary.any() else 0)
    assert report.setting(r).startswith("digits: d = 64, 6 test images, 6 classified correctly, "
                                        "4 sliced; 300 points per slice within l2 radius R = 3;")


def test_radius_table(sliced):
    t = report.radius_table(sliced)
    assert t.name == "tbl-cap-radius" and t.frame.shape == (6, 2)
    assert t.frame.columns.tolist() == ["paper (CIFAR-10)", "ours"]
    ours = t.frame["ours"]
    assert ours["disc radius R (used: cap_radius)"] == "3"
    assert t.frame["paper (CIFAR-10)"]["R / attack length"] == "3"
    assert ours["R by sec. 5's rule (3 x the attack length)"] == \
        f"{3 * np.median(sliced.random.attack_length):.3g}"
    assert ours["median l2 length of the PGD perturbation"] == \
        f"{np.median(sliced.random.attack_length):.3g}"
    assert ours["median threshold x0 (boundary along u)"] == f"{np.median(sliced.thresholds):.3g}"
    assert ours["slices without a boundary in the disc"] == "0 of 4"


def test_radius_sweep(sliced):
    t = report.radius_sweep(sliced)
    assert t.name == "tbl-cap-radii"
    rule = round(sliced.rule_radius, 3)
    assert f"R = {rule:g} (sec. 5's rule)" in t.frame.index
    assert {"R = 2.25", "R = 3", "R = 4.5"} <= set(t.frame.index)
    assert t.frame.columns.tolist() == ["mean slope", "median sharpness",
                                        "median 10-90 % width / attack length", "without boundary",
                                        "adversarial share, far half (projection < 0)",
                                        "adversarial share, near half"]
    at_3 = t.frame.loc["R = 3"]     # the first 16 (here all 4) images at R = 3: the same slices
    assert at_3["without boundary"] == sliced.fits.n_without_boundary
    s = sliced.random
    assert at_3["adversarial share, near half"] == \
        round(s.adversarial[:, s.projection >= 0].mean(), 3)


def test_slope_and_sensitivity_tables(sliced):
    t = report.slope_table(sliced)
    assert t.name == "tbl-cap-slopes"
    assert t.frame.columns.tolist() == ["paper (CIFAR-10, adv. + random)", "ours (adv. + random)",
                                        "ours (two adv.)"]
    paper = t.frame["paper (CIFAR-10, adv. + random)"]
    assert paper["mean slope"] == "5.91" and paper["fraction slope > 6"] == "most"
    assert t.frame.loc["slices", "ours (adv. + random)"] == "4"
    assert t.frame.loc["median sharpness", "ours (two adv.)"] == "-"       # no ceiling there
    c = report.sensitivity_table(sliced)
    assert c.name == "tbl-cap-c" and c.frame.index.name == "C"
    assert c.frame.index.tolist() == [0.1, 1.0, 10.0, 100.0]
    assert c.frame.columns.tolist() == ["mean slope", "median slope", "median sharpness",
                                        "median 10-90 % width / attack length (fit-free)"]
    assert c.frame.iloc[:, 3].nunique() == 1                  # the width has no C
    assert "fraction width < 0.732 attack lengths" in t.frame.index


def test_slopes_text(sliced):
    k = sliced.fits.slope[sliced.fits.boundary]
    assert report.slopes_text(sliced) == (f"{k.mean():.2f} ± {k.std():.2f} over {len(k)} slices, "
                                          f"{(k > 6).mean():.0%} above 6")
    flat = analysis.fit_psychometric(sliced.random.projection, np.zeros((4, 300), bool))
    assert report.slopes_text(dataclasses.replace(sliced, fits=flat)) == \
        "no slice crosses the boundary"


def test_volume_table(sliced):
    t = report.volume_table(sliced)
    assert t.name == "tbl-cap-volume" and t.frame.shape == (8, 1)
    v = t.frame["value"]
    assert v["d"] == "64"
    assert v["Tramer et al. 2017: orthogonal directions (MNIST, DREBIN)"] == "25"
    assert abs(float(v["Monte Carlo at the median alpha (200 000 points)"])
               - float(v["eq. 7 at the median alpha"])) < 0.01


def test_gaas_table_and_agreement(sliced, capsys):
    g = report.orthogonal(sliced)
    assert g.measured.shape == g.formula.shape == g.usable.shape == (4,)
    assert g.max_k == 32 and g.paper == 25 and (g.measured <= 32).all()
    t = report.gaas_table(g)
    assert t.name == "tbl-cap-gaas" and t.frame.shape == (3, 3)
    assert t.frame.iloc[2].tolist()[:2] == [int(g.usable.sum())] * 2
    report.print_agreement(g)
    assert capsys.readouterr().out.startswith("correlation of measured and formula counts") \
        == bool(g.usable.any())
    report.print_agreement(dataclasses.replace(g, usable=np.zeros(4, bool)))
    assert capsys.readouterr().out == ""
    none = dataclasses.replace(g, usable=np.zeros(4, bool))
    assert report.gaas_table(none).frame.iloc[0, 1] == "-"


def test_logit_ranges_and_claims_tables(sliced):
    t = report.logit_ranges_table(sliced)
    assert t.name == "tbl-cap-logit-ranges" and t.frame.shape == (4, 1)
    assert t.frame["value"]["images with a ratio above 1"].endswith(" of 4")
    claims = report.claims_table(sliced)
    assert claims.name == "tbl-cap-claims" and len(claims.frame) == 2


# --- the fit-free transition width and the radius rule (sec. 5) ----------------------------

def _logistic_slices(k: float, n_slices: int = 40, x0: float = 0.5, seed: int = 0):
    x = analysis.disc_points(1000, 3.0, torch.Generator().manual_seed(seed)).numpy()[:, 0]
    rng = np.random.default_rng(seed)
    return x, rng.random((n_slices, len(x))) < 1 / (1 + np.exp(-k * (x - x0)))


def test_logistic_width_is_2_ln_9_over_k():
    assert analysis.logistic_width(6.0) == pytest.approx(2 * math.log(9) / 6)
    assert analysis.logistic_width(6.0) == pytest.approx(0.732, abs=1e-3)
    with pytest.raises(ValueError, match="slope"):
        analysis.logistic_width(0.0)


@pytest.mark.parametrize("k", [2.0, 6.0, 20.0])
def test_transition_width_of_known_logistic_slices(k):
    x, y = _logistic_slices(k)
    w = analysis.transition_width(x, y)
    assert np.isfinite(w).all()
    assert np.median(w) == pytest.approx(analysis.logistic_width(k), rel=0.2)


def test_transition_width_does_not_move_with_C_while_the_slope_does():
    x, y = _logistic_slices(6.0)
    slopes = [analysis.fit_psychometric(x, y, C=c).slope.mean() for c in (0.1, 100.0)]
    assert slopes[1] > 1.5 * slopes[0]                      # the fit follows its regulariser
    w = analysis.transition_width(x, y)                       # no C anywhere
    assert np.median(w) == pytest.approx(analysis.logistic_width(6.0), rel=0.2)


def test_transition_width_of_a_step_is_zero_and_nan_without_boundary():
    x, _ = _logistic_slices(6.0, n_slices=1)
    y = np.stack([x > 0.3, np.zeros_like(x, bool), x > 2.999])
    w = analysis.transition_width(x, y)
    assert w[0] == 0 and np.isnan(w[1]) and np.isnan(w[2])
    with pytest.raises(ValueError, match="projection"):
        analysis.transition_width(x[:-1], y)


def test_rule_radius_is_three_attack_lengths():
    assert analysis.rule_radius(np.array([0.9, 1.0, 1.2]), 3.0) == pytest.approx(3.0)
    assert analysis.rule_radius(np.array([0.5]), 3.0) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="attack_length"):
        analysis.rule_radius(np.array([0.0, 1.0]), 3.0)


def test_gaas_count_clipped_to_the_linf_ball_cannot_exceed_the_unclipped_one():
    torch.manual_seed(0)
    w = torch.randn(16, dtype=torch.float64)
    clf = lambda z: torch.stack([-(z.flatten(1) @ w - 0.5), z.flatten(1) @ w - 0.5], 1)
    x, y = torch.zeros(1, 1, 4, 4, dtype=torch.float64), torch.tensor([0])
    free = analysis.orthogonal_adversarial_count(clf, x, y, 2.0, 8,
                                                 torch.Generator().manual_seed(0))
    clipped = analysis.orthogonal_adversarial_count(clf, x, y, 2.0, 8,
                                                    torch.Generator().manual_seed(0), linf=0.05)
    assert clipped[0] < free[0]
    with pytest.raises(ValueError, match="linf"):
        analysis.orthogonal_adversarial_count(clf, x, y, 2.0, 8, linf=0.0)


@pytest.mark.parametrize("sharp, verdict", [(30, "holds"), (5, "does not hold")])
def test_sharp_transitions_on_both_sides(tmp_path, sharp, verdict):
    from diffrob import claims, verdicts
    p = params.load("params/smoke.yaml", results_dir=str(tmp_path))
    flags = np.r_[np.ones(sharp), np.zeros(35 - sharp)] > 0
    row = claims.record(p, "sec5", "sharp_transitions", verdicts.proportion(flags))
    assert row["verdict"] == verdict
