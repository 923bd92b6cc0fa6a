"""Distances, similarities and correlations of images (sec. 3.1-3.2), pure.

All functions take images in [0,1] pixel units, shaped (..., C, H, W), and return one
value per image (the leading dimensions), so a trajectory (S, N, C, H, W) against its
clean images (N, C, H, W) gives an (S, N) table.

- :func:`l2`, :func:`linf`: the distances of sec. 3.1 and Tables S2-S4 (a uniform 8/255
  perturbation of a 3072-pixel CIFAR-10 image has l2 ~ 1.0); :class:`Curves` holds them
  along a purification (Fig. 1c/d, S1) and :func:`init_max_end` the tables' three columns;
  :func:`floor_ratios` sets the purifier's own end distance against each input's.
- :func:`ssim`: the structural similarity of Wang et al. (2004) used in Table S5 (Gaussian
  window of 11 taps, sigma 1.5, per channel, population covariances, computed like
  ``skimage.metrics.structural_similarity`` with ``gaussian_weights=True,
  use_sample_covariance=False``); :func:`before_after` the table's rows.
- :func:`mean_correlation`: the mean off-diagonal ``np.corrcoef`` of a set of flattened
  direction vectors, and :func:`randomness_statistics` the measures of sec. 3.2 (Fig. 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor

# The ways of varying the purification in sec. 3.2 (see :class:`Randomness`).
CONDITIONS = ("fixed seed", "fixed input", "both vary")


def _check_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ValueError(f"expected two torch.Tensors, got {type(x).__name__} and "
                         f"{type(y).__name__}")
    if x.ndim < 3 or y.ndim < 3 or x.shape[-3:] != y.shape[-3:]:
        raise ValueError(f"expected images shaped (..., C, H, W) with equal C, H, W, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    try:
        torch.broadcast_shapes(x.shape, y.shape)
    except RuntimeError as err:
        raise ValueError(f"image batches {tuple(x.shape)} and {tuple(y.shape)} do not "
                         f"broadcast") from err
    return x, y


def l2(x: Tensor, y: Tensor) -> Tensor:
    """Per-image Euclidean distance ||x - y||_2 over all C*H*W pixels ([0,1] units)."""
    x, y = _check_pair(x, y)
    return (x - y).flatten(-3).norm(dim=-1)


def linf(x: Tensor, y: Tensor) -> Tensor:
    """Per-image largest absolute pixel difference ||x - y||_inf ([0,1] units)."""
    x, y = _check_pair(x, y)
    return (x - y).flatten(-3).abs().amax(dim=-1)


def ssim_window(image_size: int, win_size: int = 11) -> int:
    """The SSIM window used for images of side ``image_size``.

    Wang et al.'s 11 x 11 window where it fits, else the largest odd size that
    does (7 for the 8x8 digits), as ``skimage`` requires ``win_size <= side``.
    """
    if image_size < 1:
        raise ValueError(f"image_size: expected >= 1, got {image_size}")
    return min(win_size, image_size if image_size % 2 else image_size - 1)


def _gaussian_taps(sigma: float, truncate: float, device: torch.device) -> Tensor:
    """``scipy.ndimage.gaussian_filter``'s 1-D kernel: radius int(truncate sigma + 0.5)."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    return (w / w.sum()).to(device)


