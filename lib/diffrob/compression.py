"""Sec. 6: diffusion models improve robustness by compressing image space.

Everything here looks at a purifier ``f`` with its randomness fixed (eq. 9 with
one base seed and batch index), which makes ``f`` a deterministic map of images:

- :func:`pca_spectra`: PCA spectrum of N points of the Linf neighbourhood of a
  clean image before and after ``f`` (Fig. 5b);
- :func:`jacobian` and :func:`jacobian_spectrum`: the exact Jacobian J_f(x0) of
  eq. 4 and its eigenvalue / singular-value spectrum (Fig. 5c);
  :func:`top_singular_values`: the top of that spectrum without forming J, for
  images too large for the exact Jacobian (ImageNet; not in the paper);
- :func:`compression_rate`: ||f(x0 + eta) - f(x0)|| / ||eta|| for random eta, and
  :func:`world_compression_rates` for it over ``jacobian_images`` images;
- :func:`boundary_distance` (the critical threshold gamma of Assumption 2 / App. A.1:
  the distance from f(x0) to the classifier's boundary along the classifier's own
  adversarial direction at f(x0)), :func:`critical_threshold` (the distance along a
  given ray), :func:`robust_factors` and :func:`roc`: what separates robust from non-robust
  examples (Fig. 6b, 6c; their AUC intervals are :func:`diffrob.verdicts.auc`);
- :func:`compare_spectra`: the Jacobian spectra of robust and non-robust examples (sec. 6).

The maps ``f`` taken as arguments work on batches (N, C, H, W) -> (N, C, H, W)
row by row, and must be the *same* map for every row: for a diffusion purifier
that is :func:`fixed_purifier` (every row gets the noise of one one-image batch,
``shared_noise=True``). Adversarial examples and directions are arguments, so
nothing here depends on a particular attack.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from . import attacks, stages, store, verdicts
from .purifiers import Purifier, seed_for

ImageMap = Callable[[Tensor], Tensor]
EXACT_JACOBIAN_MAX_DIM = 3072  # CIFAR-10's D: D VJPs per image, affordable on a GPU; not ImageNet's


@contextmanager
def forward_mode():
    """Forward-mode AD without autograd's graph; attention on PyTorch's plain ("math") kernel,
    the one with a forward-mode derivative."""
    with torch.no_grad(), forward_ad.dual_level(), sdpa_kernel(SDPBackend.MATH):
        yield


def fixed_purifier(purifier: Purifier, base_seed: int = 0, batch_index: int = 0) -> ImageMap:
    """The purifier as one deterministic, differentiable map f (sec. 6, eq. 9).

    Every row of a batch gets the noise that a one-image batch gets under
    (``base_seed``, ``batch_index``), so ``f(x)[r]`` depends on ``x[r]`` only
    and is the same function for every row. Gradients flow through every step
    (checkpointed) whenever autograd is enabled. The diffusion model runs in float32 here
    whatever the params' ``autocast``: the Jacobian's small eigenvalues (sec. 6) lie below
    bf16's resolution, and forward-mode AD has no autocast rules.
    """
    exact = copy.copy(purifier)
    exact.autocast = "none"

    def f(x: Tensor) -> Tensor:
        return exact(x, base_seed, batch_index, grad=True, shared_noise=True)
    return f


def _one_image(x0: Tensor) -> Tensor:
    if x0.ndim == 3:
        x0 = x0.unsqueeze(0)
    if x0.ndim != 4 or x0.shape[0] != 1:
        raise ValueError(f"x0: expected one image (C, H, W) or (1, C, H, W), got {tuple(x0.shape)}")
    return x0


@torch.no_grad()
def apply(f: ImageMap, x: Tensor, chunk: int = 256, desc: str | None = None) -> Tensor:
    """``f`` on ``x`` in chunks of ``chunk`` rows, without gradients."""
    if chunk < 1:
        raise ValueError(f"chunk: expected >= 1, got {chunk}")
    parts = x.split(chunk)
    return torch.cat([f(p) for p in tqdm(parts, desc=desc, disable=desc is None or len(parts) < 2)])


def linf_neighbours(x0: Tensor, eps: float, n: int,
                    generator: torch.Generator | None = None) -> Tensor:
    """``n`` uniform samples of the Linf ball of radius ``eps`` around one image, in [0,1]."""
    x0 = _one_image(x0)
    if eps < 0 or n < 1:
        raise ValueError(f"linf_neighbours: expected eps >= 0 and n >= 1, got eps={eps}, n={n}")
    u = torch.rand((n, *x0.shape[1:]), generator=generator, device=x0.device, dtype=x0.dtype)
    return (x0 + eps * (2 * u - 1)).clamp(0, 1)


def pca_spectrum(points: Tensor, k: int | None = None) -> Tensor:
    """Variances along the principal components of ``points`` (N, ...), largest first.

    The eigenvalues of the sample covariance of the flattened points (N - 1
    normalisation), computed as squared singular values of the centred data.
    """
    if points.shape[0] < 2:
        raise ValueError(f"points: PCA needs at least 2 rows, got {points.shape[0]}")
    z = points.flatten(1).double()
    s = torch.linalg.svdvals(z - z.mean(0))
    return (s**2 / (z.shape[0] - 1))[:k]


@dataclass(frozen=True)
class Neighbourhood:
    """PCA spectra of a neighbourhood before and after f, and the compression rate of each point."""

    before: Tensor   # component variances of the inputs, largest first
    after: Tensor    # component variances of their images under f
    rates: Tensor    # ||f(x) - f(x0)|| / ||x - x0|| per sample
    input_variance: float  # trace / D of the inputs' sample covariance (per-direction variance)

    def normalised(self) -> tuple[Tensor, Tensor]:
        """Both spectra divided by the inputs' per-direction variance (trace / D).

        For an unclipped Linf ball that is eps^2 / 3, the variance of every direction;
        the top sample eigenvalues of n points in D dimensions are larger than that
        (Marchenko-Pastur: about (1 + sqrt(D / n))^2 times at the top), so dividing by
        their mean would understate the purified variances. A purified component at v
        then reads as a squared compression factor v along that direction.
        """
        return self.before / self.input_variance, self.after / self.input_variance


def pca_spectra(f: ImageMap, x0: Tensor, eps: float, n: int, k: int | None = None,
                chunk: int = 256, generator: torch.Generator | None = None) -> Neighbourhood:
    """Fig. 5b: PCA spectra of ``n`` Linf-neighbours of ``x0`` before and after ``f``.

    Returns the top-``k`` component variances of the inputs and of their images
    under ``f``, and the compression rate of every sample (:func:`compression_rate`,
    on the same points). For a linear f(x) = A x and an unclipped ball, the inputs'
    variances are all eps^2 / 3 and the outputs' are eps^2 / 3 times the squared
    singular values of A; :meth:`Neighbourhood.normalised` divides by the inputs'
    per-direction variance (trace / D of their sample covariance, eps^2 / 3 where
    no pixel is clipped), giving the squared compression along each direction.
    """
    x0 = _one_image(x0)
    points = linf_neighbours(x0, eps, n, generator)
    images = apply(f, points, chunk, "PCA samples")
    with torch.no_grad():
        rates = _rates(points - x0, images - f(x0))
    variance = points.flatten(1).double().var(0).mean().item()
    return Neighbourhood(pca_spectrum(points, k), pca_spectrum(images, k), rates, variance)


def _rates(eta: Tensor, moved: Tensor) -> Tensor:
    eta, moved = eta.flatten(1).double(), moved.flatten(1).double()
    if (eta.norm(dim=1) == 0).any():
        raise ValueError("eta: a perturbation is zero (after clipping to [0,1])")
    return moved.norm(dim=1) / eta.norm(dim=1)


def vjp_rows(f: ImageMap, x0: Tensor, cotangents: Tensor, chunk: int = 64,
             progress: bool = False) -> Tensor:
    """Vector-Jacobian products u^T J_f(x0) for the rows u of ``cotangents`` (M, D_out) -> (M, D_in).

    The products come ``chunk`` at a time: ``chunk`` copies of ``x0`` go through
    ``f`` as one batch and one backward pass with one cotangent per copy. This
    folds the VJP batch into the batch dimension, so it works with any model and
    with the purifier's per-step activation checkpointing (``torch.func.vjp`` does
    not accept checkpointing's saved-tensor hooks, and ``is_grads_batched`` was
    slower here). It needs ``f`` to be the same map for every row, which
    :func:`fixed_purifier` guarantees. Memory is that of one attack gradient of
    batch ``chunk``.
    """
    if chunk < 1:
        raise ValueError(f"chunk: expected >= 1, got {chunk}")
    x0 = _one_image(x0).detach()
    rows = []
    parts = cotangents.split(chunk)
    for u in tqdm(parts, desc="vector-Jacobian products", disable=not progress or len(parts) < 2):
        x = x0.expand(len(u), *x0.shape[1:]).clone().requires_grad_(True)
        with torch.enable_grad():
            y = f(x).flatten(1)
            (g,) = torch.autograd.grad(y, x, u.to(y))
        rows.append(g.flatten(1).detach())
    return torch.cat(rows)


def jvp_rows(f: ImageMap, x0: Tensor, tangents: Tensor, chunk: int = 64) -> Tensor:
    """Jacobian-vector products J_f(x0) v for the rows v of ``tangents`` (M, D_in) -> (M, D_out).

    Forward-mode automatic differentiation (:func:`forward_mode`), ``chunk`` tangents
    per batch of copies of ``x0`` as in :func:`vjp_rows`: exact like the VJPs, and it
    saves no activations, so memory is that of a forward pass.
    """
    if chunk < 1:
        raise ValueError(f"chunk: expected >= 1, got {chunk}")
    x0 = _one_image(x0).detach()
    rows = []
    with forward_mode():
        for v in tangents.split(chunk):
            x = forward_ad.make_dual(x0.expand(len(v), *x0.shape[1:]).clone(),
                                     v.to(x0).view(len(v), *x0.shape[1:]))
            rows.append(forward_ad.unpack_dual(f(x)).tangent.flatten(1))
    return torch.cat(rows)


def jacobian(f: ImageMap, x0: Tensor, chunk: int = 64, progress: bool = False) -> Tensor:
    """The exact Jacobian J_f(x0) (eq. 4) as a (D_out, D_in) matrix: the VJPs of the
    unit vectors e_r (:func:`vjp_rows`). The CIFAR-10 purifier's 3072 x 3072 Jacobian is
    3072 / ``chunk`` attack gradients of batch ``chunk``."""
    x0 = _one_image(x0).detach()
    with torch.no_grad():
        d_out = f(x0).numel()
    return vjp_rows(f, x0, torch.eye(d_out, device=x0.device, dtype=x0.dtype), chunk, progress)


def top_singular_values(f: ImageMap, x0: Tensor, k: int, iterations: int = 6,
                        oversample: int = 8, chunk: int = 64,
                        generator: torch.Generator | None = None,
                        progress: bool = False) -> Tensor:
    """The ``k`` largest singular values of J_f(x0) without forming J (extends Fig. 5c).

    Randomized subspace iteration (Halko, Martinsson and Tropp 2011, Algorithms
    4.4 and 5.1): a Gaussian block of ``k + oversample`` directions goes through
    J (:func:`jvp_rows`) and J^T (:func:`vjp_rows`) ``iterations`` times, with
    orthonormalisation in between, and the singular values of J restricted to the
    final subspace estimate the top of the spectrum. The error of the i-th value
    shrinks like (sigma_{k+oversample+1} / sigma_i)^(2 iterations + 1). Cost:
    ``iterations + 1`` batched JVPs and VJPs of ``k + oversample`` rows each, instead
    of the exact Jacobian's D VJPs: what makes the spectrum's top reachable for
    ImageNet's D = 150,528.
    """
    x0 = _one_image(x0).detach()
    d_in = x0.numel()
    if not 1 <= k <= d_in or iterations < 0 or oversample < 0:
        raise ValueError(f"top_singular_values: expected 1 <= k <= {d_in}, iterations >= 0 and "
                         f"oversample >= 0, got k={k}, iterations={iterations}, "
                         f"oversample={oversample}")
    width = min(k + oversample, d_in)
    omega = torch.randn(width, d_in, generator=generator, dtype=torch.float64)

    bar = tqdm(total=2 * (iterations + 1), desc=f"J and J^T on {width} directions",
               disable=not progress, leave=False)

    def through(products, rows: Tensor) -> Tensor:
        out = products(f, x0, rows.to(x0), chunk).double().cpu()
        bar.update()
        return out

    def orthonormal_rows(a: Tensor) -> Tensor:
        return torch.linalg.qr(a.T).Q.T

    q = orthonormal_rows(through(jvp_rows, omega))                  # range of J
    for _ in range(iterations):
        w = orthonormal_rows(through(vjp_rows, q))                  # range of J^T
        q = orthonormal_rows(through(jvp_rows, w))
    top = torch.linalg.svdvals(through(vjp_rows, q))[:k]
    bar.close()
    return top


def jacobian_rowwise(f: ImageMap, x0: Tensor) -> Tensor:
    """The reference Jacobian: one forward and one ``torch.autograd.grad`` per output row."""
    x = _one_image(x0).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = f(x).flatten()
        rows = [torch.autograd.grad(y[r], x, retain_graph=r < len(y) - 1)[0].flatten()
                for r in range(len(y))]
    return torch.stack(rows)


@dataclass(frozen=True)
class Spectrum:
    """Spectrum of a Jacobian: eigenvalue magnitudes and singular values, both largest first."""

    eigenvalues: Tensor
    singular_values: Tensor


def jacobian_spectrum(jac: Tensor) -> Spectrum:
    """Fig. 5c: |eigenvalues| and singular values of a square Jacobian (float64).

    The paper's figure and its numbers (largest eigenvalue 1.32, 2760 of 3072
    below 0.25, 17 above 1) are eigenvalue *magnitudes*: the Jacobian is not
    symmetric, so its eigenvalues are complex and only their moduli order them;
    that is what the figure shows, to compare with the paper. The singular
    values are reported beside them because they are what bounds compression
    (||J eta|| <= sigma_max ||eta||, and the PCA spectrum of a small ball is
    sigma^2 eps^2 / 3): for a non-normal J a small |eigenvalue| does not mean
    small stretching. Every |eigenvalue| lies between the smallest and largest
    singular value.
    """
    if jac.ndim != 2 or jac.shape[0] != jac.shape[1]:
        raise ValueError(f"jac: expected a square matrix, got shape {tuple(jac.shape)}")
    j = jac.double()
    eig = torch.linalg.eigvals(j).abs().sort(descending=True).values
    return Spectrum(eig, torch.linalg.svdvals(j))


def spectrum_summary(values: Tensor, low: float = 0.25, high: float = 1.0) -> dict[str, float]:
    """Sec. 6's numbers for spectra stacked as (n_images, D): the largest value (mean, std),
    and how many values per image lie below ``low`` and above ``high`` (means)."""
    v = values.reshape(-1, values.shape[-1]).double()
    top = v.max(1).values
    return {"top_mean": top.mean().item(),
            "top_std": top.std().item() if len(top) > 1 else 0.0,
            "below_low": (v < low).sum(1).double().mean().item(),
            "above_high": (v > high).sum(1).double().mean().item(),
            "dim": v.shape[1]}


def compression_rate(f: ImageMap, x0: Tensor, eta: Tensor, chunk: int = 256) -> Tensor:
    """||f(x0 + eta) - f(x0)|| / ||eta|| for each row of ``eta`` (sec. 6: ~0.25 for random eta).

    ``x0`` is one image; ``x0 + eta`` is clipped to [0,1] and eta is taken as
    the perturbation that remains after clipping.
    """
    x0 = _one_image(x0)
    x = (x0 + eta).clamp(0, 1)
    with torch.no_grad():
        return _rates(x - x0, apply(f, x, chunk) - f(x0))


@torch.no_grad()
def critical_threshold(classifier: nn.Module | Callable[[Tensor], Tensor], start: Tensor,
                       direction: Tensor, labels: Tensor, max_dist: float = 5.0,
                       grid: int = 50, tol: float = 1e-4) -> Tensor:
    """Sec. 6 (Fig. 6b): l2 distance from ``start`` along ``direction`` at which the decision flips.

    For each row, the smallest r in [0, ``max_dist``] with
    ``classifier(start + r u).argmax() != label`` (u = direction / ||direction||):
    a grid of ``grid`` steps finds the first wrong point, bisection refines it
    to ``tol``. ``inf`` where no flip happens up to ``max_dist`` (or the
    direction is zero); 0 where ``start`` itself is misclassified. Points are
    not clipped to [0,1] (a distance of 5 leaves the image box). In sec. 6,
    start = f(x0) and direction = f(x_adv) - f(x0).
    """
    if start.shape != direction.shape or start.shape[0] != labels.shape[0]:
        raise ValueError(f"start {tuple(start.shape)}, direction {tuple(direction.shape)} and "
                         f"labels {tuple(labels.shape)} must agree")
    if max_dist <= 0 or grid < 1 or tol <= 0:
        raise ValueError(f"expected max_dist > 0, grid >= 1, tol > 0, "
                         f"got {max_dist}, {grid}, {tol}")
    norm = direction.flatten(1).norm(dim=1)
    u = direction / norm.clamp_min(1e-30).view(-1, *[1] * (direction.ndim - 1))

    def wrong(r: Tensor, rows: Tensor) -> Tensor:
        x = start[rows] + r.view(-1, *[1] * (start.ndim - 1)).to(start.dtype) * u[rows]
        return classifier(x).argmax(1) != labels[rows]

    n = start.shape[0]
    radii = torch.linspace(0, max_dist, grid + 1, device=start.device, dtype=torch.float64)
    flags = torch.stack([wrong(r.expand(n), torch.arange(n, device=start.device))
                         for r in radii], 1)                          # (n, grid + 1)
    flags &= (norm > 0).view(-1, 1) | (torch.arange(grid + 1, device=start.device) == 0)
    first = torch.where(flags.any(1), flags.float().argmax(1), torch.full_like(norm, -1).long())
    out = torch.full((n,), math.inf, dtype=torch.float64, device=start.device)
    out[first == 0] = 0.0
    rows = torch.nonzero(first > 0).flatten()
    if len(rows):
        lo, hi = radii[first[rows] - 1], radii[first[rows]]
        for _ in range(max(0, math.ceil(math.log2((max_dist / grid) / tol)))):
            mid = (lo + hi) / 2
            w = wrong(mid, rows)
            hi, lo = torch.where(w, mid, hi), torch.where(w, lo, mid)
        out[rows] = hi
    return out


def deepfool(classifier: nn.Module | Callable[[Tensor], Tensor], start: Tensor, labels: Tensor,
             steps: int = 50, overshoot: float = 0.02, candidates: int = 10) -> Tensor:
    """An l2 adversarial direction of the classifier alone at ``start``: DeepFool's perturbation.

    DeepFool (Moosavi-Dezfooli et al. 2016): at each step the classifier is
    linearised and the point moves to the nearest linearised boundary among the
    ``candidates`` highest-scoring other classes, until the decision leaves the
    label (or ``steps`` run out); the total is scaled by 1 + ``overshoot``. For an
    affine two-class classifier one step lands on the boundary's foot point, so the
    perturbation's direction is the normal of the boundary. Points are not clipped to
    [0,1] (as :func:`critical_threshold`). Rows already misclassified get zero.
    Returns the perturbation (same shape as ``start``); gradients of ``classifier``
    only, nothing of any purifier.
    """
    if steps < 1 or overshoot < 0 or candidates < 1:
        raise ValueError(f"deepfool: expected steps >= 1, overshoot >= 0, candidates >= 1, "
                         f"got {steps}, {overshoot}, {candidates}")
    start, labels = start.detach(), labels.to(start.device)
    total = torch.zeros_like(start)
    for _ in range(steps):
        x = (start + (1 + overshoot) * total).requires_grad_(True)
        with torch.enable_grad():
            z = classifier(x)
            active = z.argmax(1) == labels
            if not active.any():
                break
            m = min(candidates + 1, z.shape[1])
            others = z.detach().scatter(1, labels.view(-1, 1), -math.inf).topk(m - 1, 1).indices
            grad_y = torch.autograd.grad(z.gather(1, labels.view(-1, 1)).sum(), x,
                                         retain_graph=True)[0]
            best = torch.full((len(x),), math.inf, device=x.device, dtype=z.dtype)
            step = torch.zeros_like(x)
            for j in range(m - 1):
                k = others[:, j]
                w = torch.autograd.grad(z.gather(1, k.view(-1, 1)).sum(), x,
                                        retain_graph=j < m - 2)[0] - grad_y
                gap = (z.gather(1, labels.view(-1, 1)) - z.gather(1, k.view(-1, 1))).detach()
                wn = w.flatten(1).norm(dim=1).clamp_min(1e-12)
                dist = gap.view(-1).abs() / wn
                closer = dist < best
                best = torch.where(closer, dist, best)
                r = ((dist + 1e-4) / wn).view(-1, *[1] * (x.ndim - 1)) * w
                step = torch.where(closer.view(-1, *[1] * (x.ndim - 1)), r, step)
        total = total + torch.where(active.view(-1, *[1] * (x.ndim - 1)), step, 0).detach()
    return (1 + overshoot) * total


@torch.no_grad()
def boundary_distance(classifier: nn.Module | Callable[[Tensor], Tensor], start: Tensor,
                      labels: Tensor, max_dist: float = 5.0, steps: int = 50) -> Tensor:
    """The critical threshold gamma of Assumption 2 / App. A.1 at ``start`` (sec. 6, Fig. 6b).

    The distance from ``start`` (in sec. 6, the purified clean image f(x0)) to the
    classifier's decision boundary along an adversarial direction *of the
    classifier at that point*: the direction of :func:`deepfool` on the classifier
    alone, then :func:`critical_threshold` along it (first flip, to ``max_dist``).
    Nothing of the purifier or of its attack enters, so whether the purified attack
    is shorter than gamma is a finding, not a definition.
    """
    direction = deepfool(classifier, start, labels, steps)
    return critical_threshold(classifier, start, direction, labels, max_dist)


@dataclass(frozen=True)
class RobustFactors:
    """Per example: decisions on the purified clean and adversarial images, sec. 6's factors."""

    clean_correct: Tensor   # classifier(f(x0)) == y
    robust: Tensor          # classifier(f(x_adv)) == y
    critical: Tensor        # gamma: boundary distance at f(x0) along g's own direction, Fig. 6b
    ray: Tensor             # boundary distance along the purified attack's own ray (circular)
    length: Tensor          # purified attack length ||f(x_adv) - f(x0)||, Fig. 6c
    attack_length: Tensor   # ||x_adv - x0||


