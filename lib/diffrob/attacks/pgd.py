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
LOSSES = ("ce", "vote")
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
        iterate: str = "last", schedule: str = "constant", loss: str = "ce", restarts: int = 1,
        stop: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Untargeted Linf PGD: ``steps`` signed-gradient ascent steps on the cross-entropy.

    ``logits_fn`` maps [0,1] images (M, C, H, W) to logits (M, classes). Each step
    calls it on ``eot`` copies of the current iterate stacked seed-major (copy j
    is rows ``j*N .. (j+1)*N-1``, the layout of ``Purifier(..., base_seeds=[s_0 ..
    s_{eot-1}])``): once with all of them, or with ``eot_batch`` copies at a time
    (to bound memory), the gradients summed. The loss is the mean cross-entropy
    over all copies, so its gradient is the EOT average (eq. of Athalye et al.
    2018); ``loss="vote"`` is instead ``-log`` of the mean over the copies of the label's
    softmax, the soft version of the majority vote of ``eot`` = k runs (Table 1's k
    columns), computed in log space across ``eot_batch`` calls. Step c (from 0):
    ``x' = x' + a_c * sign(grad)``, then projection to
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
    the scores cost ``(steps + 1) x eot`` samples more.

    ``restarts`` runs it that many times, each from the next random start of ``generator``
    with the next seeds of ``logits_fn``; per image the run whose result has the highest
    fresh loss wins (the best iterate's own fresh score, or for the last iterate ``eot`` new
    samples drawn right after each run). One restart is the run alone.

    ``stop`` (the N-evaluation-aware attack, DiffHammer) maps an iterate to a per-image
    bool, "misclassified by one of its evaluations": it is asked at the start and after
    every step, and an image it flags keeps that first flagged iterate to the end (and wins
    over later restarts). Returns the adversarial images, detached, with ``x``'s shape.
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
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {list(LOSSES)}, got {loss!r}")
    if not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts: expected an int >= 1, got {restarts!r}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y: expected labels of shape ({x.shape[0]},), got {tuple(y.shape)}")
    x, y = x.detach(), y.detach().to(x.device)
    per_call = min(eot_batch or eot, eot)
    copies = [min(per_call, eot - c) for c in range(0, eot, per_call)]

    def eot_loss(x_adv: Tensor, grad: bool) -> tuple[Tensor, Tensor | None]:
        """Per-image EOT loss (N,) and the gradient of its mean."""
        parts = []
        for m in copies:
            rows = x_adv.repeat(m, 1, 1, 1) if m > 1 else x_adv
            logits = logits_fn(rows)
            if loss == "ce":
                term = F.cross_entropy(logits, y.repeat(m), reduction="none")
                term = term.view(m, len(x)).sum(0) / eot
            else:  # log of the sum over these copies of the label's softmax
                right = logits.log_softmax(1).gather(1, y.repeat(m)[:, None])
                term = right.view(m, len(x)).logsumexp(0)
            g = torch.autograd.grad(term.sum() / len(x), x_adv)[0] if grad else None
            parts.append((term.detach(), g))
        if loss == "ce":
            total = sum(t for t, _ in parts)
            g = sum(g for _, g in parts) if grad else None
        else:  # -log mean softmax; d/dx = -sum_c softmax_c(terms) d terms_c / dx
            terms = torch.stack([t for t, _ in parts])
            log_sum = terms.logsumexp(0)
            total = math.log(eot) - log_sum
            weights = (terms - log_sum).exp()
            shape = (-1, *[1] * (x.ndim - 1))
            g = -sum(w.view(shape) * g for w, (_, g) in zip(weights, parts)) if grad else None
        # sign(NaN) = 0: a NaN would silently leave the iterate where it is
        if not (torch.isfinite(total).all() and (g is None or torch.isfinite(g).all())):
            raise FloatingPointError("PGD: the loss or its gradient is NaN or infinite "
                                     "(mixed precision overflow?)")
        return total, g

    def flagged(x_adv: Tensor) -> Tensor:
        return stop(x_adv).to(x.device) if stop else torch.zeros(len(x), dtype=torch.bool,
                                                                 device=x.device)

    def run() -> tuple[Tensor, Tensor | None, Tensor]:
        """One run: (its result, the result's fresh loss or None, its stopped images)."""
        x_adv = uniform(x, eps, generator) if random_start else x.clone()
        iterates, done = [x_adv.clone()], flagged(x_adv)
        for c in tqdm(range(steps), desc="PGD steps", leave=False, disable=not progress):
            x_adv.requires_grad_(True)
            _, grad = eot_loss(x_adv, grad=True)
            a = step_size if schedule == "constant" else \
                step_size * (1 + math.cos(math.pi * c / steps)) / 2
            moved = x_adv.detach() + a * grad.sign()
            moved = (x + (moved - x).clamp(-eps, eps)).clamp(0, 1)
            x_adv = torch.where(done.view(-1, *[1] * (x.ndim - 1)), x_adv.detach(), moved)
            if stop:
                done = done | flagged(x_adv)
            if iterate == "best":
                iterates.append(x_adv)
        if iterate == "last":
            return x_adv.detach(), None, done
        best = iterates[0].clone()
        best_loss = torch.full((len(x),), -torch.inf, device=x.device)
        with torch.no_grad():
            for candidate in iterates:  # fresh samples for every score
                score = eot_loss(candidate, grad=False)[0]
                better = score > best_loss
                best[better], best_loss[better] = candidate[better], score[better]
        best[done] = x_adv.detach()[done]  # a stopped image keeps its first flagged iterate
        return best, best_loss, done

    out, score, done = run()
    for _ in range(restarts - 1):
        if score is None:
            with torch.no_grad():
                score = eot_loss(out, grad=False)[0]
        candidate, new, new_done = run()
        if new is None:
            with torch.no_grad():
                new = eot_loss(candidate, grad=False)[0]
        better = ~done & (new_done | (new > score))
        out[better], score[better] = candidate[better], new[better]
        done = done | new_done
    return out


def _check_eps(eps: float) -> None:
    if not (isinstance(eps, (int, float)) and 0 <= eps <= 1):
        raise ValueError(f"eps: expected a Linf radius in [0, 1] pixel units, got {eps!r}")