def _symmetric_index(n: int, pad: int, device: torch.device) -> Tensor:
    """Indices of a length-``n`` axis padded by ``pad`` in scipy's 'reflect' mode (d c b a | a b c d)."""
    i = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _blur(x: Tensor, taps: Tensor) -> Tensor:
    """Separable Gaussian filter of (B, H, W) maps, 'reflect' boundary, same size out."""
    r = (len(taps) - 1) // 2
    _, h, w = x.shape
    x = x[:, _symmetric_index(h, r, x.device)][:, :, _symmetric_index(w, r, x.device)]
    x = F.conv2d(x.unsqueeze(1), taps.view(1, 1, -1, 1))
    return F.conv2d(x, taps.view(1, 1, 1, -1)).squeeze(1)


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0, win_size: int | None = None,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Mean structural similarity of Wang et al. (2004) per image (Table S5).

    Each channel is filtered with a Gaussian (sigma 1.5, 11 taps, scipy's
    'reflect' boundary); the SSIM map is averaged over the pixels at least
    ``(win_size - 1) // 2`` from the border and over channels. ``win_size``
    defaults to :func:`ssim_window` of the image. SSIM(x, x) = 1; it is
    symmetric in x and y and at most 1. Returns float64.
    """
    x, y = _check_pair(x, y)
    if data_range <= 0:
        raise ValueError(f"data_range: expected > 0, got {data_range}")
    if sigma <= 0:
        raise ValueError(f"sigma: expected > 0, got {sigma}")
    h, w = x.shape[-2:]
    win = ssim_window(min(h, w)) if win_size is None else win_size
    if win % 2 == 0 or not 1 <= win <= min(h, w):
        raise ValueError(f"win_size: expected an odd size <= the image side {min(h, w)}, "
                         f"got {win}")
    x, y = torch.broadcast_tensors(x, y)
    lead = x.shape[:-3]
    # float64 throughout: E[x^2] - E[x]^2 cancels badly in float32 (as in skimage).
    x, y = x.reshape(-1, h, w).double(), y.reshape(-1, h, w).double()
    taps = _gaussian_taps(sigma, 3.5, x.device)
    mx, my = _blur(x, taps), _blur(y, taps)
    vx = _blur(x * x, taps) - mx * mx
    vy = _blur(y * y, taps) - my * my
    cxy = _blur(x * y, taps) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    p = (win - 1) // 2
    smap = smap[:, p:h - p, p:w - p]
    per_channel = smap.flatten(1).mean(1)
    return per_channel.view(*lead, -1).mean(-1)


def mean_correlation(vectors: Tensor | np.ndarray) -> float:
    """Mean off-diagonal entry of ``np.corrcoef`` of n flattened vectors (sec. 3.2).

    ``vectors`` is (n, ...) with n >= 2, e.g. the n purified directions
    f(x) - x0 of one clean image x0.
    """
    v = vectors.detach().cpu().double().numpy() if isinstance(vectors, Tensor) else \
        np.asarray(vectors, dtype=np.float64)
    if v.ndim < 2 or v.shape[0] < 2:
        raise ValueError(f"vectors: expected (n, ...) with n >= 2, got shape {v.shape}")
    c = np.corrcoef(v.reshape(v.shape[0], -1))
    n = c.shape[0]
    return float((c.sum() - np.trace(c)) / (n * (n - 1)))


def mean_std(values: Tensor | np.ndarray) -> tuple[float, float]:
    """Mean and (population) standard deviation, as the paper's 'mean +- std' entries."""
    v = values.detach().cpu().double().numpy() if isinstance(values, Tensor) else \
        np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"values: expected a non-empty finite array, got {v.size} values")
    return float(v.mean()), float(v.std())


# --- sec. 3.1: distances along the purification --------------------------------------

@dataclass
class Curves:
    """Distances to the clean images along the purification: (S, N) each.

    ``states`` keeps the first few images' trajectories (S, k, C, H, W) for the
    scrubber widget; state 0 is the input, state ``t_star`` the end of the
    forward process (``ddpm``/``ddim``), the last state the purified image.
    """

    method: str
    t_star: int
    l2: Tensor
    linf: Tensor
    states: Tensor

    def mean_l2(self, state: int) -> float:
        """The mean l2 distance over the images at ``state`` (0: init, -1: end)."""
        return self.l2[state].double().mean().item()


def init_max_end(d: Tensor, t_star: int) -> dict[str, tuple[float, float]]:
    """Mean and std over images at t = 0, t = t* and t = 2 t* (Tables S2-S4's columns)."""
    if d.ndim != 2 or d.shape[0] != 2 * t_star + 1:
        raise ValueError(f"distances: expected (2 t* + 1 = {2 * t_star + 1}, N), got "
                         f"{tuple(d.shape)}")
    return {"init": mean_std(d[0]), "max": mean_std(d[t_star]), "end": mean_std(d[-1])}


def floor_ratios(l2_init: dict[str, float], l2_end: dict[str, float], floor_name: str,
                 names: list[str]) -> dict[str, dict[str, float]]:
    """Per input ``names``: its init l2, the purifier's floor (the end l2 of ``floor_name``,
    the smallest uniform noise) over it, and its own end over init (sec. 3.1, Table S2)."""
    floor = l2_end[floor_name]
    return {n: {"init l2": l2_init[n], "floor / init": floor / l2_init[n],
                "end / init": l2_end[n] / l2_init[n]} for n in names}


