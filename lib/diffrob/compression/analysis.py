"""Sec. 6: the purifier with its randomness fixed, and how it compresses image space.

Everything here looks at a purifier ``f`` with its randomness fixed (eq. 9 with one base
seed and batch index, :func:`fixed_purifier`), which makes ``f`` a deterministic map of
images:

- :func:`pca_spectra`: PCA spectrum of N points of the Linf neighbourhood of a clean image
  before and after ``f`` (Fig. 5b);
- :func:`jacobian` and :func:`jacobian_spectrum`: the exact Jacobian J_f(x0) of eq. 4 and
  its eigenvalue / singular-value spectrum (Fig. 5c); :func:`top_singular_values`: the top
  of that spectrum without forming J, for images too large for the exact Jacobian
  (ImageNet; not in the paper);
- :func:`compression_rate`: ||f(x0 + eta) - f(x0)|| / ||eta|| for random eta (sec. 6);
  :func:`perturbation_response`: that rate at eps and at eq. 4's small eta, over the
  unsaturated pixels, and :func:`linearisation_error`, eq. 4's relative error (J eta by
  :func:`jacobian_products`);
- :func:`saturated_pixels` and :func:`drop_saturated`: the output pixels the purifier's clamp
  to [0,1] holds still, and the spectra without the exact zeros they add;
- :func:`compare_spectra`: the Jacobian spectra of robust and non-robust examples (sec. 6).

The maps ``f`` taken as arguments work on batches (N, C, H, W) -> (N, C, H, W) row by row,
and must be the *same* map for every row: for a diffusion purifier that is
:func:`fixed_purifier` (every row gets the noise of one one-image batch,
``shared_noise=True``). What decides robust from non-robust examples (Fig. 6) is in
:mod:`.analysis_boundary`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd import forward_ad

from .. import verdicts
from ..autodiff import forward_mode
from ..purifiers import Purifier

ImageMap = Callable[[Tensor], Tensor]

# Eq. 4's regime: perturbations of Linf radius eps / 10. For a smooth f the relative Taylor
# remainder grows with ||eta||, so an order of magnitude below the threat radius puts it at a
# tenth of its value at eps, while the output change stays far above float32 rounding.
SMALL_ETA_FRACTION = 0.1


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


def one_image(x0: Tensor) -> Tensor:
    """``x0`` as a batch of one image (1, C, H, W); ``ValueError`` for anything else."""
    if x0.ndim == 3:
        x0 = x0.unsqueeze(0)
    if x0.ndim != 4 or x0.shape[0] != 1:
        raise ValueError(f"x0: expected one image (C, H, W) or (1, C, H, W), got {tuple(x0.shape)}")
    return x0


@torch.no_grad()
def apply(f: ImageMap, x: Tensor, chunk: int = 256) -> Tensor:
    """``f`` on ``x`` in chunks of ``chunk`` rows, without gradients."""
    if chunk < 1:
        raise ValueError(f"chunk: expected >= 1, got {chunk}")
    return torch.cat([f(part) for part in x.split(chunk)])


def linf_neighbours(x0: Tensor, eps: float, n: int,
                    generator: torch.Generator | None = None) -> Tensor:
    """``n`` uniform samples of the Linf ball of radius ``eps`` around one image, in [0,1]."""
    x0 = one_image(x0)
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


def saturated_pixels(y: Tensor) -> Tensor:
    """Per row of purified images (N, ...): the flattened pixels (N, D) that the purifier's final
    clamp to [0,1] holds at 0 or 1. Such a pixel does not move under a small perturbation: its
    row of J_f is zero, and it adds an exact zero to the Jacobian's spectrum (sec. 6)."""
    flat = y.flatten(1)
    return (flat == 0) | (flat == 1)


def drop_saturated(values: Tensor, saturated: Tensor) -> Tensor:
    """Spectra (n, D), largest first, with each image's ``saturated[i]`` smallest values NaN.

    With S the saturated output pixels, J = P J_g (P zeroes the rows of S) is block-triangular
    in the order (unsaturated, saturated): its eigenvalues are those of the unsaturated block
    J[U, U] and |S| exact zeros, its singular values those of J[U, :] and |S| zeros. Dropping
    the |S| smallest values leaves the unsaturated spectrum (values of J[U, U] below float
    rounding are indistinguishable from the zeros anyway).
    """
    v = values.reshape(len(saturated), -1).double().clone()
    d = v.shape[1]
    counts = saturated.reshape(-1).long().cpu()
    if (counts < 0).any() or (counts >= d).any():
        raise ValueError(f"saturated: expected counts in 0..{d - 1}, got {counts.tolist()}")
    ranks = torch.arange(d).view(1, -1)
    v[ranks >= d - counts.view(-1, 1)] = math.nan
    return v


