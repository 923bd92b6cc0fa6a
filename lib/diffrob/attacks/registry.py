"""The one registry of system attacks (sec. 4.2, appendix B, Table S1, and the checks of
the attack-strength chapter): name -> what the attack differentiates, whether it averages
over EOT samples, which optimiser runs it and what one image costs.

Every place that asks what kind an attack is (the store key's EOT count, the cost plan,
the chapters' tables, the command line) asks here, as AutoAttack's ``set_version`` maps a
protocol's name to its attacks in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..names import did_you_mean

GRADIENTS = ("full", "straight-through", "classifier", "none")
OPTIMISERS = ("pgd", "apgd-ce", "apgd-dlr", "apgd-t", "square", "torchattacks-eotpgd")
TARGETS = 9  # APGD-T's target classes by default: AutoAttack's n_target_classes
RESTARTABLE = ("pgd", "apgd-ce", "apgd-dlr")  # the optimisers that run attack_restarts


@dataclass(frozen=True)
class Attack:
    """A system attack on classifier(purifier(x)).

    ``gradient``: ``"full"`` through every diffusion step, ``"straight-through"`` (BPDA,
    Athalye et al. 2018: the purifier forward, the identity backward), ``"classifier"``
    (PGD on the bare classifier, the examples then judged on the purified system) or
    ``"none"`` (a gradient-free search on the purified system's scores).
    ``eot``: whether a gradient averages ``eot`` samples of the purifier's randomness.
    ``optimiser``: our :func:`diffrob.attacks.pgd`, autoattack's APGD-CE / APGD-DLR / APGD-T
    or Square, or torchattacks' EOTPGD.
    ``loss``: our PGD's loss, the EOT-mean cross-entropy (``"ce"``) or the soft majority vote's
    ``-log`` of the EOT-mean softmax of the label (``"vote"``: the attack on the vote of
    ``eot`` = k purifications, Table 1's k columns). ``checks``: whether our PGD evaluates
    every iterate ``attack_checks`` times and keeps each image's first fooled iterate (the
    N-evaluation-aware attack of DiffHammer, Wang et al. 2024).
    """

    name: str
    gradient: str
    eot: bool
    optimiser: str
    summary: str
    loss: str = "ce"
    checks: bool = False

    def eot_samples(self, eot: int) -> int:
        """EOT samples per gradient: ``eot`` for the EOT attacks, else 1."""
        return eot if self.eot else 1

    def key_values(self, p) -> dict[str, int]:
        """What the attack's store key holds beyond the attack fields of the params: its EOT
        samples per gradient, Square's ``square_queries``, for our PGD's best iterate how
        it is scored (results of the earlier rule are never served for it), the restarts
        where more than one runs (so one restart keeps the keys recorded before restarts
        existed), the checked attack's ``attack_checks`` and APGD-T's ``apgd_targets``
        where it is not :data:`TARGETS`."""
        queries = {"square_queries": p.square_queries} if self.optimiser == "square" else {}
        fresh = {"best_scored": "fresh"} if self.optimiser == "pgd" and p.pgd_iterate == "best" \
            else {}  # the best iterate by fresh samples, not by the gradients' own losses
        restarts = {"restarts": p.attack_restarts} if self.restarts(p.attack_restarts) > 1 \
            else {}
        checks = {"checks": p.attack_checks} if self.checks else {}
        targets = {"targets": p.apgd_targets} if self.optimiser == "apgd-t" \
            and p.apgd_targets != TARGETS else {}
        return {"eot": self.eot_samples(p.eot), **queries, **fresh, **restarts, **checks,
                **targets}

    def restarts(self, restarts: int) -> int:
        """Runs from a new random start: ``restarts`` for our PGD and APGD-CE / APGD-DLR
        (:data:`RESTARTABLE`), 1 for the others."""
        return restarts if self.optimiser in RESTARTABLE else 1

    @property
    def full_gradient(self) -> bool:
        """Whether the attack differentiates through every diffusion step."""
        return self.gradient == "full"

    @property
    def folded(self) -> bool:
        """Whether its EOT samples are folded into one call (``eot_batch`` at a time): our
        PGD, and the packages' gradient attacks through :mod:`diffrob.attacks.fold`."""
        return self.optimiser != "square"

    def work(self, eot: int, steps: int, iterate: str, queries: int = 0, restarts: int = 1,
             checks: int = 0, targets: int = TARGETS) -> tuple[int, int]:
        """(gradients, purifications without gradient) per image.

        Our PGD, per restart: ``steps`` gradients of the EOT samples, and when ``iterate`` is
        'best' a fresh score of each of its ``steps + 1`` iterates (as many samples, no
        gradient), with more than one restart and the last iterate a fresh score of each
        restart's result; the checked attack ``checks`` evaluations of each of its
        ``steps + 1`` iterates per restart. torchattacks' EOTPGD: the
        gradients only; autoattack's APGD: one clean prediction, then per restart a gradient
        at the start and one per iteration (``(steps + 1) x eot``); APGD-T that for each of
        its ``targets`` classes, with a pass to pick each; Square: ``queries`` scores and
        its start's, no gradient.
        """
        samples, runs = self.eot_samples(eot), self.restarts(restarts)
        if self.optimiser == "square":
            return 0, queries + 1
        if self.optimiser == "apgd-t":
            return targets * (steps + 1) * samples, 1 + targets
        if self.optimiser in ("apgd-ce", "apgd-dlr"):
            return runs * (steps + 1) * samples, 1
        if self.optimiser != "pgd":
            return steps * samples, 0
        scores = (steps + 1) * samples if iterate == "best" else samples if runs > 1 else 0
        checked = (steps + 1) * checks if self.checks else 0
        return runs * steps * samples, runs * (scores + checked)

    def work_under(self, p) -> tuple[int, int]:
        """:meth:`work` under a :class:`diffrob.params.Params`' own counts."""
        return self.work(p.eot, p.attack_steps, p.pgd_iterate, p.square_queries,
                         p.attack_restarts, p.attack_checks, p.apgd_targets)


REGISTRY: dict[str, Attack] = {a.name: a for a in (
    Attack("bpda", "straight-through", False, "pgd", "BPDA: PGD with the identity backward"),
    Attack("bpda-eot", "straight-through", True, "pgd", "BPDA with EOT"),
    Attack("pgd", "full", False, "pgd", "PGD through every diffusion step"),
    Attack("pgd-eot", "full", True, "pgd", "PGD with EOT through every diffusion step"),
    Attack("apgd-eot", "full", True, "apgd-ce", "autoattack's APGD-CE with EOT"),
    Attack("apgd-dlr-eot", "full", True, "apgd-dlr", "autoattack's APGD-DLR with EOT"),
    Attack("apgd-t-eot", "full", True, "apgd-t", "autoattack's APGD-T (targeted DLR) with EOT"),
    Attack("square", "none", False, "square", "autoattack's Square: gradient-free"),
    Attack("eotpgd", "full", True, "torchattacks-eotpgd", "torchattacks' EOTPGD"),
    Attack("transfer", "classifier", False, "pgd", "PGD on the bare classifier, transferred"),
    Attack("vote-eot", "full", True, "pgd", "PGD on the soft majority vote of eot purifications",
           loss="vote"),
    Attack("nevals-eot", "full", True, "pgd", "PGD-EOT keeping the first iterate that one of "
           "attack_checks evaluations misclassifies (DiffHammer)", checks=True),
)}
NAMES: tuple[str, ...] = tuple(REGISTRY)
TABLE_1: tuple[str, ...] = NAMES[:4]  # the paper's Table 1


def without_eot(name: str) -> str:
    """The attack that ``name`` becomes when all its EOT samples are one draw (the purifier's
    noise fixed, the arXiv v1 variant of sec. 4): the registered attack with its gradient
    and optimiser (and checks) and no EOT, whose examples it then repeats (the vote of one
    draw is its cross-entropy); ``name`` itself when it has no EOT or no such twin."""
    a = get(name)
    twins = [b.name for b in REGISTRY.values() if not b.eot and
             (b.gradient, b.optimiser, b.checks) == (a.gradient, a.optimiser, a.checks)]
    return twins[0] if a.eot and twins else name


def get(name: str) -> Attack:
    """The attack called ``name``; ``ValueError`` naming the valid names (and the closest)."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"attack: unknown attack {name!r}{did_you_mean([str(name)], NAMES)}; "
                         f"expected one of {list(NAMES)}") from None
