"""Are the attacks strong enough? The runs (sec. 4.2, Table S1; Carlini et al. 2019).

Experiments on the first ``strength_images`` test images, each attack's examples judged like
Table 1's: re-evaluated with ``strength_evals`` fresh base seeds (0 .. r-1, never seen by the
attack) through the same store and stages (:func:`diffrob.stages.evaluations`). Every run
starts from the *base protocol*: ``eps_255``, ``strength_steps`` iterations, ``strength_eot``
samples; a curve changes one thing at a time. A protocol is (relative step, step schedule,
iterate): the paper's is (``rel_stepsize`` = Table S1's eps/30, constant, last).

Accuracies are the standard robust accuracy (mean over runs and images) with a 95 %
bootstrap interval over images; a comparison of two attacks is paired on the same
images (bootstrap of the per-image difference), both from :mod:`diffrob.verdicts`.

Held-out protocol choice: the images split once into halves by position (:func:`halves`,
no seed involved); the step-size grid's winner is chosen on the *choice* half
(:func:`choose`) and every attack of :func:`compare` is reported on the other, the
*report* half (and on all images, marked as including the choice half).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from .. import attacks, stages, store, verdicts
from ..attacks import SystemLogits
from ..attacks.apgd import autoattack_rand
from ..attacks.fold import FoldedEOT
from ..purifiers import seed_for
from . import analysis

SCHEDULES_AND_ITERATES = (("constant", "last"), ("constant", "best"), ("cosine", "best"))


def base_world(world, **changes):
    """``world`` on the first ``strength_images`` images (one batch) with the base protocol
    of the module docstring, then ``changes`` (fields of Params)."""
    p = world.params
    n = min(p.strength_images, len(world.images))
    q = p.replace(n_images=n, batch_size=n, n_evals=p.strength_evals,
                  attack_steps=p.strength_steps, eot=p.strength_eot)
    return dataclasses.replace(world, images=world.images[:n], labels=world.labels[:n],
                               params=q.replace(**changes))


def protocol(world, rel_stepsize: float | None, schedule: str, iterate: str) -> dict:
    """Params changes of a protocol (``rel_stepsize=None``: the params' own, Table S1's)."""
    p = world.params
    rel = p.rel_stepsize if rel_stepsize is None else rel_stepsize
    return {"rel_stepsize": rel, "pgd_schedule": schedule, "pgd_iterate": iterate}


def correct(world, attack: str, progress: bool = True) -> np.ndarray:
    """Per image, the fraction of the r re-evaluations that classify ``attack``'s example
    of ``world`` (a :func:`base_world`) correctly: (n,)."""
    preds = stages.evaluations(world, attack, progress=progress)
    return analysis.per_image_accuracy(preds, world.labels.cpu().numpy())


def curve(world, attack: str, field: str, values: list, progress: bool = True,
          **changes) -> pd.DataFrame:
    """Accuracy of ``attack`` as Params ``field`` takes each of ``values`` (rest: the base
    protocol with ``changes``)."""
    rows = []
    for v in values:
        w = base_world(world, **{**changes, field: v})
        rows.append({field: v, **analysis.summarise(correct(w, attack, progress))})
    return pd.DataFrame(rows)


def budget_values(p) -> dict[str, list[int]]:
    """The values of the steps and EOT curves: ``strength_step_grid`` and ``strength_eot_grid``
    with the base protocol's own ``strength_steps`` / ``strength_eot``, sorted, each once."""
    return {"attack_steps": sorted({*p.strength_step_grid, p.strength_steps}),
            "eot": sorted({*p.strength_eot_grid, p.strength_eot})}


def levels_off(world, attack: str, field: str, values: list, progress: bool = True,
               **changes) -> object | None:
    """Where :func:`curve`'s accuracy stops falling: the first of ``values`` (sorted) that no
    later value undercuts significantly, i.e. for none of the later values does the paired
    difference over images (later minus it, :func:`diffrob.verdicts.paired_difference`) have
    its interval's upper end below 0. ``None`` when only the last of two or more values
    qualifies: the curve still falls at the end of its grid (Carlini et al. 2019: increase
    the budget until the attack converges)."""
    values = sorted(values)
    per_image = [correct(base_world(world, **{**changes, field: v}), attack, progress)
                 for v in values]
    for i, here in enumerate(per_image[:-1]):
        if all(verdicts.paired_difference(later, here).hi >= 0 for later in per_image[i + 1:]):
            return values[i]
    return values[0] if len(values) == 1 else None


def halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out split of ``n`` strength images: (choice, report) positions, the even ones
    choose the protocol and the odd ones report it. Fixed by position alone (no seed), so
    every run and every seed of the attacks sees the same split; ``ValueError`` below 2."""
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"strength_images: the held-out split needs at least 2 images, got {n!r}")
    positions = np.arange(n)
    return positions[0::2], positions[1::2]


def split(world) -> tuple[np.ndarray, np.ndarray]:
    """:func:`halves` of ``world``'s strength images (those of :func:`base_world`)."""
    return halves(len(base_world(world).images))


def rel_stepsizes(p) -> list[float]:
    """The grid's relative steps: ``strength_rel_stepsizes`` and ``strength_more_rel_stepsizes``,
    sorted, each once."""
    return sorted({*p.strength_rel_stepsizes, *p.strength_more_rel_stepsizes})


def step_grid(world, progress: bool = True) -> pd.DataFrame:
    """PGD-EOT under each relative step of :func:`rel_stepsizes` and three protocols:
    constant step keeping the last iterate (the paper's), constant keeping the best,
    cosine-decaying keeping the best; the accuracy on all images with its interval and on
    the choice half of :func:`halves` (column ``choice half``)."""
    p = world.params
    choice, _ = split(world)
    rows = []
    for rel in rel_stepsizes(p):
        for schedule, iterate in SCHEDULES_AND_ITERATES:
            w = base_world(world, **protocol(world, rel, schedule, iterate))
            per_image = correct(w, "pgd-eot", progress)
            rows.append({"rel_stepsize": rel, "schedule": schedule, "iterate": iterate,
                         **analysis.summarise(per_image),
                         "choice half": 100 * float(per_image[choice].mean())})
    return pd.DataFrame(rows)


@dataclasses.dataclass(frozen=True)
class Choice:
    """The protocol chosen on the choice half (Params changes) and where it sits on the
    grid: ``edges`` names each direction in which nothing beyond it was tried."""

    protocol: dict
    edges: tuple[str, ...]


# A constant Linf PGD step of 2 eps lands every iterate on the corner of the ball that the
# gradient's signs point to, from anywhere in it (x + 2 eps sign(g) always leaves the ball and
# is clipped back), so no larger constant step gives other iterates: the grid's true top.
CORNER_STEP = 2.0


def choose(grid: pd.DataFrame, steps: int, step_grid_max: int) -> Choice:
    """The cell of ``grid`` (:func:`step_grid`) with the lowest accuracy on the choice half
    (the first on ties), and its edges: "no larger step tried" where its step is the grid's
    largest (unless it is a constant step of :data:`CORNER_STEP`, beyond which none differs),
    "no smaller step tried" where the smallest, "no more iterations tried" where the steps
    curve's largest ``step_grid_max`` does not exceed its ``steps``."""
    row = grid.loc[grid["choice half"].astype(float).idxmin()]
    rel, tried = float(row["rel_stepsize"]), grid["rel_stepsize"].astype(float)
    top = rel >= tried.max() and not (rel >= CORNER_STEP and row["schedule"] == "constant")
    edges = tuple(text for text, at_edge in (
        ("no larger step tried", top), ("no smaller step tried", rel <= tried.min()),
        ("no more iterations tried", step_grid_max <= steps)) if at_edge)
    return Choice({"rel_stepsize": rel, "pgd_schedule": row["schedule"],
                   "pgd_iterate": row["iterate"]}, edges)


def strongest_protocol(world, progress: bool = True) -> Choice:
    """The protocol chosen on the choice half of :func:`step_grid` (:func:`choose`), the one
    that chapter 4 and 4b use as "strongest"."""
    return choose_on(world, step_grid(world, progress))


def choose_on(world, grid: pd.DataFrame) -> Choice:
    """:func:`choose` on ``world``'s step grid, the iterations tried being the base's
    ``strength_steps`` and the most of ``strength_step_grid``."""
    p = world.params
    return choose(grid, p.strength_steps, max(p.strength_step_grid, default=p.strength_steps))


