"""The packages' EOT samples folded into one purification (sec. 4.2's EOT, Athalye et al. 2018).

autoattack's APGD (``eot_iter``, APGD-T and AutoAttack's ``rand`` version included) and
torchattacks' ``EOTPGD`` call their model once per EOT sample on the same iterate and sum
the samples' gradients before they use any::

    for _ in range(eot):
        grad += torch.autograd.grad(loss(model(x_adv)), [x_adv])[0]

On a CPU one call on ``eot`` copies of a batch costs far less than ``eot`` calls on the
batch (docs/benchmarks.md, "The packages' EOT folded"). :class:`FoldedEOT` stands in for
the model: at the first sample of each chunk of ``per_call`` samples it purifies and
classifies all the chunk's copies in one call, then hands out each sample's logits in turn;
the gradient the package sends back for each sample's logits is kept, and when the chunk's
last one arrives, one backward pass through the chunk returns the chunk's summed gradient
(zeros for its other samples). The package's sum is thus the sum of the same per-sample
gradients, and each sample is purified with the base seed it gets unfolded
(:class:`~diffrob.attacks.system.SystemLogits` numbers copies, not calls).

That holds as long as the package sums consecutive calls' gradients on one iterate before it
reads them. A call on another tensor, or one without gradient, while a chunk still waits for
gradients raises ``RuntimeError``, as does leaving the ``with`` block with one waiting; the
tests compare folded and unfolded runs of every package attack that uses it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _Handout(torch.autograd.Function):
    """Sample ``j``'s logits, precomputed by the fold; its backward hands the gradient of the
    package's loss w.r.t. them to the fold, which returns the gradient w.r.t. ``x``."""

    @staticmethod
    def forward(ctx, x: Tensor, logits: Tensor, fold: "FoldedEOT", j: int) -> Tensor:
        ctx.fold, ctx.j = fold, j
        return logits.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.fold._gradient(ctx.j, grad), None, None, None


class FoldedEOT(nn.Module):
    """``system`` (a :class:`~diffrob.attacks.system.SystemLogits`) as a package's model whose
    ``eot`` calls per gradient run ``per_call`` at a time (module docstring); calls without
    gradient pass straight through.

    Use it as a context manager: on exit it checks that no chunk still waits for gradients.
    """

    def __init__(self, system: nn.Module, eot: int, per_call: int):
        super().__init__()
        if eot < 1 or per_call < 1:
            raise ValueError(f"FoldedEOT: eot and per_call must be >= 1, got {eot}, {per_call}")
        self.system, self.eot, self.per_call = system, eot, min(per_call, eot)
        self.sample = 0          # the next sample's index within the current gradient
        self._x = None           # the iterate of the current gradient
        self._chunk = None       # (rows, logits, first sample, copies) of the chunk in flight
        self._grads: dict[int, Tensor] = {}
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad) or self.eot == 1:
            self._idle(x)
            return self.system(x)
        if self.sample == 0 or x is not self._x:
            self._idle(x)
            self._x = x
        j = self.sample
        if j % self.per_call == 0:
            self._idle(x)
            copies = min(self.per_call, self.eot - j)
            rows = x.detach().repeat(copies, *([1] * (x.ndim - 1))).requires_grad_(True)
            with torch.enable_grad():
                logits = self.system(rows, copies=copies)
            self._chunk, self._grads = (rows, logits, j, copies), {}
        rows, logits, first, _ = self._chunk
        n = len(x)
        self.sample = (j + 1) % self.eot
        return _Handout.apply(x, logits[(j - first) * n:(j - first + 1) * n].detach(), self, j)

    def _gradient(self, j: int, grad: Tensor) -> Tensor:
        rows, logits, first, copies = self._chunk
        self._grads[j] = grad
        if len(self._grads) < copies:
            return torch.zeros_like(self._x)
        out = torch.cat([self._grads[first + k] for k in range(copies)])
        g = torch.autograd.grad(logits, rows, grad_outputs=out.to(logits.dtype))[0]
        self._chunk, self._grads = None, {}
        return g.view(copies, *self._x.shape).sum(0).to(self._x.dtype)

    def _idle(self, x: Tensor) -> None:
        """Raise if a chunk still waits for gradients (or a gradient stopped half-way)."""
        if self._chunk is not None or self.sample % self.per_call:
            raise RuntimeError(
                f"FoldedEOT: the package called its model on a new input (shape "
                f"{tuple(x.shape)}) after {self.sample} of {self.eot} EOT samples of a gradient "
                f"({len(self._grads)} gradients of the chunk in flight returned); it no longer "
                f"sums {self.eot} consecutive gradients of one iterate, so the fold would be "
                f"wrong: run it unfolded (eot_batch = 1)")

    def __enter__(self) -> "FoldedEOT":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self._idle(self._x if self._x is not None else torch.empty(0))
