"""Linf attacks on a purified classifier (sec. 4.2, appendix B, Table S1).

- :func:`pgd`: projected gradient descent of Madry et al. (2018) on any
  differentiable function of [0,1] images, the sign of the gradient of the
  cross-entropy, projected to the eps ball around ``x`` and to [0,1] after every
  step (as foolbox's ``LinfPGD`` and torchattacks' ``PGD``). With ``eot > 1`` the
  gradient is that of the loss averaged over ``eot`` samples of the system's
  randomness (EOT, Athalye et al. 2018), the samples folded into the batch: one
  forward/backward per step.
- :func:`attack_batch`: the system attacks on ``world.purifier()`` -> ``world.classifier``,
  Table 1's four and those of issue 13 (book/04b_strength):

  ============ ===================================== =========== ==========================
  attack       gradient of the purifier              EOT samples optimiser
  ============ ===================================== =========== ==========================
  bpda         identity (straight-through, BPDA)     1           :func:`pgd`
  bpda-eot     identity (straight-through, BPDA)     ``eot``     :func:`pgd`
  pgd          full, through every diffusion step    1           :func:`pgd`
  pgd-eot      full, through every diffusion step    ``eot``     :func:`pgd`
  apgd-eot     full, through every diffusion step    ``eot``     autoattack's APGD-CE
  apgd-dlr-eot full, through every diffusion step    ``eot``     autoattack's APGD-DLR
  eotpgd       full, through every diffusion step    ``eot``     torchattacks' EOTPGD
  transfer     none: PGD on the bare classifier      1           :func:`pgd`
  ============ ===================================== =========== ==========================

  :func:`pgd` keeps the last iterate (Table S1) or the best (``pgd_iterate``), with a
  constant or cosine-decaying step (``pgd_schedule``).
- :func:`uniform`: uniform noise of Linf size eps (sec. 3.1).

Randomness of the attacks (eq. 9 base seeds). Gradient ``c`` (= PGD step ``c``,
from 0) of the batch with index ``i`` purifies EOT sample ``j`` (0..eot-1) with
base seed ``attack_seed + c * eot + j`` and batch index ``i``: every gradient
sees fresh, reproducible randomness, the same whether the samples are folded into
one batch, ``eot_batch`` at a time, or drawn one call at a time. The random start is drawn from a CPU
generator seeded with ``seed_for(attack_seed, i, 0, forward=False)`` (step 0 of
eq. 9, which no purifier draws from). The evaluation stage uses base seeds
``0 .. n_evals - 1``, so :func:`attack_batch` requires ``attack_seed >= n_evals``:
the attack never sees the randomness it is judged with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .apgd import apgd, seeded
from .purifiers import Purifier, check_images, seed_for

SYSTEM_ATTACKS = ("bpda", "bpda-eot", "pgd", "pgd-eot", "apgd-eot", "apgd-dlr-eot", "eotpgd",
                  "transfer")
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
    ``"best"`` returns, per image, the iterate with the highest EOT-averaged loss
    among the start, every step's iterate and the last one (as APGD keeps its
    best-loss point). The losses of the first ``steps`` iterates come with their
    gradients; the last iterate costs one more call without gradient (``eot``
    samples, the next seeds). Returns the adversarial images, detached, with ``x``'s shape.
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
    best, best_loss = x_adv.clone(), torch.full((len(x),), -torch.inf, device=x.device)

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

    def keep(x_adv: Tensor, loss: Tensor) -> None:
        better = loss > best_loss
        best[better], best_loss[better] = x_adv.detach()[better], loss[better]

    for c in tqdm(range(steps), desc="PGD steps", leave=False, disable=not progress):
        x_adv.requires_grad_(True)
        loss, grad = eot_loss(x_adv, grad=True)
        keep(x_adv, loss)
        a = step_size if schedule == "constant" else step_size * (1 + math.cos(math.pi * c / steps)) / 2
        x_adv = x_adv.detach() + a * grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
    if iterate == "last":
        return x_adv.detach()
    with torch.no_grad():
        keep(x_adv, eot_loss(x_adv, grad=False)[0])
    return best


def straight_through(purifier: Purifier, x: Tensor, base_seeds: int | Sequence[int],
                     batch_index: int) -> Tensor:
    """BPDA (Athalye et al. 2018): the purifier forward, the identity backward."""
    with torch.no_grad():
        purified = purifier(x.detach(), base_seeds, batch_index)
    return x + (purified - x).detach()


class SystemLogits(nn.Module):
    """``classifier(purifier(x))`` for PGD, each EOT sample with its own seed.

    ``x`` holds m seed-major copies of the ``n_images`` images of batch
    ``batch_index``; the k-th copy seen since construction (counted from 0) is
    purified with base seed ``attack_seed + k``. Gradient ``c`` of an attack with
    ``eot`` samples thus uses seeds ``attack_seed + c * eot + j``, however the
    samples are split over calls: all in one (:func:`pgd`), ``eot_batch`` at a time,
    or one per call, as torchattacks' ``EOTPGD`` and autoattack's APGD call their model.
    With ``n_images=None`` every call is one copy of whatever rows it gets (AutoAttack
    attacks the still-robust subset). The purifier is
    differentiated through every step (``straight=False``) or replaced by the
    identity in the backward pass (``straight=True``, BPDA).
    """

    def __init__(self, classifier: nn.Module, purifier: Purifier, batch_index: int,
                 attack_seed: int, n_images: int | None, straight: bool):
        super().__init__()
        self.classifier, self.diffusion, self.purifier = classifier, purifier.model, purifier
        self.batch_index, self.attack_seed = batch_index, attack_seed
        self.n_images, self.straight = n_images, straight
        self.calls = self.samples = 0
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        m, rest = divmod(len(x), self.n_images or len(x))
        if rest or not m:
            raise ValueError(f"SystemLogits: expected copies of {self.n_images} images, "
                             f"got {len(x)} rows")
        seeds = [self.attack_seed + self.samples + j for j in range(m)]
        self.calls, self.samples = self.calls + 1, self.samples + m
        if self.straight:
            purified = straight_through(self.purifier, x, seeds, self.batch_index)
        else:
            purified = self.purifier(x, seeds, self.batch_index, grad=True)
        return self.classifier(purified)


def attack_eot(attack: str, eot: int) -> int:
    """EOT samples per gradient of a system attack: ``eot`` for the EOT ones, else 1."""
    check_attack(attack)
    return eot if attack.endswith("-eot") or attack == "eotpgd" else 1


def full_gradient(attack: str) -> bool:
    """Whether a system attack differentiates through every diffusion step (not BPDA,
    not the transfer attack, which never sees the purifier)."""
    check_attack(attack)
    return not attack.startswith("bpda") and attack != "transfer"


def check_attack(attack: str) -> None:
    if attack not in SYSTEM_ATTACKS:
        raise ValueError(f"attack: expected one of {list(SYSTEM_ATTACKS)}, got {attack!r}")


def attack_batch(world, attack: str, x: Tensor, y: Tensor, batch_index: int,
                 purifier: Purifier | None = None, progress: bool = False) -> Tensor:
    """One batch of a system attack with the parameters of ``world.params``.

    ``eps``, ``attack_steps``, ``step_size`` (eps x rel_stepsize), ``random_start``,
    ``eot``, ``eot_batch``, ``pgd_iterate``, ``pgd_schedule`` and ``attack_seed`` come
    from the params (Table S1 defaults); seeds as in the module docstring.
    ``purifier`` defaults to ``world.purifier()``. Beyond Table 1's four:

    - ``apgd-eot`` / ``apgd-dlr-eot``: autoattack's APGD-CE / APGD-DLR with ``eot``
      samples (:func:`diffrob.apgd.apgd`, its best-loss iterate; its own step sizes);
    - ``eotpgd``: torchattacks' ``EOTPGD`` (last iterate, constant step);
    - ``transfer``: :func:`pgd` on the bare classifier, the examples then judged on the
      purified system (a black-box baseline that must be weaker than white-box).
    """
    p = world.params
    check_attack(attack)
    if p.attack_seed < p.n_evals:
        raise ValueError(f"parameter 'attack_seed' ({p.attack_seed}) must be >= n_evals "
                         f"({p.n_evals}): evaluations use base seeds 0..n_evals-1 and the "
                         f"attack must not see them")
    start_seed = seed_for(p.attack_seed, batch_index, 0, False)
    start = torch.Generator().manual_seed(start_seed)
    if attack == "transfer":
        return pgd(world.classifier, x, y, p.eps, p.attack_steps, p.step_size, p.random_start,
                   start, progress=progress, iterate=p.pgd_iterate, schedule=p.pgd_schedule)
    logits = SystemLogits(world.classifier, purifier or world.purifier(), batch_index,
                          p.attack_seed, len(x), straight=attack.startswith("bpda"))
    eot = attack_eot(attack, p.eot)
    if attack.startswith("apgd"):
        return apgd(logits, x, y, p.eps, p.attack_steps, eot,
                    loss="dlr" if "dlr" in attack else "ce", seed=start_seed)
    if attack == "eotpgd":
        import torchattacks  # the 'test' extra; imported only where used

        tool = torchattacks.EOTPGD(logits, eps=p.eps, alpha=p.step_size, steps=p.attack_steps,
                                   eot_iter=eot, random_start=p.random_start)
        with seeded(start_seed, x.device):
            return tool(x, y).detach()
    return pgd(logits, x, y, p.eps, p.attack_steps, p.step_size, p.random_start, start,
               eot, progress=progress, eot_batch=p.eot_per_call, iterate=p.pgd_iterate,
               schedule=p.pgd_schedule)


def _check_eps(eps: float) -> None:
    if not (isinstance(eps, (int, float)) and 0 <= eps <= 1):
        raise ValueError(f"eps: expected a Linf radius in [0, 1] pixel units, got {eps!r}")