def share(values: Tensor, level: float, above: bool = False) -> Tensor:
    """Per image of spectra (n, D): the fraction of its values (NaN: dropped, not counted)
    below ``level`` (or above it, ``above=True``)."""
    v = values.reshape(values.shape[0], -1).double()
    valid = ~torch.isnan(v)
    hit = (v > level) if above else (v < level)
    return (hit & valid).sum(1).double() / valid.sum(1).double()


@dataclass(frozen=True)
class Neighbourhood:
    """PCA spectra of a neighbourhood before and after f, and the compression rate of each point."""

    before: Tensor   # component variances of the inputs, largest first
    after: Tensor    # component variances of their images under f
    after_unsaturated: Tensor  # the same over the pixels unsaturated at f(x0)
    saturated: int   # output pixels the clamp holds at 0 or 1 at f(x0)
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

    def unsaturated(self) -> Tensor:
        """The purified spectrum over the unsaturated pixels, normalised as :meth:`normalised`."""
        return self.after_unsaturated / self.input_variance


def pca_spectra(f: ImageMap, x0: Tensor, eps: float, n: int, k: int | None = None,
                chunk: int = 256, generator: torch.Generator | None = None) -> Neighbourhood:
    """Fig. 5b: PCA spectra of ``n`` Linf-neighbours of ``x0`` before and after ``f``.

    Returns the top-``k`` component variances of the inputs and of their images
    under ``f``, and the compression rate of every sample (:func:`compression_rate`,
    on the same points). For a linear f(x) = A x and an unclipped ball, the inputs'
    variances are all eps^2 / 3 and the outputs' are eps^2 / 3 times the squared
    singular values of A; :meth:`Neighbourhood.normalised` divides by the inputs'
    per-direction variance (trace / D of their sample covariance, eps^2 / 3 where
    no pixel is clipped), giving the squared compression along each direction. The purified
    spectrum is also taken over the pixels unsaturated at f(x0) (:func:`saturated_pixels`),
    whose zero variance would otherwise fill the spectrum's tail.
    """
    x0 = one_image(x0)
    points = linf_neighbours(x0, eps, n, generator)
    images = apply(f, points, chunk)
    with torch.no_grad():
        y0 = f(x0)
        rates = rates_of(points - x0, images - y0)
    held = saturated_pixels(y0)[0]
    variance = points.flatten(1).double().var(0).mean().item()
    return Neighbourhood(pca_spectrum(points, k), pca_spectrum(images, k),
                         pca_spectrum(images.flatten(1)[:, ~held], k), int(held.sum()), rates,
                         variance)


def rates_of(eta: Tensor, moved: Tensor, keep: Tensor | None = None) -> Tensor:
    """||moved|| / ||eta|| per row (float64): the compression rate of each perturbation;
    both norms over the flattened pixels ``keep`` (a boolean (D,) mask) where given."""
    eta, moved = eta.flatten(1).double(), moved.flatten(1).double()
    if keep is not None:
        eta, moved = eta[:, keep.flatten()], moved[:, keep.flatten()]
    if (eta.norm(dim=1) == 0).any():
        raise ValueError("eta: a perturbation is zero (after clipping to [0,1])")
    return moved.norm(dim=1) / eta.norm(dim=1)


def compression_rate(f: ImageMap, x0: Tensor, eta: Tensor, chunk: int = 256) -> Tensor:
    """||f(x0 + eta) - f(x0)|| / ||eta|| for each row of ``eta`` (sec. 6: ~0.25 for random eta).

    ``x0`` is one image; ``x0 + eta`` is clipped to [0,1] and eta is taken as
    the perturbation that remains after clipping.
    """
    x0 = one_image(x0)
    x = (x0 + eta).clamp(0, 1)
    with torch.no_grad():
        return rates_of(x - x0, apply(f, x, chunk) - f(x0))


def linearisation_error(f: ImageMap, x0: Tensor, eta: Tensor, chunk: int = 64,
                        moved: Tensor | None = None, linear: Tensor | None = None) -> Tensor:
    """Eq. 4's relative error per row of ``eta``: ||f(x0 + eta) - f(x0) - J eta|| /
    ||f(x0 + eta) - f(x0)|| (float64), with J eta exact (:func:`jacobian_products`).

    ``x0 + eta`` is clipped to [0,1] and eta taken as what remains (as
    :func:`compression_rate`). 0 for an affine f; a row that f does not move at all
    scores 0 if J eta is 0 too, else a huge error. ``moved``: f(x0 + eta) - f(x0), and
    ``linear``: J eta (flattened), where the caller has them already (for an ``eta`` inside
    [0,1]), so f runs only where they are missing.
    """
    x0 = one_image(x0)
    x = (x0 + eta).clamp(0, 1)
    if moved is None:
        with torch.no_grad():
            moved = apply(f, x, chunk) - f(x0)
    moved = moved.flatten(1).double()
    if linear is None:
        linear = jacobian_products(f, x0, (x - x0).flatten(1), chunk)
    linear = linear.double()
    return (moved - linear).norm(dim=1) / moved.norm(dim=1).clamp_min(1e-300)


