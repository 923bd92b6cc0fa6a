"""Sec. 6 against known answers: linear toy purifiers and classifiers (analysis), the stored
stages on a tiny world (runs), and the chapter's tables and availability branches (report)."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch.autograd import forward_ad

from diffrob import verdicts
from diffrob.autodiff import forward_mode
from diffrob.compression import analysis as C
from diffrob.compression import analysis_boundary as B
from diffrob.compression import report, runs
from diffrob.compression.analysis import Response
from diffrob.params import Params
from diffrob.purifiers import Purifier
from diffrob.worlds import digits

SHAPE = (1, 2, 3)  # D = 6
D = 6


def linear_map(a: torch.Tensor, b: torch.Tensor | None = None):
    """The toy "purifier" f(x) = A x + b on flattened images."""
    def f(x):
        y = x.flatten(1) @ a.T.to(x.dtype)
        if b is not None:
            y = y + b.to(x.dtype)
        return y.view(x.shape[0], *SHAPE)
    return f


@pytest.fixture
def matrix():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    eig = torch.tensor([1.5, 0.9, 0.5, 0.3, 0.2, 0.1], dtype=torch.float64)
    p = q + 0.3 * torch.eye(D, dtype=torch.float64)
    a = p @ torch.diag(eig) @ torch.linalg.inv(p)  # eigenvalues eig, not symmetric
    return a, eig


def test_jacobian_of_linear_map_is_its_matrix(matrix):
    a, _ = matrix
    f = linear_map(a, torch.arange(D, dtype=torch.float64))
    x0 = torch.rand(SHAPE, dtype=torch.float64)
    for chunk in (1, 4, 64):
        torch.testing.assert_close(C.jacobian(f, x0, chunk=chunk), a)
    torch.testing.assert_close(C.jacobian_rowwise(f, x0), a)


def test_spectrum_of_linear_map(matrix):
    a, eig = matrix
    s = C.jacobian_spectrum(a)
    torch.testing.assert_close(s.eigenvalues, eig)
    torch.testing.assert_close(s.singular_values, torch.linalg.svdvals(a))
    summary = C.spectrum_summary(torch.stack([eig, eig]))
    assert summary == {"top_mean": 1.5, "top_std": 0.0, "below_low": 2.0, "above_high": 1.0,
                       "dim": D}


def test_complex_eigenvalues_are_reported_by_magnitude():
    rot = torch.tensor([[0.0, -2.0], [2.0, 0.0]])  # eigenvalues +-2i
    torch.testing.assert_close(C.jacobian_spectrum(rot).eigenvalues,
                               torch.tensor([2.0, 2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="square"):
        C.jacobian_spectrum(torch.zeros(2, 3))


def test_pca_spectrum_of_linear_map(matrix):
    a, _ = matrix
    eps, n = 0.1, 20000
    x0 = torch.full(SHAPE, 0.5, dtype=torch.float64)
    hood = C.pca_spectra(linear_map(a), x0, eps, n, k=D, generator=torch.Generator().manual_seed(1))
    var = eps**2 / 3  # variance of U(-eps, eps)
    torch.testing.assert_close(hood.before, torch.full((D,), var, dtype=torch.float64),
                               rtol=0.06, atol=0)
    torch.testing.assert_close(hood.after, var * torch.linalg.svdvals(a) ** 2, rtol=0.06, atol=0)
    # the rates of the same samples are those of the matrix
    pts = C.linf_neighbours(x0, eps, n, torch.Generator().manual_seed(1)).flatten(1) - 0.5
    torch.testing.assert_close(hood.rates, (pts @ a.T).norm(dim=1) / pts.norm(dim=1))
    assert len(C.pca_spectra(linear_map(a), x0, eps, 10, k=3).after) == 3


def test_pca_spectrum_exact_on_known_points():
    pts = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    torch.testing.assert_close(C.pca_spectrum(pts), torch.tensor([8 / 3, 2 / 3], dtype=torch.float64))


def test_compression_rate_of_linear_map(matrix):
    a, _ = matrix
    x0 = torch.full(SHAPE, 0.5, dtype=torch.float64)
    eta = 0.05 * torch.randn((7, *SHAPE), generator=torch.Generator().manual_seed(2),
                             dtype=torch.float64)
    rate = C.compression_rate(linear_map(a, torch.ones(D, dtype=torch.float64)), x0, eta, chunk=3)
    e = eta.flatten(1)
    torch.testing.assert_close(rate, (e @ a.T).norm(dim=1) / e.norm(dim=1))
    scaled = C.compression_rate(linear_map(0.25 * torch.eye(D, dtype=torch.float64)), x0, eta)
    torch.testing.assert_close(scaled, torch.full((7,), 0.25, dtype=torch.float64))


def linear_classifier(w, b):
    return lambda x: x.flatten(1).double() @ w.T + b


def test_critical_threshold_of_linear_classifier_is_its_margin():
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(2, D, generator=g, dtype=torch.float64), torch.randn(2, generator=g,
                                                                          dtype=torch.float64)
    clf = linear_classifier(w, b)
    x = torch.randn((20, *SHAPE), generator=g, dtype=torch.float64)
    y = clf(x).argmax(1)
    sign = torch.where(y == 0, 1.0, -1.0).double()
    normal = (w[1] - w[0]) * sign.view(-1, 1)  # towards the other class
    margin = (clf(x)[:, 0] - clf(x)[:, 1]).abs() / (w[1] - w[0]).norm()
    crit = B.critical_threshold(clf, x, normal.view(-1, *SHAPE), y, max_dist=10.0, tol=1e-7)
    reachable = margin <= 10.0
    torch.testing.assert_close(crit[reachable], margin[reachable], atol=1e-6, rtol=0)
    assert torch.isinf(crit[~reachable]).all()
    # moving away from the boundary never flips; a misclassified start is 0
    away = B.critical_threshold(clf, x, -normal.view(-1, *SHAPE), y, max_dist=10.0)
    assert torch.isinf(away).all()
    assert (B.critical_threshold(clf, x, normal.view(-1, *SHAPE), 1 - y) == 0).all()


def test_critical_threshold_multiclass_random_direction():
    g = torch.Generator().manual_seed(4)
    w, b = torch.randn(5, D, generator=g, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    clf = linear_classifier(w, b)
    x = torch.randn((30, *SHAPE), generator=g, dtype=torch.float64)
    u = torch.randn((30, D), generator=g, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    y = clf(x).argmax(1)
    z = clf(x)
    rate = (w.view(1, 5, D) - w[y].view(30, 1, D)) @ u.view(30, D, 1)  # d(z_c - z_y)/dr
    gap = (z.gather(1, y.view(-1, 1)) - z).view(30, 5, 1)
    hit = torch.where(rate > 0, gap / rate, torch.full_like(rate, math.inf)).amin((1, 2))
    want = torch.where(hit <= 3.0, hit, torch.full_like(hit, math.inf))
    crit = B.critical_threshold(clf, x, (2.5 * u).view(-1, *SHAPE), y, max_dist=3.0, tol=1e-7)
    torch.testing.assert_close(crit, want, atol=1e-6, rtol=0)


def test_critical_threshold_batched_walk_matches_one_radius_per_call():
    """Several radii per classifier call give the distances of one radius per call (a
    nonlinear classifier: several flips along a ray), in far fewer calls."""
    g = torch.Generator().manual_seed(5)
    w = torch.randn(4, D, generator=g, dtype=torch.float64)
    calls = []

    def clf(x):
        calls.append(len(x))
        return torch.sin(3 * x.flatten(1).double() @ w.T)
    x = torch.randn((12, *SHAPE), generator=g, dtype=torch.float64)
    u = torch.randn((12, *SHAPE), generator=g, dtype=torch.float64)
    u[0] = 0  # a zero direction never flips
    y = clf(x).argmax(1)
    y[1] = (y[1] + 1) % 4  # a misclassified start is 0
    one = B.critical_threshold(clf, x, u, y, max_dist=4.0, grid=200, points_per_call=1)
    n_one, calls[:] = len(calls), []
    many = B.critical_threshold(clf, x, u, y, max_dist=4.0, grid=200, points_per_call=500)
    assert torch.equal(one, many) and torch.isinf(one[0]) and one[1] == 0
    assert torch.isfinite(one[2:]).any() and len(calls) < n_one / 4
    with pytest.raises(ValueError, match="points_per_call"):
        B.critical_threshold(clf, x, u, y, points_per_call=0)


def test_robust_factors_and_roc():
    w = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    clf = lambda x: x.flatten(1) @ w.T  # class 0 iff first coordinate > 0; margin = x[0]
    clean = torch.tensor([[[[1.0, 0.0]]], [[[0.2, 0.0]]], [[[2.0, 0.0]]]], dtype=torch.float64)
    adv = clean + torch.tensor([-0.5, -0.5, -1.0], dtype=torch.float64).view(-1, 1, 1, 1) \
        * torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2)
    y = torch.zeros(3, dtype=torch.long)
    towards = -torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2).expand_as(clean)
    r = B.robust_factors(clf, clean, adv, clean, adv, y, towards, max_dist=5.0, grid=50)
    assert r.robust.tolist() == [True, False, True] and r.clean_correct.all()
    torch.testing.assert_close(r.critical, torch.tensor([1.0, 0.2, 2.0], dtype=torch.float64),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(r.length, torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64))
    assert (r.robust == (r.length < r.critical)).all()
    fpr, tpr = B.roc(r.critical, r.robust)
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
    assert verdicts.auc(r.critical, r.robust).value == 1.0
    assert verdicts.auc(-r.critical, r.robust).value == 0.0


def test_roc_known_auc_ties_and_inf():
    scores = torch.tensor([0.9, 0.5, 0.5, 0.1, math.inf])
    pos = torch.tensor([True, True, False, False, True])
    fpr, tpr = B.roc(scores, pos)
    # pairs (pos, neg): (0.9,.5)1 (0.9,.1)1 (.5,.5).5 (.5,.1)1 (inf,.5)1 (inf,.1)1 -> 5.5/6
    assert verdicts.auc(scores, pos).value == pytest.approx(5.5 / 6)
    torch.testing.assert_close(tpr, torch.tensor([0, 1 / 3, 2 / 3, 1, 1], dtype=torch.float64))
    torch.testing.assert_close(fpr, torch.tensor([0, 0, 0, 0.5, 1], dtype=torch.float64))
    with pytest.raises(ValueError, match="both classes"):
        B.roc(scores, torch.ones(5, dtype=torch.bool))


def test_linf_neighbours_stay_in_ball_and_box():
    x0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(5))
    pts = C.linf_neighbours(x0, 0.3, 100, torch.Generator().manual_seed(6))
    assert pts.shape == (100, *SHAPE) and pts.min() >= 0 and pts.max() <= 1
    assert (pts - x0).abs().max() <= 0.3 + 1e-6
    with pytest.raises(ValueError, match="x0"):
        C.linf_neighbours(torch.rand(2, *SHAPE), 0.1, 3)


class TinyEps(torch.nn.Module):
    """A small eps-model with a per-sample GroupNorm (like the UNet's): fast in float64."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.GroupNorm(2, 4),
                                       torch.nn.SiLU(), torch.nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, h, k):
        return self.net(h) * (1 + k.view(-1, 1, 1, 1) / 10)