@torch.no_grad()
def robust_factors(classifier: nn.Module | Callable[[Tensor], Tensor], x0: Tensor, x_adv: Tensor,
                   clean_purified: Tensor, adv_purified: Tensor, labels: Tensor,
                   max_dist: float = 5.0) -> RobustFactors:
    """Fig. 6: what separates robust from non-robust examples under one fixed randomness.

    An example is robust if the classifier is right on the purified adversarial
    image f(x_adv). The critical threshold gamma is :func:`boundary_distance` at
    f(x0), computed from the classifier alone. ``ray`` is the boundary distance
    along the purified attack f(x_adv) - f(x0) itself: there an example is robust
    exactly when its purified attack is shorter than ``ray`` (up to decision regions
    that are not convex along the ray), by construction, so ``ray`` separates the
    two groups almost perfectly whatever the purifier does and is no evidence.
    """
    d = adv_purified - clean_purified
    return RobustFactors(
        clean_correct=classifier(clean_purified).argmax(1) == labels,
        robust=classifier(adv_purified).argmax(1) == labels,
        critical=boundary_distance(classifier, clean_purified, labels, max_dist),
        ray=critical_threshold(classifier, clean_purified, d, labels, max_dist),
        length=d.flatten(1).norm(dim=1).double(),
        attack_length=(x_adv - x0).flatten(1).norm(dim=1).double())