def before_after(clean: Tensor, x: Tensor, purified: dict[str, Tensor]
                 ) -> dict[str, dict[str, tuple[float, float]]]:
    """Table S5: mean l2, linf and SSIM to the ``clean`` images of ``x`` and of each method's
    purified ``x`` (``purified``: method -> f(x)).

    Returns ``{"before": {...}, method: {...}}`` with (mean, std) per metric.
    """
    def measure(y: Tensor) -> dict[str, tuple[float, float]]:
        return {"l2": mean_std(l2(y, clean)), "linf": mean_std(linf(y, clean)),
                "ssim": mean_std(ssim(y, clean))}

    return {"before": measure(x), **{m: measure(y) for m, y in purified.items()}}


# --- sec. 3.2: randomness ------------------------------------------------------------

@dataclass
class Randomness:
    """Sec. 3.2 for ``n`` clean images x0 and K draws per condition.

    Directions are measured from the clean image: f(x) - x0 (sec. 6 calls
    f(x0) - x0 "the shift of the entire image neighborhood as analyzed in
    Sec. 3.2"; measured from f_s(x0) instead, the fixed-seed directions would be
    the compressed perturbations J eta, nearly uncorrelated, not 0.9954):

    - ``fixed seed``: f_s(x0 + eta_k), K inputs of the eps ball, one base seed s;
    - ``fixed input``: f_{s_k}(x0), the clean image under K base seeds 0..K-1;
    - ``both vary``: f_{s_k}(x0 + eta_k);
    - ``perturbation``: the inputs x0 + eta_k themselves (no purification).

    ``correlation[c]`` (n,) is the mean off-diagonal ``np.corrcoef`` of the K
    directions of each image; ``centroid[c]`` (K, n) the l2 distance of each
    output to the mean of its image's K outputs (Fig. 2f); ``example[c]`` the
    K x K correlation matrix of the first image (Fig. 2a/b).
    """

    correlation: dict[str, np.ndarray]
    centroid: dict[str, np.ndarray]
    example: dict[str, np.ndarray]


def randomness_statistics(outputs: dict[str, Tensor], clean: Tensor) -> Randomness:
    """The measures of :class:`Randomness` from each condition's outputs (K, n, C, H, W) of the
    ``clean`` images (n, C, H, W) (sec. 3.2, Fig. 2a/b/f)."""
    out = Randomness({}, {}, {})
    for name, y in outputs.items():
        directions = (y - clean).flatten(2).double()              # (K, n, D)
        out.correlation[name] = np.array([mean_correlation(directions[:, j])
                                          for j in range(len(clean))])
        out.centroid[name] = l2(y, y.mean(0)).numpy()
        out.example[name] = np.corrcoef(directions[:, 0].numpy())
    return out


# --- a Gaussian toy model of sec. 3.1 built on eq. 3 ---------------------------------

def toy_noise_var(alpha_bar: float, scale: float = 2.0) -> float:
    """Eq. 1's forward process at t* written as eq. 3's additive Gaussian noise.

    x_t / sqrt(alpha_bar) = x + eta with eta ~ N(0, (1 - alpha_bar) / alpha_bar I) in the
    model's units; the model sees ``scale`` x - 1 (Appendix B: [0,1] -> [-1,1]), so in pixel
    units sigma^2 = (1 - alpha_bar) / (alpha_bar scale^2).
    """
    if not 0 < alpha_bar < 1 or scale <= 0:
        raise ValueError(f"alpha_bar: expected in (0, 1) and scale > 0, got {alpha_bar}, {scale}")
    return (1 - alpha_bar) / (alpha_bar * scale**2)


def _toy_check(data_var: np.ndarray, noise_var: float) -> np.ndarray:
    v = np.asarray(data_var, dtype=np.float64)
    if v.ndim != 1 or not len(v) or (v < 0).any() or not np.isfinite(v).all():
        raise ValueError(f"data_var: expected a non-empty 1-D array of variances >= 0, got "
                         f"shape {v.shape}")
    if not noise_var > 0:
        raise ValueError(f"noise_var: expected > 0, got {noise_var}")
    return v


