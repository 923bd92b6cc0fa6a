"""The system attacks on ``world.purifier()`` -> ``world.classifier`` (sec. 4.2, Table 1).

:func:`attack_batch` runs any attack of :data:`diffrob.attacks.registry.REGISTRY` on one
batch with the world's parameters; :class:`SystemLogits` is the purified classifier that
the optimisers differentiate.

Randomness (eq. 9 base seeds). Gradient ``c`` (= PGD step ``c``, from 0) of the batch with
index ``i`` purifies EOT sample ``j`` (0..eot-1) with base seed ``attack_seed + c * eot + j``
and batch index ``i``: every gradient sees fresh, reproducible randomness, the same whether
the samples are folded into one batch, ``eot_batch`` at a time, or drawn one call at a
time. The random start is drawn from a CPU generator seeded with
``seed_for(attack_seed, i, 0, forward=False)`` (step 0 of eq. 9, which no purifier draws
from). The evaluation stage uses base seeds ``0 .. n_evals - 1``, so :func:`check_seeds`
requires ``attack_seed >= n_evals``: the attack never sees the randomness it is judged with.
Restarts continue both streams (the next random start, the next base seeds). The
N-evaluation checks of the checked attack (:class:`Checks`) draw from a stream of their own,
base seeds ``attack_seed + CHECK_SEEDS + k``, so its gradients see PGD-EOT's seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..purifiers import Purifier, seed_for
from .apgd import apgd, apgd_targeted, seeded, square
from .fold import FoldedEOT
from .pgd import pgd
from .registry import get

CHECK_SEEDS = 10**6  # the checks' base seeds start at attack_seed + this: no gradient's reach


def check_seeds(p) -> None:
    """Evaluations use base seeds 0 .. n_evals-1 and attacks seeds from ``attack_seed`` on:
    ``ValueError`` unless ``attack_seed >= n_evals`` (the attack must not have seen them)."""
    if p.attack_seed < p.n_evals:
        raise ValueError(f"parameter 'attack_seed' ({p.attack_seed}) must be >= n_evals "
                         f"({p.n_evals}): evaluations use base seeds 0..n_evals-1 and the "
                         f"attack must not have seen them")


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
    attacks the still-robust subset), unless ``copies`` says how many it holds
    (:class:`~diffrob.attacks.fold.FoldedEOT`). The purifier is
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

    def forward(self, x: Tensor, copies: int | None = None) -> Tensor:
        m, rest = divmod(len(x), self.n_images or max(len(x) // (copies or 1), 1))
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


class Checks:
    """The N evaluations of an iterate by the N-evaluation-aware attack (DiffHammer, Wang et
    al. 2024): ``checks(x)`` purifies and classifies ``n_checks`` copies of ``x`` (each with the
    next base seed from ``attack_seed + CHECK_SEEDS``, ``per_call`` copies a call, no gradient)
    and returns per image whether one of them is wrong; ``fooled`` accumulates that over every
    call, the attack's own count "counted while optimising"."""

    def __init__(self, classifier: nn.Module, purifier: Purifier, batch_index: int,
                 attack_seed: int, y: Tensor, n_checks: int, per_call: int):
        self.system = SystemLogits(classifier, purifier, batch_index, attack_seed + CHECK_SEEDS,
                                   len(y), straight=False)
        self.y, self.n_checks, self.per_call = y, n_checks, per_call
        self.fooled = torch.zeros(len(y), dtype=torch.bool, device=y.device)

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        now = torch.zeros(len(x), dtype=torch.bool, device=self.y.device)
        for c in range(0, self.n_checks, self.per_call):
            m = min(self.per_call, self.n_checks - c)
            preds = self.system(x.repeat(m, 1, 1, 1)).argmax(1).view(m, len(x))
            now |= (preds != self.y.to(preds.device)).any(0).to(now.device)
        self.fooled |= now
        return now


def package_attack(model: nn.Module, optimiser: str, x: Tensor, y: Tensor, p, eot: int,
                   restarts: int, seed: int) -> Tensor:
    """The gradient attacks of the packages (registry optimisers ``apgd-ce``, ``apgd-dlr``,
    ``apgd-t``, ``torchattacks-eotpgd``) on ``model`` with the params ``p``."""
    if optimiser in ("apgd-ce", "apgd-dlr"):
        return apgd(model, x, y, p.eps, p.attack_steps, eot, restarts=restarts,
                    loss=optimiser.removeprefix("apgd-"), seed=seed)
    if optimiser == "apgd-t":
        return apgd_targeted(model, x, y, p.eps, p.attack_steps, eot, seed=seed,
                             targets=p.apgd_targets)
    import torchattacks  # the 'test' extra; imported only where used

    tool = torchattacks.EOTPGD(model, eps=p.eps, alpha=p.step_size, steps=p.attack_steps,
                               eot_iter=eot, random_start=p.random_start)
    with seeded(seed, x.device):
        return tool(x, y).detach()