def roc(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor, float]:
    """ROC curve and AUC of ``scores`` (higher = positive) for the boolean ``positive``.

    Returns (false positive rates, true positive rates, AUC), the curve from
    (0, 0) to (1, 1) through every distinct threshold; the AUC is the
    Mann-Whitney probability that a positive outscores a negative (ties count
    one half). Infinite scores (no flip found) are allowed.
    """
    s, pos = scores.double().flatten().cpu(), positive.bool().flatten().cpu()
    if s.shape != pos.shape:
        raise ValueError(f"scores {tuple(s.shape)} and positive {tuple(pos.shape)} must agree")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc: needs both classes, got {n_pos} positive and {n_neg} negative")
    thresholds = torch.unique(s).flip(0)
    tpr = torch.stack([(s[pos] >= t).sum() for t in thresholds]).double() / n_pos
    fpr = torch.stack([(s[~pos] >= t).sum() for t in thresholds]).double() / n_neg
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([zero, fpr]), torch.cat([zero, tpr]), _auc(s, pos)


def _auc(s: Tensor, pos: Tensor) -> float:
    greater = (s[pos].view(-1, 1) > s[~pos].view(1, -1)).double()
    ties = (s[pos].view(-1, 1) == s[~pos].view(1, -1)).double()
    return (greater + 0.5 * ties).mean().item()