def toy_end_distance2(data_var: np.ndarray, noise_var: float,
                      delta_l2: float | np.ndarray) -> np.ndarray:
    """The toy model's mean squared distance of the purified image from the clean one.

    Data x0 ~ N(mu, diag(``data_var``)) in its eigenbasis (d = len(data_var)), input
    x = x0 + delta with delta isotropic of length ``delta_l2`` and independent of x0, eq. 3's
    noise x_t = x + eta, eta ~ N(0, ``noise_var`` I) (:func:`toy_noise_var`), and the exact
    reverse process: a draw of the posterior p(x0' | x_t). With lambda_i = v_i / (v_i + s^2)
    (s^2 = noise_var), E||x0' - x0||^2 = sum_i [2 v_i s^2 / (v_i + s^2) + lambda_i^2 ||delta||^2
    / d]: the first sum is the floor (delta = 0) that no perturbation goes below, the second
    shrinks delta by lambda_i < 1. Small delta end near the floor (pushed away, sec. 3.1),
    large ones are shrunk.
    """
    v = _toy_check(data_var, noise_var)
    lam = v / (v + noise_var)
    floor = (2 * v * noise_var / (v + noise_var)).sum()
    return floor + np.asarray(delta_l2, dtype=np.float64) ** 2 * (lam**2).mean()


def toy_monte_carlo(data_var: np.ndarray, noise_var: float, delta_l2: float, n: int,
                    generator: torch.Generator, chunk: int = 256) -> Tensor:
    """The toy model of :func:`toy_end_distance2` sampled: ``n`` l2 distances ||x0' - x0||.

    Per sample, in the eigenbasis (mu = 0; l2 is rotation invariant): x0 = sqrt(v) z0,
    delta = ``delta_l2`` g / ||g|| (g Gaussian: isotropic), x_t = x0 + delta + s eps, and
    the posterior draw x0' = lambda x_t + sqrt(v (1 - lambda)) z; draws in that order from
    ``generator``, ``chunk`` samples at a time. Returns (n,) float64.
    """
    v = torch.as_tensor(_toy_check(data_var, noise_var))
    if n < 1 or delta_l2 < 0:
        raise ValueError(f"n and delta_l2: expected n >= 1 and delta_l2 >= 0, got {n}, "
                         f"{delta_l2}")
    lam = v / (v + noise_var)
    out = []
    for start in range(0, n, chunk):
        shape = (min(chunk, n - start), len(v))
        x0 = v.sqrt() * torch.randn(shape, generator=generator, dtype=torch.float64)
        g = torch.randn(shape, generator=generator, dtype=torch.float64)
        delta = delta_l2 * g / g.norm(dim=1, keepdim=True)
        xt = x0 + delta + noise_var**0.5 * torch.randn(shape, generator=generator,
                                                        dtype=torch.float64)
        z = torch.randn(shape, generator=generator, dtype=torch.float64)
        out.append((lam * xt + (v * (1 - lam)).sqrt() * z - x0).norm(dim=1))
    return torch.cat(out)


def data_variances(images: Tensor) -> np.ndarray:
    """The toy model's ``data_var`` (pixel units), d of them: the eigenvalues of the images'
    pixel covariance (squared singular values of the centred (N, d) data over N - 1) where
    N - 1 >= d; with fewer images the covariance is singular (it would give most directions
    variance 0, which the toy then removes entirely), so the per-pixel variances are used."""
    x = images.flatten(1).double().cpu()
    if len(x) < 2:
        raise ValueError(f"images: expected at least 2 images for a covariance, got {len(x)}")
    if len(x) - 1 < x.shape[1]:
        return x.var(0).numpy()
    s = torch.linalg.svdvals(x - x.mean(0))
    return (s**2 / (len(x) - 1)).numpy()


def fuzzy_grade(margin: np.ndarray, sigma: float) -> np.ndarray:
    """Fig. 3a under eq. 3: P(g(x + eta) != y0) for a linear classifier g, at signed distance
    ``margin`` of x past the boundary (negative: on the clean side), eta ~ N(0, sigma^2 I):
    Phi(margin / sigma). A deterministic g gives a step at 0; the noise makes it a ramp."""
    if not sigma > 0:
        raise ValueError(f"sigma: expected > 0, got {sigma}")
    return stats.norm.cdf(np.asarray(margin, dtype=np.float64) / sigma)
