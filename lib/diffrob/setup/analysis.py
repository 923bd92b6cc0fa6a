"""The set-up's small computations (sec. 2, Appendix B), pure."""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
from torch import Tensor, nn


def n_parameters(model: nn.Module) -> int:
    """The number of parameters of ``model`` (Table S1's model sizes)."""
    return sum(p.numel() for p in model.parameters())


def alpha_bar(alphas_cumprod: Tensor, t_star: int) -> float:
    """alpha_bar(t*): the fraction of the signal's variance left after t* forward steps of
    eq. 1 (``alphas_cumprod[k]`` is alpha_bar_{k+1})."""
    return float(alphas_cumprod[t_star - 1])


def correct(predictions: Tensor, labels: Tensor) -> np.ndarray:
    """Per image, whether the prediction is the label (clean accuracy, Tables 1 and 2)."""
    return (predictions == labels).cpu().numpy()


def shown_steps(t_star: int) -> list[int]:
    """The DDPM states Fig. S3 shows: half-way through the forward process of eq. 1, its end
    t*, and half-way through the reverse process of eq. 2."""
    return sorted({t_star // 2, t_star, (3 * t_star) // 2})


def pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair of ``names`` in their order (App. C.2's samplers compared two by
    two: 4 samplers give 6 pairs)."""
    if len(set(names)) != len(names):
        raise ValueError(f"names: expected distinct names, got {list(names)}")
    return list(combinations(names, 2))
