"""The geometry of the hyperspherical cap model (sec. 5, appendix A), pure: tensors and
arrays in, tensors and arrays out, every knob an argument.

- Slice planes (Fig. 4b, c, A.4): the plane through a clean image x0 spanned by its
  adversarial direction u (l2-normalised) and a second direction v orthogonalised to u;
  points uniform in the disc of l2 radius R, and the classifier's decision at each point.
- Psychometric fits (eq. 8, Fig. 4d-f): logistic regression of the decision
  (adversarial or not) on the projection onto u, giving a slope k and a
  threshold x0 per slice; curves aligned at their thresholds and averaged.
- GAAS (appendix A.2): ``gaas_k`` (the formula) and ``orthogonal_adversarial_count``
  (measured: how many of the k mutually orthogonal directions of Tramer et al.'s GAAS
  construction actually fool the classifier); cap volume (eq. 7): ``cap_volume_ratio``,
  checked by ``monte_carlo_cap_share``; both take the l2 threat radius ``linf_ball_l2_radius``.
- Definition 3 / eq. 5-6: ``logit_ranges``, the range of each logit along a direction.

Decisions: a point is *adversarial* when the classifier's decision differs from
the true label. Only clean images the classifier gets right are sliced (the
model of appendix A.1 starts from a correctly classified x0), so this is the
same as "differs from the clean prediction" for every sliced image.

Points are not clipped to [0,1]: clipping would bend the plane and break the
geometry the model is about, and the classifier accepts any real input. With
R larger than the distance to the cube's faces, part of each disc lies outside
the image domain; the chapter says so where it shows the slices.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import betainc, expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from torch import Tensor

POINT_BATCH = 4096  # slice points per classifier call
WIDTH_LEVELS = (0.1, 0.9)       # the transition width is measured between these P(adversarial)


# --- the plane and its points (sec. 5, A.4) --------------------------------------------------

def plane(adversarial: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
    """Orthonormal basis (u, v) of each image's slice plane.

    ``u`` is ``adversarial`` (an adversarial perturbation x_adv - x0, (B, C, H, W))
    normalised in l2; ``v`` is ``second`` with its component along u removed,
    normalised (Gram-Schmidt). Raises ``ValueError`` for a zero or parallel pair.
    """
    if adversarial.shape != second.shape or adversarial.ndim < 2:
        raise ValueError(f"adversarial and second: expected equal (B, ...) shapes, got "
                         f"{tuple(adversarial.shape)} and {tuple(second.shape)}")
    a, s = adversarial.flatten(1).double(), second.flatten(1).double()
    na = a.norm(dim=1, keepdim=True)
    if (na == 0).any():
        raise ValueError("adversarial: a direction has zero length (the attack did not move)")
    u = a / na
    s = s - (s * u).sum(1, keepdim=True) * u
    ns = s.norm(dim=1, keepdim=True)
    if (ns <= 1e-9 * second.flatten(1).double().norm(dim=1, keepdim=True)).any():
        raise ValueError("second: a direction is parallel to its adversarial direction")
    v = s / ns
    dtype = adversarial.dtype
    return u.to(dtype).view_as(adversarial), v.to(dtype).view_as(adversarial)


def disc_points(n: int, radius: float, generator: torch.Generator | None = None) -> Tensor:
    """``n`` points uniform in the 2-D disc of l2 radius ``radius``, shape (n, 2), float64."""
    if n < 1 or radius <= 0:
        raise ValueError(f"disc_points: expected n >= 1 and radius > 0, got n={n}, "
                         f"radius={radius}")
    r = radius * torch.rand(n, generator=generator, dtype=torch.float64).sqrt()
    phi = 2 * torch.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.stack([r * phi.cos(), r * phi.sin()], 1)


@torch.no_grad()
def decisions(classifier: Callable[[Tensor], Tensor], x0: Tensor, u: Tensor, v: Tensor,
              points: Tensor, batch_size: int = POINT_BATCH) -> Tensor:
    """The classifier's decision at x0 + a u + b v for every point (a, b): (B, N) classes.

    ``points`` (N, 2) are plane coordinates in l2 units, shared by all B images.
    Points are not clipped to [0,1] (see the module docstring).
    """
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points: expected shape (N, 2), got {tuple(points.shape)}")
    if not (x0.shape == u.shape == v.shape):
        raise ValueError(f"x0, u, v: expected equal shapes, got {tuple(x0.shape)}, "
                         f"{tuple(u.shape)}, {tuple(v.shape)}")
    pts = points.to(device=x0.device, dtype=x0.dtype)
    out = []
    for b in range(len(x0)):
        basis = torch.stack([u[b], v[b]]).flatten(1)                      # (2, D)
        x = (x0[b].flatten() + pts @ basis).view(-1, *x0.shape[1:])      # (N, C, H, W)
        out.append(torch.cat([classifier(x[i:i + batch_size]).argmax(1)
                              for i in range(0, len(x), batch_size)]))
    return torch.stack(out)


# --- psychometric fits (eq. 8, A.4) -----------------------------------------------------------

@dataclass
class Fits:
    """Psychometric fits S(x) = 1 / (1 + exp(-k (x - x0))) of every slice (eq. 8).

    ``slope`` k and ``threshold`` x0 are NaN where the slice has no boundary
    (``boundary`` False: all points on one side); ``separable`` marks slices a
    threshold on the projection splits without error (there the unregularised
    slope is infinite, and the fitted k is set by the regulariser ``C``).
    """

    slope: np.ndarray
    threshold: np.ndarray
    boundary: np.ndarray
    separable: np.ndarray
    C: float

    @property
    def n_without_boundary(self) -> int:
        return int((~self.boundary).sum())


def fit_psychometric(projection: np.ndarray, adversarial: np.ndarray, C: float = 1.0) -> Fits:
    """Logistic regression of the decision on the projection, one fit per slice (eq. 8, A.4).

    ``projection`` (N,) or (B, N); ``adversarial`` (B, N) booleans. scikit-learn's
    ``LogisticRegression`` with an L2 penalty ``1 / (2C)`` k^2 on the slope (the
    intercept is not penalised). ``C = 1`` is scikit-learn's default; with it a
    perfectly sharp boundary in a disc of 1000 points of radius 3 fits k = 5 to 7,
    the scale of the paper's slopes, so the paper most likely used it. Larger C
    weakens the penalty: separable slices then get ever larger k. The slope depends
    on C, so C is fixed in advance (``cap_fit_c``: scikit-learn's default 1, chosen
    before any slice was fitted) and :func:`slope_sensitivity` shows what other C give.
    """
    adversarial = np.atleast_2d(np.asarray(adversarial, dtype=bool))
    projection = np.broadcast_to(np.asarray(projection, dtype=np.float64), adversarial.shape)
    if C <= 0:
        raise ValueError(f"C: expected > 0, got {C}")
    b = len(adversarial)
    slope, threshold = np.full(b, np.nan), np.full(b, np.nan)
    boundary = adversarial.any(1) & ~adversarial.all(1)
    separable = np.zeros(b, dtype=bool)
    for i in np.flatnonzero(boundary):
        x, y = projection[i], adversarial[i]
        separable[i] = x[y].min() > x[~y].max() or x[y].max() < x[~y].min()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            m = LogisticRegression(C=C, max_iter=1000).fit(x[:, None], y)
        k, c = m.coef_[0, 0], m.intercept_[0]
        slope[i] = k
        threshold[i] = -c / k if k != 0 else np.nan
    return Fits(slope, threshold, boundary, separable, C)


def sharp_slope(projection: np.ndarray, threshold: np.ndarray, C: float = 1.0) -> np.ndarray:
    """The slope the fit gives an ideal step at ``threshold`` on the same points (a ceiling).

    With the same points and ``C``, a perfectly sharp boundary perpendicular
    to the adversarial direction cannot fit a larger k; ``slope / sharp_slope``
    is a sharpness in [0, ~1]. It is *not* free of C (nor of N and R): a boundary
    that is sharp but tilted in the plane reaches the ceiling only under a strong
    penalty, and its sharpness falls as C grows (about 0.27 / 0.13 / 0.06 at
    C = 1 / 10 / 100 for a 45-degree tilt), see :func:`slope_sensitivity`.
    """
    threshold = np.atleast_1d(np.asarray(threshold, dtype=np.float64))
    projection = np.asarray(projection, dtype=np.float64)
    step = projection[None, :] > threshold[:, None]
    ok = np.isfinite(threshold)
    out = np.full(len(threshold), np.nan)
    out[ok] = fit_psychometric(projection, step[ok], C).slope
    return out


def slope_sensitivity(projection: np.ndarray, adversarial: np.ndarray,
                      Cs: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)) -> dict[float, dict[str, float]]:
    """The psychometric fit's dependence on its regulariser: per C, the mean and median
    slope and the median sharpness slope / ceiling over slices with a boundary."""
    out = {}
    for c in Cs:
        fits = fit_psychometric(projection, adversarial, C=c)
        ceiling = sharp_slope(projection, fits.threshold, C=c)
        k = fits.slope[fits.boundary]
        out[float(c)] = {"mean slope": float(k.mean()) if len(k) else np.nan,
                         "median slope": float(np.median(k)) if len(k) else np.nan,
                         "median sharpness": float(np.median((fits.slope / ceiling)[fits.boundary]))
                         if len(k) else np.nan}
    return out


def logistic_width(slope: float | np.ndarray,
                   levels: tuple[float, float] = WIDTH_LEVELS) -> float | np.ndarray:
    """Eq. 8's transition width between the ``levels`` of S: (logit(hi) - logit(lo)) / k,
    2 ln 9 / k for 10-90 % (slope 6 in l2 units: 0.732)."""
    lo, hi = levels
    k = np.asarray(slope, dtype=np.float64)
    if not 0 < lo < hi < 1 or (k <= 0).any():
        raise ValueError(f"logistic_width: expected 0 < lo < hi < 1 and slope > 0, got "
                         f"levels={levels}, slope={slope}")
    w = (np.log(hi / (1 - hi)) - np.log(lo / (1 - lo))) / k
    return float(w) if w.ndim == 0 else w


def transition_width(projection: np.ndarray, adversarial: np.ndarray,
                     levels: tuple[float, float] = WIDTH_LEVELS) -> np.ndarray:
    """The fit-free sharpness of each slice: the distance along u over which P(adversarial)
    rises from ``levels[0]`` to ``levels[1]`` (10-90 %), (B,) in the projection's units.

    P(adversarial | projection) is estimated without a model or a regulariser by isotonic
    regression (increasing: the cap lies along +u, sec. 5), a step function; each level is
    crossed at the first projection whose estimate reaches it. An ideal step has width 0 (up
    to the spacing of the points) and eq. 8's logistic of slope k 2 ln 9 / k
    (:func:`logistic_width`). NaN where a level is not reached inside the disc (no boundary,
    or the transition cut off by the disc's edge).
    """
    lo, hi = levels
    adversarial = np.atleast_2d(np.asarray(adversarial, dtype=np.float64))
    projection = np.asarray(projection, dtype=np.float64)
    if projection.ndim != 1 or projection.shape[0] != adversarial.shape[1]:
        raise ValueError(f"projection: expected shape ({adversarial.shape[1]},), got "
                         f"{projection.shape}")
    if not 0 < lo < hi < 1:
        raise ValueError(f"levels: expected 0 < lo < hi < 1, got {levels}")
    order = np.argsort(projection)
    x = projection[order]
    out = np.full(len(adversarial), np.nan)
    for i, y in enumerate(adversarial[:, order]):
        p = IsotonicRegression(increasing=True).fit_transform(x, y)
        if p[0] < lo and p[-1] >= hi:
            out[i] = x[np.argmax(p >= hi)] - x[np.argmax(p >= lo)]
    return out


def aligned_curve(projection: np.ndarray, adversarial: np.ndarray, fits: Fits,
                  grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 4f: curves aligned at their thresholds and averaged over slices with a boundary.

    Returns (fitted, empirical) at ``grid`` (values of x - x0): the mean of the
    fitted sigmoids expit(k z), and the fraction of adversarial points among all
    points whose aligned projection falls in the bin around each grid value
    (NaN for an empty bin). ``grid`` must be increasing and evenly spaced.
    """
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or len(grid) < 2 or not np.allclose(np.diff(grid), grid[1] - grid[0]):
        raise ValueError("grid: expected an increasing, evenly spaced 1-D array")
    keep = fits.boundary & np.isfinite(fits.threshold)
    if not keep.any():
        return np.full(len(grid), np.nan), np.full(len(grid), np.nan)
    fitted = expit(fits.slope[keep, None] * grid[None, :]).mean(0)
    adversarial = np.atleast_2d(adversarial)[keep]
    z = np.broadcast_to(projection, adversarial.shape) - fits.threshold[keep, None]
    h = grid[1] - grid[0]
    bins = np.round((z - grid[0]) / h).astype(int)
    inside = (bins >= 0) & (bins < len(grid))
    count = np.bincount(bins[inside], minlength=len(grid))
    hits = np.bincount(bins[inside], weights=adversarial[inside], minlength=len(grid))
    with np.errstate(invalid="ignore", divide="ignore"):
        empirical = np.where(count > 0, hits / count, np.nan)
    return fitted, empirical


def slope_summary(fits: Fits, ceiling: np.ndarray | None = None,
                  above: float = 6.0) -> dict[str, float]:
    """Fig. 4e in numbers, over slices with a boundary (the others are only counted).

    ``ceiling`` (from :func:`sharp_slope`) adds the median sharpness slope / ceiling.
    """
    k = fits.slope[fits.boundary]
    out = {"slices": len(fits.slope), "without boundary": fits.n_without_boundary,
           "separable": int(fits.separable.sum()),
           "mean slope": float(k.mean()) if len(k) else np.nan,
           "std slope": float(k.std(ddof=1)) if len(k) > 1 else np.nan,
           "median slope": float(np.median(k)) if len(k) else np.nan,
           f"fraction slope > {above:g}": float((k > above).mean()) if len(k) else np.nan}
    if ceiling is not None:
        r = (fits.slope / ceiling)[fits.boundary]
        out["median sharpness"] = float(np.median(r)) if len(r) else np.nan
    return out


# --- GAAS and the cap volume (appendix A.2, A.3) -------------------------------------------

def rule_radius(attack_length: np.ndarray, per_length: float) -> float:
    """Sec. 5's rule for the slice radius: ``per_length`` times the median l2 length of the
    attacks (the paper: R = 3.0 where the typical length is about 1, so 3)."""
    length = np.asarray(attack_length, dtype=np.float64)
    if not len(length) or not (length > 0).all():
        raise ValueError(f"attack_length: expected positive lengths, got {attack_length}")
    return float(per_length * np.median(length))


def linf_ball_l2_radius(eps: float, d: int) -> float:
    """The l2 threat radius used for GAAS and the cap volume: eps sqrt(d), the radius of the
    smallest l2 ball that holds the Linf ball of radius eps (its corners) in d dimensions.
    An Linf attack never moves farther than this in l2 (CIFAR-10, 8/255: 1.74)."""
    if eps < 0 or d < 1:
        raise ValueError(f"linf_ball_l2_radius: expected eps >= 0 and d >= 1, got {eps}, {d}")
    return float(eps * np.sqrt(d))


@torch.no_grad()
def logit_ranges(classifier: Callable[[Tensor], Tensor], x0: Tensor, direction: Tensor,
                 radius: float, grid: int = 32) -> Tensor:
    """Definition 3: r_i(eta, eps) = sup - inf of logit i on the segment x0 + gamma eta / ||eta||,
    gamma in [0, eps), for every image and logit: (B, classes).

    The segment is sampled at ``grid`` evenly spaced gamma from 0 up to (not including)
    ``radius``; points are not clipped to [0,1] (module docstring).
    """
    if x0.shape != direction.shape or radius <= 0 or grid < 2:
        raise ValueError(f"logit_ranges: expected equal shapes, radius > 0, grid >= 2, got "
                         f"{tuple(x0.shape)}, {tuple(direction.shape)}, {radius}, {grid}")
    u = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *[1] * (x0.ndim - 1))
    gammas = (torch.arange(grid, dtype=torch.float64) * (radius / grid)).to(x0)
    points = (x0[None] + gammas.view(-1, *[1] * x0.ndim) * u[None]).flatten(0, 1)
    z = torch.cat([classifier(points[i:i + 256]) for i in range(0, len(points), 256)])
    z = z.view(grid, len(x0), -1)                                        # (grid, B, classes)
    return (z.amax(0) - z.amin(0)).double()


