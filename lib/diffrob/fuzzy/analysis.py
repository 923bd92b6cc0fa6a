"""Fuzzy adversarial robustness, pure (sec. 4.1-4.2, Definitions 1 and 2, Tables 1-2, Fig. 3).

Most functions take ``preds``, an int array (r, n) of the system's predictions
for n stored examples under r base seeds (the evaluate stage), and ``labels``
(n,). The grade of example i is the fraction of runs that it fools the system
(Definition 1, the frequency estimate of P(s(xi_i) != y_i)); an example with grade
>= alpha is alpha-fuzzy adversarial (Definition 2).

Also here, for the attack-strength checks (Table S1's protocol; Carlini et al. 2019) and the
purifier variants (appendices B and C.2): accuracies with their 95 % intervals over images
(:mod:`diffrob.verdicts`), the strongest protocol of a step-size grid, and the fixed-noise
purifier of eq. 9 read literally (:class:`FixedNoise`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .. import verdicts
from ..purifiers import Purifier


def _check(preds: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    preds, labels = np.asarray(preds), np.asarray(labels)
    if preds.ndim != 2 or preds.shape[0] < 1:
        raise ValueError(f"preds: expected an int array (r, n) with r >= 1, got shape "
                         f"{preds.shape}")
    if labels.shape != (preds.shape[1],):
        raise ValueError(f"labels: expected shape ({preds.shape[1]},) to match preds "
                         f"{preds.shape}, got {labels.shape}")
    if not (np.issubdtype(preds.dtype, np.integer) and np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"preds and labels: expected integer class indices, got "
                         f"{preds.dtype} and {labels.dtype}")
    for name, a in (("preds", preds), ("labels", labels)):
        if a.size and a.min() < 0:
            raise ValueError(f"{name}: expected class indices >= 0, got {a.min()}")
    return preds, labels


def _check_grades(grades: np.ndarray) -> np.ndarray:
    grades = np.asarray(grades, dtype=float)
    if grades.ndim != 1 or not np.all((grades >= 0) & (grades <= 1)):
        raise ValueError("grades: expected a 1-D array of values in [0, 1]")
    return grades


def grades(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Definition 1: the fraction of the r runs whose prediction differs from the label, (n,)."""
    preds, labels = _check(preds, labels)
    return (preds != labels[None, :]).mean(axis=0)


def robust_fraction(grades: np.ndarray, alpha: float) -> float:
    """The fraction of examples with grade < alpha: those that are not alpha-fuzzy adversarial
    (Definition 2); Table 1's "alpha = 0.5" column at alpha = 0.5."""
    g = _check_grades(grades)
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha: expected a value in (0, 1], got {alpha!r}")
    return float((g < alpha).mean())


def cfr(grades: np.ndarray, alphas: Sequence[float] | np.ndarray) -> np.ndarray:
    """Cumulative fuzzy robustness (sec. 4.2, Fig. 3c): :func:`robust_fraction` at each alpha.

    Non-decreasing in alpha; 1 everywhere for a perfectly robust system, 0 for an
    entirely non-robust one, a step at its accuracy for a deterministic one.
    """
    return np.array([robust_fraction(grades, float(a)) for a in np.asarray(alphas).ravel()])


def non_adversarial(grades: np.ndarray) -> float:
    """The fraction with grade == 0: never fooled in any run (Table 1, "m = 0")."""
    return float((_check_grades(grades) == 0).mean())


def full_adversarial(grades: np.ndarray) -> float:
    """The fraction with grade == 1: fooled in every run (Table 1, "m = 1")."""
    return float((_check_grades(grades) == 1).mean())


def fooled(grades: np.ndarray) -> np.ndarray:
    """Per example, whether it fools the system in some run (grade m > 0): an adversarial
    example in the classical sense, the attack having succeeded at least once."""
    return _check_grades(grades) > 0


def strictly_fuzzy(grades: np.ndarray) -> np.ndarray:
    """Per example, whether its grade lies strictly between 0 and 1: it fools some runs but
    not all (Definition 1; sec. 1, "most of the traditionally believed adversarial examples
    are fuzzy in nature")."""
    g = _check_grades(grades)
    return (g > 0) & (g < 1)