def autoattack_example(world, progress: bool = True) -> dict[str, float]:
    """AutoAttack ``rand`` at its own budget (``autoattack_steps`` x ``autoattack_eot``) on
    ``world`` (a :func:`base_world`): its own robust accuracy (one noisy forward pass decides)
    beside the standard robust accuracy of its final examples re-evaluated r times.

    Stored per batch: its own flags as ``autoattack/rand-own``, computed with its examples
    (``autoattack/rand``) in one run, as :func:`own_fooled` does; where the examples were
    stored without their flags, AutoAttack runs once more (seeded: the same examples)."""
    p, todo = world.params, dict(stages.batches(world))
    k = stages.key(world, "autoattack/rand", stages.WORLD_FIELDS + stages.PURIFIER_FIELDS
                   + ("eps_255", "attack_seed"), steps=p.autoattack_steps,
                   eot=p.autoattack_eot)

    ran: dict[int, torch.Tensor] = {}

    def run(i: int) -> torch.Tensor:
        system = SystemLogits(world.classifier, world.purifier(), i, p.attack_seed, None,
                              straight=False)
        with FoldedEOT(system, p.autoattack_eot, p.eot_batch or p.autoattack_eot) as model:
            x_adv, ran[i] = autoattack_rand(
                model, world.images[todo[i]], world.labels[todo[i]], p.eps,
                p.autoattack_steps, p.autoattack_eot, seed=seed_for(p.attack_seed, i, 0, False))
        return x_adv

    def flags(i: int) -> torch.Tensor:
        store.cached(p, "autoattack/rand", k, [i], run, progress=False)
        if i not in ran:
            run(i)
        return ran[i].to(torch.uint8)

    own = store.cached(p, "autoattack/rand-own", {**k, "stage": "autoattack/rand-own"},
                       list(todo), flags, desc="AutoAttack rand", progress=progress)
    x_adv = store.cached(p, "autoattack/rand", k, list(todo), run, progress=False)
    preds = np.concatenate([stages.predict_purified(world, x_adv[i].to(world.device), i,
                                                    list(range(p.n_evals)))
                            for i in todo], axis=1)
    labels = world.labels.cpu().numpy()
    return {"own": 100 * torch.cat(list(own.values())).float().mean().item(),
            **analysis.summarise(analysis.per_image_accuracy(preds, labels)),
            "m=0": 100 * analysis.worst_of_n(preds, labels, p.n_evals)}


def gradients(attack: str, p) -> int:
    """Gradient evaluations per image of ``attack`` under params ``p``: EOT samples x steps
    (sec. 4.2's PGD-EOT: ``eot`` x ``attack_steps``; APGD: ``eot`` x (``attack_steps`` + 1)
    per restart), as the registry counts them (:meth:`diffrob.attacks.Attack.work`)."""
    return attacks.get(attack).work_under(p)[0]


def own_fooled(world, attack: str, progress: bool = True) -> np.ndarray:
    """Per image of ``world`` (a :func:`base_world`), whether one of the checked attack's
    ``attack_checks`` evaluations misclassified an iterate while it optimised (its own count,
    :class:`diffrob.attacks.Checks`): (n,) bool, stored as ``own/<attack>`` under the
    attack's key. A batch computed here goes through the attack's own stage
    (``attack/<attack>``), so the examples and their count come from one run; where the
    examples were stored alone (``diffrob attack``), the attack runs once more here for its
    count (deterministic: the same examples)."""
    p, todo = world.params, dict(stages.batches(world))
    k_attack = stages.attack_key(world, attack)

    def compute(i: int) -> torch.Tensor:
        rows, ran = todo[i], {}

        def run(i: int) -> torch.Tensor:
            x_adv, ran["fooled"] = attacks.attack_batch_checked(
                world, attack, world.images[rows], world.labels[rows], i)
            return x_adv

        store.cached(p, f"attack/{attack}", k_attack, [i], run, progress=False)
        if not ran:  # its examples were stored without their count: run again (the same bytes)
            run(i)
        return ran["fooled"].to(torch.uint8)

    out = store.cached(p, f"own/{attack}", {**k_attack, "stage": f"own/{attack}"}, list(todo),
                       compute, desc=f"{attack} (own count)", progress=progress)
    return torch.cat(list(out.values())).bool().numpy()


def vote_ks(p) -> list[int]:
    """The k of ``vote_k`` that r = ``strength_evals`` re-evaluations can judge (k <= r)."""
    return [k for k in p.vote_k if k <= p.strength_evals]