def gaas_directions(gradient: Tensor, k: int, eps: float,
                    generator: torch.Generator | None = None) -> Tensor:
    """Tramer et al.'s GAAS: ``k`` mutually orthogonal vectors of l2 length ``eps``, each with
    projection eps / sqrt(k) on the unit ``gradient`` (D,), as (k, D).

    A Householder reflection H that maps s = (q_1 + ... + q_k) / sqrt(k) to the unit
    gradient a, applied to a random orthonormal frame q_1..q_k: eps H q_i are
    orthogonal, and <H q_i, a> = <q_i, H a> = <q_i, s> = 1 / sqrt(k). Under the
    cap model a direction is adversarial when its projection reaches gamma, so at most
    floor(1 / alpha^2) of them are (A.2).
    """
    a = gradient.flatten().double().cpu()
    d = len(a)
    if not 1 <= k <= d or eps <= 0 or a.norm() == 0:
        raise ValueError(f"gaas_directions: expected 1 <= k <= {d}, eps > 0 and a non-zero "
                         f"gradient, got k={k}, eps={eps}")
    a = a / a.norm()
    q = torch.linalg.qr(torch.randn(d, k, generator=generator, dtype=torch.float64)).Q  # (d, k)
    w = q.sum(1) / k**0.5 - a
    nw = w.norm()
    r = q.T if nw < 1e-12 else q.T - 2 * (q.T @ w).view(-1, 1) * w.view(1, -1) / nw**2
    return eps * r


