"""Automatic differentiation settings shared by sec. 6's Jacobians and :mod:`diffrob.plan`.

The Jacobian J of the purifier (sec. 6, eq. 4) is computed exactly with D vector-Jacobian
products per image where D is at most :data:`EXACT_JACOBIAN_MAX_DIM`, and its top singular
values matrix-free with forward-mode Jacobian-vector products (:func:`forward_mode`) above.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from unittest import mock

import torch
import torch.nn.functional as F
from torch.autograd import forward_ad
from torch.nn.attention import SDPBackend, sdpa_kernel

EXACT_JACOBIAN_MAX_DIM = 3072  # CIFAR-10's D: D VJPs per image, affordable on a GPU; not ImageNet's
# Before torch 2.14 (seen on 2.11, Colab's) GroupNorm's forward-mode derivative fails on a
# non-contiguous input ("view size is not compatible with input tensor's size and stride").
GROUP_NORM_NEEDS_CONTIGUOUS = tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 14)


def _contiguous_group_norm(group_norm=F.group_norm):
    def group_norm_of_contiguous(input, *args, **kwargs):
        return group_norm(input.contiguous(), *args, **kwargs)
    return group_norm_of_contiguous


@contextmanager
def forward_mode():
    """Forward-mode AD without autograd's graph; attention on PyTorch's plain ("math") kernel,
    the one with a forward-mode derivative (and, before torch 2.14, GroupNorm on contiguous
    inputs: :data:`GROUP_NORM_NEEDS_CONTIGUOUS`)."""
    patch = (mock.patch.object(F, "group_norm", _contiguous_group_norm())
             if GROUP_NORM_NEEDS_CONTIGUOUS else nullcontext())
    with torch.no_grad(), forward_ad.dual_level(), sdpa_kernel(SDPBackend.MATH), patch:
        yield