def tiny_fixed_purifier(base_seed: int = 1, batch_index: int = 2, point_seed: int = 7):
    """A float64 purifier around :class:`TinyEps` with fixed randomness (sec. 6's f) and a
    point clear of the clip at 0 and 1."""
    torch.manual_seed(0)
    model = TinyEps().double().requires_grad_(False)
    pur = Purifier(model, digits.build_scheduler(), "ddpm", 3, image_shape=(1, 8, 8))
    f = C.fixed_purifier(pur, base_seed=base_seed, batch_index=batch_index)
    x0 = 0.1 + 0.8 * torch.rand((1, 1, 8, 8), generator=torch.Generator().manual_seed(point_seed),
                                dtype=torch.float64)
    return f, x0


def test_purifier_jacobian_batched_equals_rowwise():
    """The fold of VJPs into the batch needs the shared noise: it matches the row loop."""
    f, x0 = tiny_fixed_purifier()
    jac = C.jacobian(f, x0, chunk=24)
    torch.testing.assert_close(jac, C.jacobian_rowwise(f, x0), atol=1e-10, rtol=1e-8)
    # and it is the derivative: a small step moves f by J eta
    eta = 1e-6 * torch.randn((1, 1, 8, 8), generator=torch.Generator().manual_seed(8),
                             dtype=torch.float64)
    with torch.no_grad():
        moved = (f(x0 + eta) - f(x0)).flatten()
    torch.testing.assert_close(moved, jac @ eta.flatten(), atol=1e-12, rtol=1e-3)