def orthogonal_adversarial_count(classifier: Callable[[Tensor], Tensor], x: Tensor, y: Tensor,
                                 eps: float, max_k: int,
                                 generator: torch.Generator | None = None,
                                 linf: float | None = None) -> np.ndarray:
    """App. A.2 measured: mutually orthogonal adversarial directions within l2 radius ``eps``.

    For each image and each k = 1..``max_k``, :func:`gaas_directions` along the gradient of
    the cross-entropy at x; the count of image b is the largest number of the k
    directions that fool the classifier at x + r_i, over k. GAAS's construction is the
    one the cap model's k = min(floor(1 / alpha^2), d) bounds: for a linear
    classifier with margin gamma the count is exactly that k (capped at ``max_k``).
    ``linf``: each direction clipped to the Linf ball of that radius (the threat ball of an
    Linf attack; clipping keeps the directions inside it at the cost of exact orthogonality).
    Points are not clipped to [0,1]. Returns (B,) ints.
    """
    if max_k < 1 or eps <= 0 or (linf is not None and linf <= 0):
        raise ValueError(f"orthogonal_adversarial_count: expected max_k >= 1, eps > 0 and "
                         f"linf > 0, got {max_k}, {eps}, {linf}")
    with torch.enable_grad():
        z = x.detach().clone().requires_grad_(True)
        grad = torch.autograd.grad(F.cross_entropy(classifier(z), y, reduction="sum"), z)[0]
    d = x[0].numel()
    counts = np.zeros(len(x), dtype=np.int64)
    with torch.no_grad():
        for b in range(len(x)):
            if grad[b].abs().sum() == 0:
                continue
            for k in range(1, min(max_k, d) + 1):
                r = gaas_directions(grad[b], k, eps, generator).to(x)
                r = r if linf is None else r.clamp(-linf, linf)
                pred = classifier(x[b:b + 1] + r.view(k, *x.shape[1:])).argmax(1)
                counts[b] = max(counts[b], int((pred != y[b]).sum()))
    return counts


