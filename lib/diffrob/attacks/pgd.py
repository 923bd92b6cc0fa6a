"""Linf PGD and uniform noise on [0,1] images (sec. 3.1, sec. 4.2, appendix B, Table S1).

- :func:`pgd`: projected gradient descent of Madry et al. (2018) on any
  differentiable function of [0,1] images, the sign of the gradient of the
  cross-entropy, projected to the eps ball around ``x`` and to [0,1] after every
  step (as foolbox's ``LinfPGD`` and torchattacks' ``PGD``). With ``eot > 1`` the
  gradient is that of the loss averaged over ``eot`` samples of the system's
  randomness (EOT, Athalye et al. 2018), the samples folded into the batch: one
  forward/backward per step. It keeps the last iterate (Table S1) or the best
  (``iterate``), with a constant or cosine-decaying step (``schedule``).
- :func:`uniform`: uniform noise of Linf size eps (sec. 3.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..purifiers import check_images

ITERATES = ("last", "best")
SCHEDULES = ("constant", "cosine")


def uniform(x: Tensor, eps: float, generator: torch.Generator | None = None,
            clip: bool = True) -> Tensor:
    """``x + U(-eps, eps)`` per pixel, clipped to [0,1] (the noise baseline of sec. 3.1);
    ``clip=False`` leaves it unclipped (the paper's convention in Tables S2-S4).

    The noise is drawn on the generator's device (CPU by default) and moved to
    ``x``'s, so a seed gives the same noise on every machine.
    """
    check_images(x, name="x")
    _check_eps(eps)
    device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.empty(x.shape, dtype=x.dtype, device=device)
    noise.uniform_(-eps, eps, generator=generator)
    x = x + noise.to(x.device)
    return x.clamp(0, 1) if clip else x


def pgd(logits_fn: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, eps: float, steps: int,
        step_size: float, random_start: bool = True, generator: torch.Generator | None = None,
        eot: int = 1, progress: bool = False, eot_batch: int | None = None,
        iterate: str = "last", schedule: str = "constant") -> Tensor:
    """Untargeted Linf PGD: ``steps`` signed-gradient ascent steps on the cross-entropy.

    ``logits_fn`` maps [0,1] images (M, C, H, W) to logits (M, classes). Each step
    calls it on ``eot`` copies of the current iterate stacked seed-major (copy j
    is rows ``j*N .. (j+1)*N-1``, the layout of ``Purifier(..., base_seeds=[s_0 ..
    s_{eot-1}])``): once with all of them, or with ``eot_batch`` copies at a time
    (to bound memory), the gradients summed. The loss is the mean cross-entropy
    over all copies, so its gradient is the EOT average (eq. of Athalye et al.
    2018). Step c (from 0): ``x' = x' + a_c * sign(grad)``, then projection to
    ``|x' - x|_inf <= eps`` and to [0,1], with ``a_c = step_size`` (``schedule=
    "constant"``, Table S1) or ``step_size * (1 + cos(pi c / steps)) / 2`` (``"cosine"``,
    a decaying step). ``random_start`` begins at :func:`uniform` noise of size eps
    drawn with ``generator``.

    ``iterate="last"`` returns the last iterate (foolbox's and the paper's protocol);
    ``"best"`` returns, per image, the iterate with the highest EOT-averaged loss among the
    start, every step's iterate and the last one (as APGD keeps its best-loss point), each
    scored by a *fresh* estimate: ``eot`` new samples without gradient, drawn after the last
    gradient (the next seeds of ``logits_fn``, which the evaluation never uses). Selecting on
    the losses that came with the gradients would favour iterates whose few samples happened
    to be high (the winner's curse of a noisy maximum). The run itself is the last iterate's;
    the scores cost ``(steps + 1) x eot`` samples more. Returns the adversarial images,
    detached, with ``x``'s shape.
    """
    check_images(x, name="x")
    _check_eps(eps)
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected an int >= 0, got {steps!r}")
    if not step_size >= 0:
        raise ValueError(f"step_size: expected a number >= 0, got {step_size!r}")
    if not isinstance(eot, int) or eot < 1:
        raise ValueError(f"eot: expected an int >= 1, got {eot!r}")
    if eot_batch is not None and (not isinstance(eot_batch, int) or eot_batch < 0):
        raise ValueError(f"eot_batch: expected an int >= 0 (0 = all eot), got {eot_batch!r}")
    if iterate not in ITERATES:
        raise ValueError(f"iterate: expected one of {list(ITERATES)}, got {iterate!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {list(SCHEDULES)}, got {schedule!r}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y: expected labels of shape ({x.shape[0]},), got {tuple(y.shape)}")
    x, y = x.detach(), y.detach().to(x.device)
    x_adv = uniform(x, eps, generator) if random_start else x.clone()
    per_call = min(eot_batch or eot, eot)
    copies = [min(per_call, eot - c) for c in range(0, eot, per_call)]
    iterates = [x_adv.clone()]

    def eot_loss(x_adv: Tensor, grad: bool) -> tuple[Tensor, Tensor | None]:
        """Per-image EOT-mean cross-entropy (N,) and the gradient of its mean."""
        total, g = torch.zeros(len(x), device=x.device), None
        for m in copies:
            rows = x_adv.repeat(m, 1, 1, 1) if m > 1 else x_adv
            loss = F.cross_entropy(logits_fn(rows), y.repeat(m), reduction="none")
            loss = loss.view(m, len(x)).sum(0) / eot
            total = total + loss.detach()
            if grad:
                part = torch.autograd.grad(loss.sum() / len(x), x_adv)[0]
                g = part if g is None else g + part
        # sign(NaN) = 0: a NaN would silently leave the iterate where it is
        if not (torch.isfinite(total).all() and (g is None or torch.isfinite(g).all())):
            raise FloatingPointError("PGD: the loss or its gradient is NaN or infinite "
                                     "(mixed precision overflow?)")
        return total, g

    for c in tqdm(range(steps), desc="PGD steps", leave=False, disable=not progress):
        x_adv.requires_grad_(True)
        _, grad = eot_loss(x_adv, grad=True)
        a = step_size if schedule == "constant" else step_size * (1 + math.cos(math.pi * c / steps)) / 2
        x_adv = x_adv.detach() + a * grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
        if iterate == "best":
            iterates.append(x_adv)
    if iterate == "last":
        return x_adv.detach()
    best, best_loss = iterates[0].clone(), torch.full((len(x),), -torch.inf, device=x.device)
    with torch.no_grad():
        for candidate in iterates:  # fresh samples for every score
            loss = eot_loss(candidate, grad=False)[0]
            better = loss > best_loss
            best[better], best_loss[better] = candidate[better], loss[better]
    return best


def _check_eps(eps: float) -> None:
    if not (isinstance(eps, (int, float)) and 0 <= eps <= 1):
        raise ValueError(f"eps: expected a Linf radius in [0, 1] pixel units, got {eps!r}")