def compare_spectra(values: Tensor, robust: Tensor, low: float = 0.25,
                    high: float = 1.0) -> dict[str, dict[str, float] | verdicts.Estimate]:
    """Sec. 6: do the Jacobian spectra of robust and non-robust examples differ?

    ``values`` (n, D) are per-image spectra (|eigenvalues| or singular values),
    ``robust`` (n,) booleans. Returns :func:`spectrum_summary` of each group and, for
    the largest value and the count below ``low``, the AUC with which it tells robust
    from non-robust with its bootstrap interval (:func:`diffrob.verdicts.auc`): 0.5 means
    no difference (the paper finds none).
    """
    robust = robust.bool().cpu()
    v = values.reshape(len(robust), -1).double().cpu()
    if not 0 < int(robust.sum()) < len(robust):
        raise ValueError(f"robust: expected both robust and non-robust examples, got "
                         f"{int(robust.sum())} of {len(robust)} robust")
    return {"robust": spectrum_summary(v[robust], low, high),
            "non-robust": spectrum_summary(v[~robust], low, high),
            "auc largest": verdicts.auc(v.max(1).values, robust),
            f"auc below {low:g}": verdicts.auc((v < low).sum(1).double(), robust)}


# --- the stages of the chapter on a World (results through the store) -------------------