def jacobian_products(f: ImageMap, x0: Tensor, tangents: Tensor, chunk: int = 64) -> Tensor:
    """J_f(x0) v for the rows v of ``tangents`` (M, D_in) -> (M, D_out), exact (eq. 4's J eta).

    By whichever takes fewer passes through f: M forward-mode JVPs (:func:`jvp_rows`), or,
    where the output has no more pixels than there are tangents (digits: 64 pixels, 128
    tangents per image in :func:`perturbation_response`), the exact Jacobian from its D_out
    VJPs (:func:`jacobian`; a VJP costs less than a JVP here) and one product.
    """
    x0 = one_image(x0).detach()
    with torch.no_grad():
        d_out = f(x0).numel()
    if d_out <= len(tangents):
        jac = jacobian(f, x0, chunk)
        return tangents.to(jac) @ jac.T
    return jvp_rows(f, x0, tangents, chunk)


@dataclass(frozen=True)
class Response:
    """How f moves random perturbations of images (rows: images, columns: samples), sec. 6."""

    rate: Tensor              # ||f(x) - f(x0)|| / ||x - x0||, every pixel, Linf radius eps
    rate_unsaturated: Tensor  # the same over the pixels unsaturated at f(x0)
    rate_small: Tensor        # over the unsaturated pixels, radius eps * SMALL_ETA_FRACTION
    linear_error: Tensor      # eq. 4's relative error at those small perturbations
    linear_error_eps: Tensor  # and at radius eps
    saturated: Tensor         # output pixels the clamp holds at 0 or 1 at f(x0), per image


def perturbation_response(f: ImageMap, x0: Tensor, eps: float, n: int, chunk: int = 256,
                          generator: torch.Generator | None = None) -> Response:
    """Sec. 6's compression rate and eq. 4's error at one image (a :class:`Response` of one row).

    ``n`` uniform points of the Linf ball of radius ``eps`` (:func:`linf_neighbours`), then
    ``n`` of radius ``eps`` * :data:`SMALL_ETA_FRACTION` from the same generator: their rates
    (:func:`rates_of`) over every pixel and over the pixels unsaturated at f(x0)
    (:func:`saturated_pixels`), and :func:`linearisation_error` at both radii.
    """
    x0 = one_image(x0)
    far = linf_neighbours(x0, eps, n, generator)
    near = linf_neighbours(x0, eps * SMALL_ETA_FRACTION, n, generator)
    with torch.no_grad():
        y0 = f(x0)
        y_far, y_near = apply(f, far, chunk), apply(f, near, chunk)
    free = ~saturated_pixels(y0)[0]
    linear_near, linear_far = jacobian_products(
        f, x0, torch.cat([near, far]).sub(x0).flatten(1), chunk).split(n)
    rows = [rates_of(far - x0, y_far - y0), rates_of(far - x0, y_far - y0, free),
            rates_of(near - x0, y_near - y0, free),
            linearisation_error(f, x0, near - x0, chunk, y_near - y0, linear_near),
            linearisation_error(f, x0, far - x0, chunk, y_far - y0, linear_far)]
    return Response(*(r.cpu().view(1, -1) for r in rows),
                    saturated=torch.tensor([int((~free).sum())]))


def stack(responses: list[Response]) -> Response:
    """Per-image :class:`Response` rows stacked into one (n images)."""
    if not responses:
        raise ValueError("responses: expected at least one image's response")
    return Response(*(torch.cat([getattr(r, name) for r in responses])
                      for name in Response.__dataclass_fields__))


def vjp_rows(f: ImageMap, x0: Tensor, cotangents: Tensor, chunk: int = 64) -> Tensor:
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
    x0 = one_image(x0).detach()
    rows = []
    for u in cotangents.split(chunk):
        x = x0.expand(len(u), *x0.shape[1:]).clone().requires_grad_(True)
        with torch.enable_grad():
            y = f(x).flatten(1)
            (g,) = torch.autograd.grad(y, x, u.to(y))
        rows.append(g.flatten(1).detach())
    return torch.cat(rows)