def attack_batch(world, attack: str, x: Tensor, y: Tensor, batch_index: int,
                 purifier: Purifier | None = None, progress: bool = False) -> Tensor:
    """One batch of the registry's attack ``attack`` with the parameters of ``world.params``.

    ``eps``, ``attack_steps``, ``step_size`` (eps x rel_stepsize), ``random_start``,
    ``eot``, ``eot_batch``, ``pgd_iterate``, ``pgd_schedule`` and ``attack_seed`` come
    from the params (Table S1 defaults), and ``attack_restarts`` for the optimisers that
    restart (:meth:`diffrob.attacks.Attack.restarts`); seeds as in the module docstring.
    ``purifier`` defaults to ``world.purifier()``. By the attack's optimiser:

    - ``pgd``: :func:`diffrob.attacks.pgd` on the purified system (full or BPDA gradient),
      or on the bare classifier (``transfer``, a black-box baseline that must be weaker
      than white-box);
    - ``apgd-ce`` / ``apgd-dlr``: autoattack's APGD-CE / APGD-DLR with ``eot`` samples
      (:func:`diffrob.attacks.apgd.apgd`, its best-loss iterate; its own step sizes);
    - ``apgd-t``: autoattack's APGD-T with ``eot`` samples
      (:func:`diffrob.attacks.apgd.apgd_targeted`, the best-loss iterate over its targets);
    - ``square``: autoattack's Square with ``square_queries`` queries, no gradient
      (:func:`diffrob.attacks.apgd.square`);
    - ``torchattacks-eotpgd``: torchattacks' ``EOTPGD`` (last iterate, constant step).

    The packages' EOT samples are folded ``eot_batch`` at a time (:mod:`.fold`), as our PGD's.

    The vote attack is our PGD with the vote's loss; the checked attack our PGD with
    :class:`Checks` (its own count: :func:`attack_batch_checked`).
    """
    return attack_batch_checked(world, attack, x, y, batch_index, purifier, progress)[0]


def attack_batch_checked(world, attack: str, x: Tensor, y: Tensor, batch_index: int,
                         purifier: Purifier | None = None, progress: bool = False
                         ) -> tuple[Tensor, Tensor | None]:
    """:func:`attack_batch`'s examples and, for the checked attack, per image whether one of
    its N evaluations was fooled while it optimised (:class:`Checks`; None for the others)."""
    p, spec = world.params, get(attack)
    check_seeds(p)
    start_seed = seed_for(p.attack_seed, batch_index, 0, False)
    start = torch.Generator().manual_seed(start_seed)
    restarts = spec.restarts(p.attack_restarts)
    if spec.gradient == "classifier":
        return pgd(world.classifier, x, y, p.eps, p.attack_steps, p.step_size, p.random_start,
                   start, progress=progress, iterate=p.pgd_iterate, schedule=p.pgd_schedule,
                   restarts=restarts), None
    purifier = purifier or world.purifier()
    logits = SystemLogits(world.classifier, purifier, batch_index,
                          p.attack_seed, None if spec.optimiser == "square" else len(x),
                          straight=spec.gradient == "straight-through")
    eot = spec.eot_samples(p.eot)
    if spec.optimiser == "square":
        return square(logits, x, y, p.eps, p.square_queries, seed=start_seed), None
    if spec.optimiser != "pgd":
        with FoldedEOT(logits, eot, p.eot_batch or eot) as model:
            return package_attack(model, spec.optimiser, x, y, p, eot, restarts, start_seed), None
    checks = Checks(world.classifier, purifier, batch_index, p.attack_seed, y, p.attack_checks,
                    min(p.eot_per_call, p.attack_checks)) if spec.checks else None
    x_adv = pgd(logits, x, y, p.eps, p.attack_steps, p.step_size, p.random_start, start,
                eot, progress=progress, eot_batch=p.eot_per_call, iterate=p.pgd_iterate,
                schedule=p.pgd_schedule, loss=spec.loss, restarts=restarts, stop=checks)
    return x_adv, None if checks is None else checks.fooled.cpu()