# What determines each stage's result (the store refuses files made with other values).
_MODEL_FIELDS = ("world", "diffusion_model", "autocast", "purifier", "t_star", "base_seed")
_BATCH_FIELDS = ("n_images", "batch_size")  # eq. 9's batch index and the noise per row


def _key(world, stage: str, fields: tuple[str, ...]) -> dict:
    return store.world_key(world, stage, _MODEL_FIELDS + fields)


def jacobian_spectra(world, progress: bool = True) -> Spectrum:
    """Fig. 5c for the first ``jacobian_images`` test images: spectra stacked as (n, D).

    Image n is purified alone with base seed ``base_seed`` and batch index n
    (eq. 9), so each image has its own fixed randomness. Each image's spectra are
    stored (``compression/jacobian``, one file per image) and read back on reruns.
    """
    p, stage = world.params, "compression/jacobian"
    k = _key(world, stage, ())
    purifier, eig, sv = world.purifier(), [], []
    n = min(p.jacobian_images, len(world.images))
    for i in tqdm(range(n), desc="Jacobians", unit="image", disable=not progress):
        both = store.read(p, stage, i, k)
        if both is None:
            jac = jacobian(fixed_purifier(purifier, p.base_seed, i), world.images[i:i + 1],
                           p.jacobian_chunk, progress)
            s = jacobian_spectrum(jac)
            both = torch.stack([s.eigenvalues, s.singular_values])
            store.write(p, stage, i, both, k)
        eig.append(both[0])
        sv.append(both[1])
    return Spectrum(torch.stack(eig), torch.stack(sv))


