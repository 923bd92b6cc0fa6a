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
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .. import attacks, stages, verdicts
from ..attacks import SystemLogits
from ..attacks.apgd import autoattack_rand
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


def correct(world, attack: str, progress: bool = False) -> np.ndarray:
    """Per image, the fraction of the r re-evaluations that classify ``attack``'s example
    of ``world`` (a :func:`base_world`) correctly: (n,)."""
    preds = stages.evaluations(world, attack, progress=progress)
    return analysis.per_image_accuracy(preds, world.labels.cpu().numpy())


def curve(world, attack: str, field: str, values: list, progress: bool = False,
          **changes) -> pd.DataFrame:
    """Accuracy of ``attack`` as Params ``field`` takes each of ``values`` (rest: the base
    protocol with ``changes``)."""
    rows = []
    for v in values:
        w = base_world(world, **{**changes, field: v})
        rows.append({field: v, **analysis.summarise(correct(w, attack, progress))})
    return pd.DataFrame(rows)


def step_grid(world, progress: bool = False) -> pd.DataFrame:
    """PGD-EOT under each relative step of ``strength_rel_stepsizes`` and three protocols:
    constant step keeping the last iterate (the paper's), constant keeping the best,
    cosine-decaying keeping the best."""
    p = world.params
    rows = []
    for rel in p.strength_rel_stepsizes:
        for schedule, iterate in SCHEDULES_AND_ITERATES:
            w = base_world(world, **protocol(world, rel, schedule, iterate))
            rows.append({"rel_stepsize": rel, "schedule": schedule, "iterate": iterate,
                         **analysis.summarise(correct(w, "pgd-eot", progress))})
    return pd.DataFrame(rows)


def autoattack_example(world) -> dict[str, float]:
    """AutoAttack ``rand`` on ``world`` (a :func:`base_world`): its own robust accuracy (one
    noisy forward pass decides) beside the standard robust accuracy of its final examples
    re-evaluated r times. Not stored: recomputed on every call."""
    p = world.params
    x, y = world.images, world.labels
    model = SystemLogits(world.classifier, world.purifier(), 0, p.attack_seed, None,
                         straight=False)
    x_adv, own = autoattack_rand(model, x, y, p.eps, p.attack_steps, p.eot,
                                 seed=seed_for(p.attack_seed, 0, 0, False))
    preds = stages.predict_purified(world, x_adv, 0, list(range(p.n_evals)))
    labels = y.cpu().numpy()
    return {"own": 100 * own.float().mean().item(),
            **analysis.summarise(analysis.per_image_accuracy(preds, labels)),
            "m=0": 100 * analysis.worst_of_n(preds, labels, p.n_evals)}


def gradients(attack: str, p) -> int:
    """Gradient evaluations per image of ``attack`` under params ``p``: EOT samples x steps
    (sec. 4.2's PGD-EOT: ``eot`` x ``attack_steps``; APGD: ``eot`` x (``attack_steps`` + 1)
    in its one restart), as the registry counts them (:meth:`diffrob.attacks.Attack.work`)."""
    return attacks.get(attack).work(p.eot, p.attack_steps, p.pgd_iterate, p.square_queries)[0]


def compare(world, protocols: dict[str, tuple[str, dict]], reference: str,
            progress: bool = False) -> pd.DataFrame:
    """Side by side: for each ``name: (attack, params changes)`` on the base world, the
    gradient evaluations per image (:func:`gradients`), the accuracy with its interval, the
    paired difference to ``reference`` (percentage points, interval), worst-of-N (N = 1, 10,
    r) and the alpha = 0.5 cut; a last row "worst case" takes per image the attack with the
    highest grade (its gradients: those of every attack)."""
    p = world.params
    labels, preds, rows = base_world(world).labels.cpu().numpy(), {}, {}
    for name, (attack, changes) in protocols.items():
        w = base_world(world, **changes)
        preds[name] = stages.evaluations(w, attack, progress=progress)
        rows[name] = {"gradients": gradients(attack, w.params)}
    preds["worst case"] = analysis.worst_case(dict(preds), labels)
    rows["worst case"] = {"gradients": sum(r["gradients"] for r in rows.values())}
    r = p.strength_evals
    per_image = {k: analysis.per_image_accuracy(v, labels) for k, v in preds.items()}
    for name, pr in preds.items():
        diff = verdicts.paired_difference(per_image[name], per_image[reference])
        ns = sorted({1, min(10, r), r})
        rows[name].update(analysis.summarise(per_image[name]))
        rows[name].update({"vs " + reference: 100 * diff.value, "diff low": 100 * diff.lo,
                           "diff high": 100 * diff.hi,
                           **{f"N={n}": 100 * analysis.worst_of_n(pr, labels, n) for n in ns},
                           "alpha=0.5": 100 * analysis.robust_fraction(
                               analysis.grades(pr, labels), 0.5)})
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