def standard_robustness(preds: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy of each single run: (mean, standard deviation) over the r runs (Table 1).

    The standard deviation is numpy's (ddof = 0, the spread of the r runs themselves).
    """
    preds, labels = _check(preds, labels)
    acc = (preds == labels[None, :]).mean(axis=1)
    return float(acc.mean()), float(acc.std())


def _vote_counts(preds: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n) votes per class of each column of ``preds`` (k, n)."""
    counts = np.zeros((n_classes, preds.shape[1]), dtype=np.int64)
    np.add.at(counts, (preds, np.arange(preds.shape[1])[None, :]), 1)
    return counts


def majority_vote(preds: np.ndarray, n_classes: int | None = None, seed: int = 0) -> np.ndarray:
    """The most frequent prediction of each column of ``preds`` (k, n).

    A tie is broken uniformly at random among the tied classes, with a generator
    seeded by ``seed`` (reproducible). Breaking ties to the smallest class index
    would favour low classes, a bias by class at even k (k = 10, k = 100).
    """
    preds = np.asarray(preds)
    n_classes = n_classes or int(preds.max()) + 1
    counts = _vote_counts(preds, n_classes)
    top = counts == counts.max(axis=0, keepdims=True)
    keys = np.random.default_rng(seed).random(counts.shape)
    return np.where(top, keys, -1.0).argmax(axis=0)


def vote_accuracy_per_image(preds: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per example: the mean over the floor(r / k) disjoint groups of k runs (in order) of its
    majority vote being right, (n,). A tie among m classes that include the label counts 1/m
    correct: the exact expectation of breaking the tie at random (:func:`majority_vote`),
    without a seed's luck and without favouring a class. The paper does not say how it
    breaks ties."""
    preds, labels = _check(preds, labels)
    r = preds.shape[0]
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= r):
        raise ValueError(f"k: expected an int in 1..r = 1..{r}, got {k!r}")
    n_classes = int(max(preds.max(), labels.max())) + 1
    right = []
    for g in range(r // k):
        counts = _vote_counts(preds[g * k:(g + 1) * k], n_classes)
        top = counts == counts.max(axis=0, keepdims=True)
        right.append(top[labels, np.arange(len(labels))] / top.sum(axis=0))
    return np.mean(right, axis=0)


def majority_vote_accuracy(preds: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Majority-vote accuracy with groups of k runs (Table 1, "k = 10", "k = 100"): the mean
    over examples of :func:`vote_accuracy_per_image`."""
    return float(vote_accuracy_per_image(preds, labels, k).mean())


def summary(preds: np.ndarray, labels: np.ndarray, alpha: float = 0.5,
            ks: Sequence[int] = (10, 100)) -> dict[str, float]:
    """One row of Table 1, in percent; a vote with k > r is NaN."""
    g = grades(preds, labels)
    mean, std = standard_robustness(preds, labels)
    row = {"standard": 100 * mean, "standard_std": 100 * std,
           "m=0": 100 * non_adversarial(g), "m=1": 100 * full_adversarial(g),
           f"alpha={alpha:g}": 100 * robust_fraction(g, alpha)}
    for k in ks:
        row[f"k={k}"] = (100 * majority_vote_accuracy(preds, labels, k)
                         if k <= preds.shape[0] else float("nan"))
    return row


def table(preds: dict[str, np.ndarray], labels: np.ndarray, alpha: float = 0.5,
          ks: Sequence[int] = (10, 100)) -> pd.DataFrame:
    """Table 1's columns (percent) for each source: ``{"clean": preds, "bpda": preds, ...}``.

    Columns: standard robustness mean and std over runs, m = 0, m = 1, the alpha
    cut, and the majority vote for each k; one row per source, in the given order.
    """
    return pd.DataFrame({name: summary(p, labels, alpha, ks) for name, p in preds.items()}).T


def worst_of_n(preds: np.ndarray, labels: np.ndarray, n: int) -> float:
    """Accuracy under N-evaluation (DiffHammer, Wang et al. 2024): an example counts as
    robust only if all ``n`` of n independent runs classify it correctly.

    Estimated from the r >= n stored runs as the mean over every n-subset of them:
    an example right in c of r runs is robust in C(c, n) / C(r, n) of the subsets
    (unbiased; n = r is Table 1's m = 0 column, n = 1 the mean standard robustness).
    Counting convention "evaluated after optimising": the attack is finished before the
    n runs, whose seeds it never saw; DiffHammer's "while optimising" would also let it
    resubmit after seeing them.
    """
    return float(worst_of_n_per_image(preds, labels, n).mean())


def worst_of_n_per_image(preds: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Per example, its robustness under N-evaluation (:func:`worst_of_n`): C(c, n) / C(r, n)
    for an example right in c of the r runs, (n_examples,)."""
    preds, labels = _check(preds, labels)
    r = preds.shape[0]
    if not (isinstance(n, (int, np.integer)) and 1 <= n <= r):
        raise ValueError(f"n: expected an int in 1..r = 1..{r}, got {n!r}")
    right = (preds == labels[None, :]).sum(axis=0)
    return np.array([math.comb(int(c), n) / math.comb(r, n) for c in right])


def worst_case(preds: dict[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Per example, the runs (r, n) of the attack with the highest grade among ``preds``
    (``{"pgd-eot": preds, ...}``, all with the same r): the worst case over attacks, as
    AutoAttack's ensemble counts an example broken if any attack breaks it. Ties go to
    the first attack. The grades judge the same runs that chose the attack, so this row
    slightly favours the attacker."""
    if not preds:
        raise ValueError("preds: expected at least one attack")
    stack = np.stack([_check(p, labels)[0] for p in preds.values()])  # (attacks, r, n)
    worst = np.argmax([grades(p, labels) for p in stack], axis=0)
    return stack[worst, :, np.arange(stack.shape[2])].T


def per_image_accuracy(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per example, the fraction of the r runs of ``preds`` (r, n) that classify it right: (n,)."""
    return (preds == labels[None, :]).mean(axis=0)


def summarise(per_image: np.ndarray) -> dict[str, float]:
    """Accuracy (percent) with its 95 % bootstrap interval over images."""
    e = verdicts.mean(per_image)
    return {"accuracy": 100 * e.value, "low": 100 * e.lo, "high": 100 * e.hi}


def fixed_noise_t(t_star: int, paper_t: int, paper_t_star: int) -> int:
    """The t of the fixed-noise experiment in a world with ``t_star``: the paper's ratio
    ``paper_t / paper_t_star`` (CIFAR-10: 150 / 100) times ``t_star``, rounded, at least 1."""
    for name, v in (("t_star", t_star), ("paper_t", paper_t), ("paper_t_star", paper_t_star)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    return max(1, round(t_star * paper_t / paper_t_star))


class FixedNoise:
    """A purifier whose noise is fixed: every call draws with base seed ``seed`` (eq. 9;
    appendix B, "Fixing randomness in diffusion models").

    The ``base_seeds`` a caller passes (an attack's EOT seeds, say) only say how many
    seed-major chunks the rows hold; each chunk is purified with ``seed``, so it gets
    exactly the noise it would get alone. Without gradients, equal chunks (EOT copies of
    one iterate) are purified once and repeated: the same result (up to the float rounding
    of batched kernels), one chunk's cost.
    """

    def __init__(self, purifier: Purifier, seed: int):
        if not (isinstance(seed, int) and seed >= 0):
            raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
        self.purifier, self.seed, self.model = purifier, seed, purifier.model

    def __repr__(self) -> str:
        return f"FixedNoise({self.purifier!r}, seed={self.seed})"

    def __call__(self, x: Tensor, base_seeds: int | Sequence[int] = 0, batch_index: int = 0,
                 grad: bool = False) -> Tensor:
        k = 1 if isinstance(base_seeds, int) else len(base_seeds)
        if k > 1 and not grad and len(x) % k == 0:
            chunks = x.chunk(k)
            if all(torch.equal(chunks[0], c) for c in chunks[1:]):
                return self.purifier(chunks[0], self.seed, batch_index).repeat(k, 1, 1, 1)
        return self.purifier(x, [self.seed] * k, batch_index, grad=grad)


def accuracy_row(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy in percent of predictions (n,) or (r, n) (mean over runs) with its 95 %
    interval over the n images: Wilson's for one run, a bootstrap of the per-image accuracy
    for several."""
    preds = np.atleast_2d(preds)
    if preds.shape[1] != len(labels):
        raise ValueError(f"preds: expected {len(labels)} columns (one per image), got "
                         f"{preds.shape[1]}")
    right = per_image_accuracy(preds, labels)
    e = verdicts.proportion(right > 0.5) if len(preds) == 1 else verdicts.mean(right)
    return {"ours": 100 * e.value, "low": 100 * e.lo, "high": 100 * e.hi}