def jvp_rows(f: ImageMap, x0: Tensor, tangents: Tensor, chunk: int = 64) -> Tensor:
    """Jacobian-vector products J_f(x0) v for the rows v of ``tangents`` (M, D_in) -> (M, D_out).

    Forward-mode automatic differentiation (:func:`diffrob.autodiff.forward_mode`),
    ``chunk`` tangents per batch of copies of ``x0`` as in :func:`vjp_rows`: exact like
    the VJPs, and it saves no activations, so memory is that of a forward pass.
    """
    if chunk < 1:
        raise ValueError(f"chunk: expected >= 1, got {chunk}")
    x0 = one_image(x0).detach()
    rows = []
    with forward_mode():
        for v in tangents.split(chunk):
            x = forward_ad.make_dual(x0.expand(len(v), *x0.shape[1:]).clone(),
                                     v.to(x0).view(len(v), *x0.shape[1:]))
            rows.append(forward_ad.unpack_dual(f(x)).tangent.flatten(1))
    return torch.cat(rows)


def jacobian(f: ImageMap, x0: Tensor, chunk: int = 64) -> Tensor:
    """The exact Jacobian J_f(x0) (eq. 4) as a (D_out, D_in) matrix: the VJPs of the
    unit vectors e_r (:func:`vjp_rows`). The CIFAR-10 purifier's 3072 x 3072 Jacobian is
    3072 / ``chunk`` attack gradients of batch ``chunk``."""
    x0 = one_image(x0).detach()
    with torch.no_grad():
        d_out = f(x0).numel()
    return vjp_rows(f, x0, torch.eye(d_out, device=x0.device, dtype=x0.dtype), chunk)


def top_singular_values(f: ImageMap, x0: Tensor, k: int, iterations: int = 6,
                        oversample: int = 8, chunk: int = 64,
                        generator: torch.Generator | None = None) -> Tensor:
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
    x0 = one_image(x0).detach()
    d_in = x0.numel()
    if not 1 <= k <= d_in or iterations < 0 or oversample < 0:
        raise ValueError(f"top_singular_values: expected 1 <= k <= {d_in}, iterations >= 0 and "
                         f"oversample >= 0, got k={k}, iterations={iterations}, "
                         f"oversample={oversample}")
    omega = torch.randn(min(k + oversample, d_in), d_in, generator=generator, dtype=torch.float64)

    def through(products, rows: Tensor) -> Tensor:
        return products(f, x0, rows.to(x0), chunk).double().cpu()

    def orthonormal_rows(a: Tensor) -> Tensor:
        return torch.linalg.qr(a.T).Q.T

    q = orthonormal_rows(through(jvp_rows, omega))                  # range of J
    for _ in range(iterations):
        w = orthonormal_rows(through(vjp_rows, q))                  # range of J^T
        q = orthonormal_rows(through(jvp_rows, w))
    return torch.linalg.svdvals(through(vjp_rows, q))[:k]


def jacobian_rowwise(f: ImageMap, x0: Tensor) -> Tensor:
    """The reference Jacobian: one forward and one ``torch.autograd.grad`` per output row."""
    x = one_image(x0).detach().clone().requires_grad_(True)
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
    top = v.nan_to_num(-math.inf).max(1).values
    return {"top_mean": top.mean().item(),
            "top_std": top.std().item() if len(top) > 1 else 0.0,
            "below_low": (v < low).sum(1).double().mean().item(),
            "above_high": (v > high).sum(1).double().mean().item(),
            "dim": v.shape[1]}


def compare_spectra(values: Tensor, robust: Tensor, low: float = 0.25,
                    high: float = 1.0) -> dict[str, dict[str, float] | verdicts.Estimate]:
    """Sec. 6: do the Jacobian spectra of robust and non-robust examples differ?

    ``values`` (n, D) are per-image spectra (|eigenvalues| or singular values; NaN for
    dropped values, :func:`drop_saturated`), ``robust`` (n,) booleans. Returns
    :func:`spectrum_summary` of each group and, for the largest value and the share below
    ``low`` (:func:`share`), the AUC with which it tells robust from non-robust with its
    bootstrap interval (:func:`diffrob.verdicts.auc`): 0.5 means no difference (the paper
    finds none).
    """
    robust = robust.bool().cpu()
    v = values.reshape(len(robust), -1).double().cpu()
    if not 0 < int(robust.sum()) < len(robust):
        raise ValueError(f"robust: expected both robust and non-robust examples, got "
                         f"{int(robust.sum())} of {len(robust)} robust")
    return {"robust": spectrum_summary(v[robust], low, high),
            "non-robust": spectrum_summary(v[~robust], low, high),
            "auc largest": verdicts.auc(v.nan_to_num(-math.inf).max(1).values, robust),
            f"auc below {low:g}": verdicts.auc(share(v, low), robust)}