def gaas_k(alpha: float | np.ndarray, d: int) -> int | np.ndarray:
    """Appendix A.2: the most orthogonal adversarial directions, k = min(floor(1/alpha^2), d).

    ``alpha`` = gamma / eps, the critical threshold over the ball radius (> 0).
    """
    a = np.asarray(alpha, dtype=np.float64)
    if d < 1 or (a <= 0).any() or np.isnan(a).any():
        raise ValueError(f"gaas_k: expected alpha > 0 and d >= 1, got alpha={alpha}, d={d}")
    with np.errstate(over="ignore"):   # 1 + 1e-12: 1 / 0.2**2 is 24.999... in floating point
        k = np.minimum(np.floor((1.0 + 1e-12) / a**2), d).astype(np.int64)
    return int(k) if k.ndim == 0 else k


def cap_volume_ratio(beta_bar: float | np.ndarray, d: int) -> float | np.ndarray:
    """Eq. 7: V_cap / V_ball = 1/2 I_{1 - beta_bar^2}((d + 1)/2, 1/2).

    The fraction of the d-dimensional l2 ball of radius eps beyond the hyperplane
    at distance ``beta_bar`` * eps from its centre (beta_bar = gamma / eps).
    ``scipy.special.betainc`` is accurate for large d (no Gamma-function
    overflow); beta_bar >= 1 gives 0, and a negative beta_bar (a cap larger than
    half the ball) gives 1 - ratio(-beta_bar).
    """
    b = np.asarray(beta_bar, dtype=np.float64)
    if d < 1 or np.isnan(b).any():
        raise ValueError(f"cap_volume_ratio: expected d >= 1 and a real beta_bar, got "
                         f"beta_bar={beta_bar}, d={d}")
    m = np.minimum(np.abs(b), 1.0)
    half = 0.5 * betainc((d + 1) / 2, 0.5, 1.0 - m**2)
    out = np.where(b >= 0, half, 1.0 - half)
    return float(out) if out.ndim == 0 else out