def world_compression_rates(world, samples: int, progress: bool = True) -> Tensor:
    """Sec. 6's compression rate at each of the first ``jacobian_images`` test images: (n, samples).

    Image i is purified with the fixed randomness of :func:`jacobian_spectra` (base
    seed ``base_seed``, batch index i) at ``samples`` uniform points of its Linf ball of
    radius ``eps`` (:func:`linf_neighbours`, generator seeded i); each row holds
    ||f(x) - f(x_i)|| / ||x - x_i|| per point. The paper's "~0.25" is one number
    over images: report the per-image means' mean and spread, not one image's.
    """
    p, purifier = world.params, world.purifier()
    n = min(p.jacobian_images, len(world.images))
    out = []
    for i in tqdm(range(n), desc="compression rates", unit="image", disable=not progress):
        x0 = world.images[i:i + 1]
        f = fixed_purifier(purifier, p.base_seed, i)
        points = linf_neighbours(x0, p.eps, samples, torch.Generator().manual_seed(i))
        with torch.no_grad():
            out.append(_rates(points - x0, apply(f, points, p.batch_size) - f(x0)).cpu())
    return torch.stack(out)


@torch.no_grad()
def jacobian_robustness(world, x_adv: Tensor) -> tuple[Tensor, Tensor]:
    """(clean correct, robust) of the first ``jacobian_images`` images, each judged by the
    purifier with the fixed randomness its Jacobian was computed with (base seed
    ``base_seed``, batch index = its index, :func:`jacobian_spectra`)."""
    p, purifier = world.params, world.purifier()
    n = min(p.jacobian_images, len(world.images))
    clean, robust = [], []
    for i in range(n):
        f = fixed_purifier(purifier, p.base_seed, i)
        y = world.labels[i:i + 1]
        clean.append((world.classifier(f(world.images[i:i + 1])).argmax(1) == y).cpu())
        robust.append((world.classifier(f(x_adv[i:i + 1])).argmax(1) == y).cpu())
    return torch.cat(clean), torch.cat(robust)


