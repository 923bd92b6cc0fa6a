"""Distances and similarities between images, and correlations of directions.

All functions take images in [0,1] pixel units, shaped (..., C, H, W), and
return one value per image (the leading dimensions), so a trajectory
(S, N, C, H, W) against its clean images (N, C, H, W) gives an (S, N) table.

- :func:`l2`, :func:`linf`: the distances of sec. 3.1 and Tables S2-S4 (a
  uniform 8/255 perturbation of a 3072-pixel CIFAR-10 image has l2 ~ 1.0).
- :func:`ssim`: the structural similarity of Wang et al. (2004) used in
  Table S5 (Gaussian window of 11 taps, sigma 1.5, per channel, population
  covariances, computed like ``skimage.metrics.structural_similarity`` with
  ``gaussian_weights=True, use_sample_covariance=False``).
- :func:`mean_correlation`: the mean off-diagonal ``np.corrcoef`` of a set of
  flattened direction vectors (sec. 3.2).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


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


def format_mean_std(values: Tensor | np.ndarray, digits: int = 3) -> str:
    """'mean ± std' with ``digits`` decimals, as in Tables S2-S4."""
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"