def monte_carlo_cap_share(beta_bar: float, d: int, n: int, seed: int) -> float:
    """Eq. 7 by Monte Carlo: the share of ``n`` points uniform in the unit d-ball whose first
    coordinate exceeds ``beta_bar``.

    A uniform point's first coordinate is that of a Gaussian direction (z1 over the norm,
    the other d - 1 squared coordinates summed as one chi-square draw) times a radius
    U^(1/d); the draws come from ``numpy.random.default_rng(seed)`` in that order.
    """
    rng = np.random.default_rng(seed)
    z1, rest = rng.standard_normal(n), rng.chisquare(d - 1, n) if d > 1 else 0.0
    first = z1 / np.sqrt(z1**2 + rest) * rng.random(n) ** (1 / d)
    return float((first > beta_bar).mean())


def gaas_k_at_thresholds(threshold: np.ndarray, boundary: np.ndarray, eps: float,
                         d: int) -> tuple[np.ndarray, np.ndarray]:
    """App. A.2's k = min(floor(1 / alpha^2), d) per slice, alpha = x0 / ``eps`` at the fitted
    thresholds x0: (k, usable), k = -1 where the slice has no boundary or x0 <= 0."""
    usable = boundary & (threshold > 0)
    k = np.full(len(threshold), -1)
    k[usable] = gaas_k(threshold[usable] / eps, d)
    return k, usable


def logit_range_ratio(adversarial: Tensor, random: Tensor) -> Tensor:
    """Definition 3 per image: max_i r_i(adv) / E r_i(rand) over the logits i, from the
    ranges (B, classes) along the adversarial direction and their mean over random ones."""
    return (adversarial / random.clamp_min(1e-12)).amax(1)