def compare(world, protocols: dict[str, tuple[str, dict]], reference: str,
            progress: bool = True) -> pd.DataFrame:
    """Side by side: for each ``name: (attack, params changes)`` on the base world, the
    gradient evaluations per image (:func:`gradients`), then on the report half of
    :func:`halves`: the accuracy with its interval, the paired difference to ``reference``
    (percentage points, interval), worst-of-N (N = 1, 10, r and the checked attack's N), the
    alpha = 0.5 cut, the majority vote of each k of :func:`vote_ks` with its paired
    difference to ``reference``'s vote and, for the checked attack, its own count "while
    optimising" (N = its ``attack_checks``); and the accuracy on all images with its interval
    (``all ...``, the choice half included). A last row "worst case" takes per image the
    attack with the highest grade (its gradients: those of every attack). Every row also has
    its paired difference to the strongest single attack on the report half (``vs best``,
    ``best low``, ``best high``): whether any attack is significantly stronger than another."""
    p = world.params
    labels, preds, rows, own = base_world(world).labels.cpu().numpy(), {}, {}, {}
    for name, (attack, changes) in protocols.items():
        w = base_world(world, **changes)
        if attacks.get(attack).checks:  # first: its examples come with its own count
            own[name] = (w.params.attack_checks, own_fooled(w, attack, progress))
        preds[name] = stages.evaluations(w, attack, progress=progress)
        rows[name] = {"gradients": gradients(attack, w.params)}
    preds["worst case"] = analysis.worst_case(dict(preds), labels)
    rows["worst case"] = {"gradients": sum(r["gradients"] for r in rows.values())}
    r, (_, report) = p.strength_evals, halves(len(labels))
    ns = sorted({1, min(10, r), r, *(n for n, _ in own.values() if n <= r)})
    per_image = {k: analysis.per_image_accuracy(v, labels) for k, v in preds.items()}
    votes = {k: {name: analysis.vote_accuracy_per_image(pr, labels, k)
                 for name, pr in preds.items()} for k in vote_ks(p)}
    for name, pr in preds.items():
        held, held_labels = pr[:, report], labels[report]
        diff = verdicts.paired_difference(per_image[name][report],
                                          per_image[reference][report])
        rows[name].update(analysis.summarise(per_image[name][report]))
        rows[name].update({f"all {k}": v for k, v in
                           analysis.summarise(per_image[name]).items()})
        rows[name].update({"vs " + reference: 100 * diff.value, "diff low": 100 * diff.lo,
                           "diff high": 100 * diff.hi,
                           **{f"N={n}": 100 * analysis.worst_of_n(held, held_labels, n)
                              for n in ns},
                           "alpha=0.5": 100 * analysis.robust_fraction(
                               analysis.grades(held, held_labels), 0.5)})
        for k, vote in votes.items():
            d = verdicts.paired_difference(vote[name][report], vote[reference][report])
            rows[name].update({f"k={k}": 100 * float(vote[name][report].mean()),
                               f"k={k} vs": 100 * d.value, f"k={k} low": 100 * d.lo,
                               f"k={k} high": 100 * d.hi})
        n, fooled = own.get(name, (None, None))
        rows[name]["own N"] = n if n is not None else np.nan
        rows[name]["while optimising"] = (100 * float((~fooled[report]).mean())
                                          if fooled is not None else np.nan)
    best = min(protocols, key=lambda name: rows[name]["accuracy"])
    for name in preds:
        d = verdicts.paired_difference(per_image[name][report], per_image[best][report])
        rows[name].update({"vs best": 100 * d.value, "best low": 100 * d.lo,
                           "best high": 100 * d.hi})
    return pd.DataFrame(rows).T


def table1_additions(world, strong: dict, progress: bool = True) -> pd.DataFrame:
    """Table 1's extra rows on the book's images and r: PGD-EOT under the ``strong``
    protocol, and the worst case over every attack of ``params.attacks`` and that one, per
    image (:func:`.analysis.worst_case`); columns as :func:`.analysis.table`, plus
    worst-of-N for N = 1, 10 and r."""
    p, labels = world.params, world.labels.cpu().numpy()
    preds = {a: stages.evaluations(world, a, progress=progress) for a in p.attacks}
    strong_world = dataclasses.replace(world, params=p.replace(**strong))
    preds["pgd-eot (strongest protocol)"] = stages.evaluations(strong_world, "pgd-eot",
                                                               progress=progress)
    extra = {"pgd-eot (strongest protocol)": preds["pgd-eot (strongest protocol)"],
             "worst case over attacks": analysis.worst_case(preds, labels)}
    table = analysis.table(extra, labels, ks=p.vote_k)
    for n in sorted({1, min(10, p.n_evals), p.n_evals}):
        table[f"N={n}"] = [100 * analysis.worst_of_n(v, labels, n) for v in extra.values()]
    return table
