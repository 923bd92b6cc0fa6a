"""Automatic differentiation settings shared by sec. 6's Jacobians and :mod:`diffrob.plan`.

The Jacobian J of the purifier (sec. 6, eq. 4) is computed exactly with D vector-Jacobian
products per image where D is at most :data:`EXACT_JACOBIAN_MAX_DIM`, and its top singular
values matrix-free with forward-mode Jacobian-vector products (:func:`forward_mode`) above.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.autograd import forward_ad
from torch.nn.attention import SDPBackend, sdpa_kernel

EXACT_JACOBIAN_MAX_DIM = 3072  # CIFAR-10's D: D VJPs per image, affordable on a GPU; not ImageNet's


@contextmanager
def forward_mode():
    """Forward-mode AD without autograd's graph; attention on PyTorch's plain ("math") kernel,
    the one with a forward-mode derivative."""
    with torch.no_grad(), forward_ad.dual_level(), sdpa_kernel(SDPBackend.MATH):
        yield