def test_purifier_jvp_rows_are_the_jacobian_times_v():
    """Forward mode through the purifier (checkpointed map, grad off) gives J v exactly."""
    f, x0 = tiny_fixed_purifier()
    jac = C.jacobian(f, x0)
    v = torch.randn(5, 64, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    for chunk in (2, 64):
        torch.testing.assert_close(C.jvp_rows(f, x0, v, chunk), v @ jac.T, atol=1e-12, rtol=1e-9)
    u = torch.randn(3, 64, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    torch.testing.assert_close(C.vjp_rows(f, x0, u, chunk=2), u @ jac, atol=1e-12, rtol=1e-9)


def test_jacobian_products_take_the_fewer_passes_and_agree(monkeypatch):
    """J v for many v: through the exact Jacobian where the output has no more pixels than
    there are tangents, else by JVPs; both routes give v J^T."""
    f, x0 = tiny_fixed_purifier()
    jac = C.jacobian(f, x0)
    routes = []
    for name in ("jacobian", "jvp_rows"):
        real = getattr(C, name)
        monkeypatch.setattr(C, name, lambda *a, real=real, name=name: routes.append(name)
                            or real(*a))
    for m, route in ((64, "jacobian"), (100, "jacobian"), (63, "jvp_rows"), (5, "jvp_rows")):
        v = torch.randn(m, 64, generator=torch.Generator().manual_seed(m), dtype=torch.float64)
        routes.clear()
        torch.testing.assert_close(C.jacobian_products(f, x0, v, 16), v @ jac.T,
                                   atol=1e-12, rtol=1e-9)
        assert routes == [route], (m, routes)


def spectrum_matrix(d: int, singular_values: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return u @ torch.diag(singular_values) @ v.T


def test_top_singular_values_of_a_linear_map():
    """A known spectrum (geometric, ratio 0.8, in 6 x 8 x 8 = 384 dimensions) is recovered;
    with no power iteration the estimate is visibly worse, as the error bound says."""
    d = 384
    s = 2 * 0.8 ** torch.arange(d, dtype=torch.float64)
    a = spectrum_matrix(d, s)

    def f(x):
        return (x.flatten(1) @ a.T.to(x.dtype)).view_as(x)

    x0 = torch.rand(1, 6, 8, 8, dtype=torch.float64)
    top = C.top_singular_values(f, x0, 6, iterations=4, chunk=7,
                                generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(top, s[:6], rtol=1e-6, atol=0)
    rough = C.top_singular_values(f, x0, 6, iterations=0, generator=torch.Generator().manual_seed(0))
    assert ((rough - s[:6]) / s[:6]).abs().max() > 1e-3
    assert (rough <= s[:6] * (1 + 1e-9)).all()  # Ritz values never exceed the true ones
    with pytest.raises(ValueError, match="k <= 384"):
        C.top_singular_values(f, x0, 385)


def test_top_singular_values_of_the_purifier_match_the_exact_jacobian():
    """A hard case: this purifier's top singular values are close together (1.49, 1.32,
    1.29, 1.27, 1.23, ...), so the iterations converge slowly, but they do converge."""
    f, x0 = tiny_fixed_purifier(base_seed=0, batch_index=0, point_seed=3)
    exact = torch.linalg.svdvals(C.jacobian(f, x0))
    error = [((C.top_singular_values(f, x0, 4, iterations=n,
                                     generator=torch.Generator().manual_seed(1))
               - exact[:4]) / exact[:4]).abs().max() for n in (2, 6, 20)]
    assert error[0] > error[1] > error[2] and error[2] < 1e-5


def test_top_singular_spectra_of_the_first_singular_images_are_stored(tmp_path, monkeypatch):
    from diffrob import worlds

    world = worlds.load("digits", n_images=3, jacobian_images=3, singular_images=2,
                        singular_top_k=3, subspace_iterations=4, results_dir=str(tmp_path))
    top = runs.top_singular_spectra(world, progress=False)
    assert top.shape == (2, 3) and (top[:, :-1] >= top[:, 1:]).all()
    exact = torch.linalg.svdvals(C.jacobian(C.fixed_purifier(world.purifier(), 0, 1),
                                            world.images[1:2]).double())
    torch.testing.assert_close(top[1], exact[:3], rtol=1e-3, atol=0)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed a stored image")

    monkeypatch.setattr(runs, "top_singular_values", fail)
    torch.testing.assert_close(runs.top_singular_spectra(world, progress=False), top)


def test_gamma_runs_along_the_classifiers_pgd_direction_not_the_attacks_ray():
    """gamma (Assumption 2) is measured from f(x0) along sec. 5's PGD on the classifier alone:
    it does not change with the purified attack; for an affine two-class classifier PGD's
    Linf steps end at the sign of the normal, where the flip lies at margin / (w . u)."""
    g = torch.Generator().manual_seed(11)
    w, b = torch.randn(2, D, generator=g, dtype=torch.float64), torch.randn(2, generator=g,
                                                                          dtype=torch.float64)
    clf = linear_classifier(w, b)
    clean = 0.2 + 0.6 * torch.rand((12, *SHAPE), generator=g, dtype=torch.float64)  # no clip
    y = clf(clean).argmax(1)
    direction = B.gamma_direction(clf, clean, y, 0.1, 20, 0.05, torch.Generator().manual_seed(0))
    normal = (w[1] - w[0]) * torch.where(y == 0, 1.0, -1.0).view(-1, 1)   # towards the other
    assert torch.equal(torch.sign(direction.flatten(1)), torch.sign(normal))
    gap = (clf(clean)[:, 0] - clf(clean)[:, 1]).abs()
    u = direction.flatten(1) / direction.flatten(1).norm(dim=1, keepdim=True)
    want = gap / (normal * u).sum(1)
    factors = [B.robust_factors(clf, clean, clean, clean,
                                clean + torch.randn((12, *SHAPE), generator=g, dtype=torch.float64),
                                y, direction, max_dist=50.0, grid=500) for _ in range(2)]
    torch.testing.assert_close(factors[0].critical, factors[1].critical)
    torch.testing.assert_close(factors[0].critical, want, atol=1e-3, rtol=0)
    margin = gap / (w[1] - w[0]).norm()
    assert (factors[0].critical > margin + 1e-3).all()   # longer than the shortest way
    assert not torch.allclose(factors[0].ray, factors[1].ray)    # the ray follows the attack


def test_the_finer_grid_finds_a_thin_flip_that_a_coarse_one_steps_over():
    """A class region crossed only between l2 2.00 and 2.05 along the ray: a grid of 0.1
    steps can miss it, the default grid (5 / 500 = 0.01) cannot."""
    def clf(x):
        r = x.flatten(1)[:, 0]
        wrong = ((r > 2.02) & (r < 2.07)).double()
        return torch.stack([1 - wrong, wrong], 1)
    x = torch.zeros((1, 1, 1, 2), dtype=torch.float64)
    d = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    assert B.critical_threshold(clf, x, d, y, max_dist=5.0, grid=50) == math.inf
    fine = B.critical_threshold(clf, x, d, y, max_dist=5.0, grid=Params().critical_grid)
    assert fine.item() == pytest.approx(2.02, abs=1e-3)


def test_pca_is_normalised_by_the_per_direction_input_variance():
    """Identity f on an unclipped ball: the per-direction variance is eps^2 / 3, while the
    mean of the top sample eigenvalues overstates it (Marchenko-Pastur, n = 200, D = 6 x 50)."""
    eps, shape = 0.1, (6, 5, 10)
    x0 = torch.full((1, *shape), 0.5, dtype=torch.float64)
    hood = C.pca_spectra(lambda x: x, x0, eps, 200, 50, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(hood.after_unsaturated, hood.after)   # nothing clamped here
    assert hood.input_variance == pytest.approx(eps**2 / 3, rel=0.02)
    before, after = hood.normalised()
    torch.testing.assert_close(before, after)
    assert before.mean() > 1.5          # the old scale (mean of these 50) was 1.5x too large
    half = C.pca_spectra(lambda x: 0.5 * x, x0, eps, 200, 50,
                         generator=torch.Generator().manual_seed(0)).normalised()[1]
    torch.testing.assert_close(half, 0.25 * before)


def test_compare_spectra_sees_a_difference_only_where_there_is_one():
    g = torch.Generator().manual_seed(14)
    robust = torch.arange(40) % 2 == 0
    same = torch.rand(40, 30, generator=g)
    shifted = same + 0.5 * robust.view(-1, 1)
    none, some = C.compare_spectra(same, robust), C.compare_spectra(shifted, robust)
    assert none["auc largest"].lo < 0.5 < none["auc largest"].hi
    assert some["auc largest"].lo > 0.9 and some["robust"]["top_mean"] > some["non-robust"]["top_mean"]
    with pytest.raises(ValueError, match="both robust and non-robust"):
        C.compare_spectra(same, torch.ones(40, dtype=torch.bool))


def test_world_compression_rates_cover_every_jacobian_image(tmp_path):
    from diffrob import store, worlds

    world = worlds.load("digits", n_images=3, jacobian_images=3, rate_samples=5,
                        results_dir=str(tmp_path))
    resp = runs.compression_rates(world, progress=False)
    again = runs.compression_rates(world, progress=False)  # read back from the store
    assert [e["batch"] for e in store.computed(world.params)] == [0, 1, 2]
    for field in Response.__dataclass_fields__:
        assert torch.equal(getattr(again, field), getattr(resp, field)), field
    rates = resp.rate
    assert rates.shape == (3, 5) and (rates > 0).all()
    for field in ("rate_unsaturated", "rate_small", "linear_error", "linear_error_eps"):
        assert getattr(resp, field).shape == (3, 5) and torch.isfinite(getattr(resp, field)).all()
    assert resp.saturated.shape == (3,) and (resp.saturated > 0).all()   # digits' black borders
    assert (resp.rate_unsaturated > resp.rate).all()     # clamped pixels do not move
    assert (resp.linear_error.mean(1) < resp.linear_error_eps.mean(1)).all()  # eps / 10: linear
    f = C.fixed_purifier(world.purifier(), 0, 2)
    pts = C.linf_neighbours(world.images[2:3], world.params.eps, 5, torch.Generator().manual_seed(2))
    torch.testing.assert_close(rates[2], C.compression_rate(f, world.images[2:3], pts - world.images[2:3]))
    # the clamped pixels of f(x0) are zero rows of J_f(x0): that many zeros in its spectrum
    jac = C.jacobian(f, world.images[2:3])
    held = C.saturated_pixels(f(world.images[2:3]))[0]
    assert int(held.sum()) == resp.saturated[2] and (jac[held] == 0).all()
    clean, robust = runs.jacobian_robustness(world, world.images)
    assert torch.equal(clean, robust) and clean.shape == (3,)


def test_jacobian_images_beyond_table_1s_are_the_next_test_images(tmp_path):
    """The spectra need no attack, so they may average over more images than Table 1's; the
    rates and the robustness of the Jacobian images keep to those that have adversarial
    examples."""
    from diffrob import worlds

    world = worlds.load("digits", n_images=2, jacobian_images=3, rate_samples=2,
                        results_dir=str(tmp_path))
    wide = runs.jacobian_world(world)
    assert len(wide.images) == 3 and torch.equal(wide.images[:2], world.images)
    torch.testing.assert_close(wide.images[2:], worlds.load("digits", n_images=3).images[2:])
    enough = worlds.load("digits", n_images=3, jacobian_images=3)
    assert runs.jacobian_world(enough) is enough
    resp = runs.compression_rates(world, progress=False)     # Table 1's images only
    s = report.spectra(world)
    assert resp.rate.shape == (2, 2) and s.exact.eigenvalues.shape == (3, 64)
    torch.testing.assert_close(s.saturated[:2], resp.saturated)  # the same clamped pixels
    fx = SimpleNamespace(x_adv=world.images)          # Table 1's images: two examples
    g = report.groups(world, s, fx, resp)
    assert g.clean.shape == g.robust.shape == g.rates.shape == (2,)
    assert g.eigenvalues.shape[0] == 2
    with pytest.raises(ValueError, match="'jacobian_images'.*test split has 450 images"):
        worlds.load("digits", n_images=2, jacobian_images=451)


def test_the_fixed_purifier_runs_in_float32_under_bf16_autocast():
    """Sec. 6's Jacobians need float32, and forward-mode AD has no autocast rules."""
    from diffrob import worlds

    world = worlds.load("digits", n_images=2, autocast="bf16")
    bf16 = world.purifier()
    f = C.fixed_purifier(bf16, 0, 1)
    x = world.images[:1]
    plain = worlds.load("digits", n_images=2).purifier()
    torch.testing.assert_close(f(x), C.fixed_purifier(plain, 0, 1)(x))
    assert bf16.autocast == "bf16"                       # the caller's purifier is untouched
    with forward_mode():                               # raised a dtype error under autocast
        out = f(forward_ad.make_dual(x, torch.ones_like(x)))
        assert torch.isfinite(forward_ad.unpack_dual(out).tangent).all()


# --- the chapter's report: tables, availability branches, claim rows ------------------------

def test_verdicts_auc_is_the_pairwise_mann_whitney_auc_of_the_roc():
    """Fig. 6's AUCs come from verdicts.auc (ranks): the same number as the pairwise count
    (ties 1/2) to the last bit, with ties and infinite distances."""
    g = torch.Generator().manual_seed(15)
    scores = torch.randint(0, 6, (37,), generator=g).double()
    scores[::7] = math.inf
    pos = torch.rand(37, generator=g) < 0.6
    greater = (scores[pos].view(-1, 1) > scores[~pos].view(1, -1)).double()
    ties = (scores[pos].view(-1, 1) == scores[~pos].view(1, -1)).double()
    assert verdicts.auc(scores, pos).value == (greater + 0.5 * ties).mean().item()


def test_mean_std_and_mean_band():
    assert report.mean_std(torch.tensor([1.0, 2.0, 3.0])) == "2.000 ± 1.000"   # sample sd
    assert report.mean_std(torch.tensor([0.25])) == "0.250"
    assert report.mean_std(torch.tensor([])) == "none"
    m, sd = report.mean_band(torch.tensor([[2.0, 1.0], [4.0, 1.0]], dtype=torch.float64))
    assert m.tolist() == [3.0, 1.0] and sd.tolist() == [math.sqrt(2), 0.0]
    assert report.mean_band(torch.tensor([[2.0, 1.0]]))[1].tolist() == [0.0, 0.0]


@pytest.fixture
def smoke_params(tmp_path):
    from diffrob import params

    return params.load("params/smoke.yaml", results_dir=str(tmp_path))


def test_rate_table_and_claim(smoke_params):
    rates = torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64)
    hood = C.Neighbourhood(torch.ones(3), torch.tensor([0.16, 0.04, 0.01]),
                           torch.tensor([0.16, 0.04]), 1, torch.ones(3), 0.5)
    col = rates.view(-1, 1).expand(3, 2)
    resp = C.Response(0.5 * col, col, col, 0.01 * col, 0.1 * col, torch.tensor([1, 2, 3]))
    frame = report.rate_table(resp, hood).frame
    assert frame["ours"].tolist() == [
        "0.150 ± 0.050", "0.300 ± 0.100 (3 images)", "0.300", "0.300 ± 0.100", "0.003 ± 0.001",
        "0.030 ± 0.010", "2.000 ± 1.000", "0.320", "0.566", "50.0%"]
    assert frame["paper (cifar10)"].tolist()[:3] == ["", "~0.25", ""]
    assert report.rate_text(resp) == "0.300"
    claim = report.rate_claims(smoke_params, resp, hood)
    assert claim.name == "tbl-compression-rate-claim"
    assert list(claim.frame.index) == ["compression_rate", "linearisation_holds",
                                       "pca_eigenvalues_small"]


def spectra_of(dim: int = 6) -> report.Spectra:
    eig = torch.tensor([[1.5, 0.9, 0.5, 0.3, 0.2, 0.1], [1.1, 0.8, 0.2, 0.2, 0.1, 0.0]],
                       dtype=torch.float64)
    return report.Spectra(dim, C.Spectrum(eig, eig + 0.1), torch.tensor([1, 0]))


def test_spectrum_tables_with_and_without_the_exact_jacobian(smoke_params):
    table, claims_table = report.spectrum_tables(smoke_params, spectra_of())
    ours = table.frame["ours, |eigenvalues|"].tolist()
    assert ours[:3] == ["1.300 ± 0.283", "3.0 of 6 (50.0%)", "1.0 of 6 (16.7%)"]
    assert table.frame.loc["below 0.25", "paper (cifar10), |eigenvalues|"] == "2760 of 3072 (89.8%)"
    assert claims_table.name == "tbl-compression-spectrum-claims" and len(claims_table.frame) == 3
    # image 0 has one clamped pixel: its smallest |eigenvalue| (0.1) is the clamp's zero
    assert table.frame.loc["below 0.25, unsaturated pixels (the claim's share)",
                           "ours, |eigenvalues|"] == f"{(1 / 5 + 4 / 6) / 2:.1%}"
    no_exact = report.Spectra(150528, None, torch.tensor([0]))
    (only,) = report.spectrum_tables(smoke_params, no_exact)
    assert only.name == "tbl-compression-spectrum-claims"
    assert set(only.frame["verdict"]) == {verdicts.NOT_TESTED}
    assert report.spectrum_figure(no_exact) is not None


def test_top_table_measures_the_error_against_the_exact_values_where_they_exist():
    s = spectra_of()
    top = s.exact.singular_values[:1, :2] * torch.tensor([1.0, 1.01], dtype=torch.float64)
    rows = report.top_table(top, s).frame["ours"]
    assert rows.to_dict() == {"largest singular value": "1.600",
                              "singular values above 1 (of the top 2)": "2.000",
                              "largest relative error vs the exact values": "1.0e-02"}
    assert len(report.top_table(top, report.Spectra(6, None, torch.tensor([0]))).frame) == 2


def factors_of(robust: list[bool]) -> report.Factors:
    n = len(robust)
    r = torch.tensor(robust)
    crit = torch.linspace(0.5, 2.0, n, dtype=torch.float64)
    crit[0] = math.inf
    return report.Factors("pgd-eot", torch.zeros(n, 1, 2, 2), r, crit,
                          torch.where(r, 0.5, 1.5).double(), crit + 0.1,
                          torch.ones(n, dtype=torch.float64))


def test_factors_table_and_agreement(smoke_params):
    fx = factors_of([True, True, False, False])
    frame = report.factors_table(smoke_params, fx).frame
    cap = smoke_params.critical_max
    assert frame.iloc[:, 0].tolist()[0] == 2 and frame.iloc[:, 1].tolist()[0] == 2
    assert frame.loc[f"gamma: no flip up to {cap:g}"].tolist()[:2] == ["1", "0"]
    assert frame.loc["purified attack length ||f(x_adv) - f(x0)||", "paper (cifar10), robust"] \
        == "0.76 ± 0.19"
    line = report.agreement_line(fx).data
    assert "**" in line and report.attack_line(fx).data == "Adversarial examples: `pgd-eot`."


def test_auc_tables_with_both_classes_and_with_one(smoke_params):
    fx = factors_of([True, True, False, False])
    table, claim = report.auc_tables(smoke_params, fx)
    assert fx.both_classes and table.frame["paper (cifar10)"].tolist() == [0.98, 0.91, ""]
    assert table.frame.iloc[1, 0] == f"{fx.aucs['length'].value:.3f} " \
        f"[{fx.aucs['length'].lo:.3f}, {fx.aucs['length'].hi:.3f}]"
    assert fx.aucs["length"].value == 1.0 and len(claim.frame) == 4
    assert report.roc_figure(smoke_params, fx) is not None
    one = factors_of([True, True, True])
    note, claim = report.auc_tables(smoke_params, one)
    assert note.data == "*No ROC: all 3 correctly classified examples are robust here.*"
    assert set(claim.frame["verdict"]) == {verdicts.NOT_TESTED}
    assert report.scatter_figure(smoke_params, one) is not None


def test_group_tables_compare_or_say_why_not(smoke_params):
    s = spectra_of()
    rates = torch.tensor([0.2, 0.4], dtype=torch.float64)
    g = report.Groups(6, s.unsaturated, torch.tensor([True, True]),
                      torch.tensor([True, False]), rates)
    summary, aucs, judged = report.group_tables(smoke_params, g)
    assert summary.frame.loc["robust"].tolist() == [1, "1.500 ± 0.000", "20.0%", "20.0%",
                                                    "0.200"]
    assert list(aucs.frame.index) == ["largest |eigenvalue|", "share below 0.25",
                                      "compression rate (lower)"]
    assert list(judged.frame.index) == ["spectra_alike_robust_nonrobust",
                                        "compression_predicts_robustness"]
    none = report.Groups(6, s.unsaturated, torch.tensor([True, True]),
                         torch.tensor([True, True]), rates)
    note, judged = report.group_tables(smoke_params, none)
    assert note.data == (
        "*No comparison: of the 2 Jacobian images whose purified clean image is right, 2 are "
        "robust; both groups are needed.*")
    assert set(judged.frame["verdict"]) == {verdicts.NOT_TESTED}
    assert report.Groups(150528, None, None, None, rates).no_comparison == \
        "No comparison: the exact 150528 x 150528 Jacobian is out of reach here."


def test_cost_table_counts_the_compression_stages_at_the_papers_settings():
    frame = report.cost_table().frame
    assert set(frame.index) == {("cifar10", "compression/jacobian"),
                                ("cifar10", "compression/top_singular"),
                                ("imagenet", "compression/top_singular")}
    assert list(frame.columns)[:3] == ["images", "diffusion evaluations", "PFLOP"]