def top_singular_spectra(world, progress: bool = True) -> Tensor:
    """The ``singular_top_k`` largest singular values of J_f at the first ``singular_images``
    of the ``jacobian_images`` test images (:func:`top_singular_values`), stacked as (n, k),
    largest first.

    Each image has the fixed randomness of :func:`jacobian_spectra` (batch index =
    its index), and its random start block the seed of its index, so the values are
    reproducible; they are stored (``compression/top_singular``) and read back on reruns.
    """
    p, stage = world.params, "compression/top_singular"
    key = _key(world, stage, ("singular_top_k", "subspace_iterations", "singular_oversample"))
    purifier, values = world.purifier(), []
    n = min(p.singular_images, p.jacobian_images, len(world.images))
    k = min(p.singular_top_k, int(world.images[0].numel()))
    for i in tqdm(range(n), desc="top singular values", unit="image", disable=not progress):
        top = store.read(p, stage, i, key)
        if top is None:
            top = top_singular_values(fixed_purifier(purifier, p.base_seed, i),
                                      world.images[i:i + 1], k, p.subspace_iterations,
                                      p.singular_oversample, p.jacobian_chunk,
                                      torch.Generator().manual_seed(i), progress)
            store.write(p, stage, i, top, key)
        values.append(top)
    return torch.stack(values)


def adversarial_fixed(world, progress: bool = True) -> Tensor:
    """PGD with the full gradient through the purifier with fixed randomness (sec. 6).

    Batch i is attacked through ``classifier(purifier(x, base_seed, i, grad=True))``,
    the same deterministic system every step (no EOT: there is no randomness to
    average), with :func:`diffrob.attacks.pgd` at the world's eps, steps and step
    size; the random start uses the seed of :mod:`diffrob.attacks`. Batches are
    stored (``compression/pgd-fixed``) and read back on reruns.
    """
    p, stage = world.params, "compression/pgd-fixed"
    k = _key(world, stage, _BATCH_FIELDS + store.ATTACK_FIELDS)
    purifier, out = world.purifier(), []
    for i, rows in tqdm(world.batches(), desc="PGD (fixed randomness)", unit="batch",
                        disable=not progress, leave=False):
        x = store.read(p, stage, i, k)
        if x is None:
            def logits(z: Tensor, i: int = i) -> Tensor:
                return world.classifier(purifier(z, p.base_seed, i, grad=True))
            g = torch.Generator().manual_seed(seed_for(p.attack_seed, i, 0, forward=False))
            x = attacks.pgd(logits, world.images[rows], world.labels[rows], p.eps,
                            p.attack_steps, p.step_size, p.random_start, g, progress=progress)
            store.write(p, stage, i, x, k)
        out.append(x.to(world.device))
    return torch.cat(out)


def adversarial_examples(world, progress: bool = True) -> Tensor:
    """The adversarial examples of Fig. 6, as ``compression_attack`` names them.

    A system attack (``bpda`` .. ``pgd-eot``) is read from the store of
    :func:`diffrob.stages.adversarial` (computed there if missing; the book's
    chapter on distances has made it already); ``fixed-pgd`` is
    :func:`adversarial_fixed`. The default ``pgd-eot`` matches the paper's
    attack lengths (1.16 and 1.23, as PGD-EOT's 1.19 in Table S2).
    """
    attack = world.params.compression_attack
    if attack == "fixed-pgd":
        return adversarial_fixed(world, progress)
    return stages.adversarial(world, attack, progress=progress)


@torch.no_grad()
def world_robust_factors(world, x_adv: Tensor) -> RobustFactors:
    """:func:`robust_factors` of every test image, purified batch by batch with fixed randomness.

    Batch i goes through ``purifier(x, base_seed, i)`` (eq. 9), for the clean and the
    adversarial images alike: the randomness that :func:`adversarial_fixed` attacks,
    and for a stored system attack one of the evaluation runs it never saw.
    """
    p, purifier = world.params, world.purifier()
    clean, adv = [], []
    for i, rows in world.batches():
        clean.append(purifier(world.images[rows], p.base_seed, i))
        adv.append(purifier(x_adv[rows], p.base_seed, i))
    return robust_factors(world.classifier, world.images, x_adv, torch.cat(clean),
                          torch.cat(adv), world.labels, p.critical_max)
