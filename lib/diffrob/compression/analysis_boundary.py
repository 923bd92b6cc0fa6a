"""Sec. 6, Fig. 6: what separates robust from non-robust examples under one fixed randomness.

- :func:`critical_threshold`: the distance from a point to the classifier's decision
  boundary along a given ray;
- :func:`gamma_direction`: the classifier's own adversarial direction at f(x0), sec. 5's
  untargeted PGD on the classifier alone, along which :func:`critical_threshold` measures
  the critical threshold gamma of Assumption 2 / App. A.1 (Fig. 6b);
- :func:`robust_factors`: gamma, the purified attack length (Fig. 6c) and the decisions of
  each example; :func:`roc`: the ROC curve of a score (Fig. 6; its AUC with an interval is
  :func:`diffrob.verdicts.auc`);
- :func:`rule_agreement`: Fig. 6a's rule against the base rate; :func:`length_ratios` and
  :func:`compress_expand`: the purified attack over the attack, robust against non-robust
  examples (sec. 6: 65.5 % vs 104.9 %).

Adversarial examples and directions are arguments, so nothing here depends on a particular
attack; the classifier is any map of images to logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .. import verdicts
from ..attacks import pgd


@torch.no_grad()
def critical_threshold(classifier: nn.Module | Callable[[Tensor], Tensor], start: Tensor,
                       direction: Tensor, labels: Tensor, max_dist: float = 5.0,
                       grid: int = 50, tol: float = 1e-4, points_per_call: int = 256) -> Tensor:
    """Sec. 6 (Fig. 6b): l2 distance from ``start`` along ``direction`` at which the decision flips.

    For each row, the smallest r in [0, ``max_dist``] with
    ``classifier(start + r u).argmax() != label`` (u = direction / ||direction||):
    a grid of ``grid`` steps finds the first wrong point, bisection refines it
    to ``tol``. ``inf`` where no flip happens up to ``max_dist`` (or the
    direction is zero); 0 where ``start`` itself is misclassified. Points are
    not clipped to [0,1] (a distance of 5 leaves the image box). In sec. 6,
    start = f(x0) and direction = f(x_adv) - f(x0).

    The grid is walked outwards, several radii of the rows not yet flipped in one call of
    about ``points_per_call`` points (the same points as one radius at a time, far fewer
    calls), and stops when every row has flipped.
    """
    if start.shape != direction.shape or start.shape[0] != labels.shape[0]:
        raise ValueError(f"start {tuple(start.shape)}, direction {tuple(direction.shape)} and "
                         f"labels {tuple(labels.shape)} must agree")
    if max_dist <= 0 or grid < 1 or tol <= 0 or points_per_call < 1:
        raise ValueError(f"expected max_dist > 0, grid >= 1, tol > 0, points_per_call >= 1, "
                         f"got {max_dist}, {grid}, {tol}, {points_per_call}")
    norm = direction.flatten(1).norm(dim=1)
    u = direction / norm.clamp_min(1e-30).view(-1, *[1] * (direction.ndim - 1))
    ones = [1] * (start.ndim - 1)

    def wrong(r: Tensor, rows: Tensor) -> Tensor:
        """Whether ``start[rows[j]] + r[j] u[rows[j]]`` is misclassified, for each j."""
        x = start[rows] + r.view(-1, *ones).to(start.dtype) * u[rows]
        return classifier(x).argmax(1) != labels[rows]

    n, device = start.shape[0], start.device
    radii = torch.linspace(0, max_dist, grid + 1, device=device, dtype=torch.float64)
    first = torch.full((n,), -1, dtype=torch.long, device=device)
    first[wrong(radii[0].expand(n), torch.arange(n, device=device))] = 0
    first[(norm == 0) & (first < 0)] = grid + 1  # a zero direction never flips
    g = 1
    while g <= grid:
        rows = torch.nonzero(first < 0).flatten()
        if not len(rows):
            break
        steps = torch.arange(g, min(grid + 1, g + max(1, points_per_call // len(rows))),
                             device=device)
        flags = wrong(radii[steps].repeat_interleave(len(rows)), rows.repeat(len(steps)))
        flags = flags.view(len(steps), len(rows))
        hit = flags.any(0)
        first[rows[hit]] = steps[flags.float().argmax(0)[hit]]
        g += len(steps)
    out = torch.full((n,), math.inf, dtype=torch.float64, device=device)
    out[first == 0] = 0.0
    rows = torch.nonzero((first > 0) & (first <= grid)).flatten()
    if len(rows):
        lo, hi = radii[first[rows] - 1], radii[first[rows]]
        for _ in range(max(0, math.ceil(math.log2((max_dist / grid) / tol)))):
            mid = (lo + hi) / 2
            w = wrong(mid, rows)
            hi, lo = torch.where(w, mid, hi), torch.where(w, lo, mid)
        out[rows] = hi
    return out


def gamma_direction(classifier: nn.Module | Callable[[Tensor], Tensor], start: Tensor,
                    labels: Tensor, eps: float, steps: int, step_size: float,
                    generator: torch.Generator) -> Tensor:
    """The direction of the critical threshold gamma at ``start`` (sec. 6, Fig. 6b; in sec. 6
    start = f(x0)): the untargeted Linf PGD of sec. 5 on the classifier alone (random start
    from ``generator``), its perturbation. Not the shortest way to the boundary (DeepFool's
    would be, and "shorter than the shortest distance, hence robust" would hold by
    construction): an attack's own direction, as sec. 5 slices along."""
    with torch.enable_grad():
        x = pgd(classifier, start.detach(), labels, eps, steps, step_size, True, generator)
    return x - start


@dataclass(frozen=True)
class RobustFactors:
    """Per example: decisions on the purified clean and adversarial images, sec. 6's factors."""

    clean_correct: Tensor   # classifier(f(x0)) == y
    robust: Tensor          # classifier(f(x_adv)) == y
    critical: Tensor        # gamma: boundary distance at f(x0) along g's PGD direction, Fig. 6b
    ray: Tensor             # boundary distance along the purified attack's own ray (circular)
    length: Tensor          # purified attack length ||f(x_adv) - f(x0)||, Fig. 6c
    attack_length: Tensor   # ||x_adv - x0||


@torch.no_grad()
def robust_factors(classifier: nn.Module | Callable[[Tensor], Tensor], x0: Tensor, x_adv: Tensor,
                   clean_purified: Tensor, adv_purified: Tensor, labels: Tensor,
                   direction: Tensor, max_dist: float, grid: int) -> RobustFactors:
    """Fig. 6: what separates robust from non-robust examples under one fixed randomness.

    An example is robust if the classifier is right on the purified adversarial
    image f(x_adv). The critical threshold gamma is :func:`critical_threshold` at f(x0)
    along ``direction``, the classifier's own adversarial direction there
    (:func:`gamma_direction`), searched on ``grid`` steps to ``max_dist``. ``ray`` is the
    boundary distance along the purified attack f(x_adv) - f(x0) itself: there an example is robust
    exactly when its purified attack is shorter than ``ray`` (up to decision regions
    that are not convex along the ray), by construction, so ``ray`` separates the
    two groups almost perfectly whatever the purifier does and is no evidence.
    """
    d = adv_purified - clean_purified
    return RobustFactors(
        clean_correct=classifier(clean_purified).argmax(1) == labels,
        robust=classifier(adv_purified).argmax(1) == labels,
        critical=critical_threshold(classifier, clean_purified, direction, labels, max_dist,
                                    grid),
        ray=critical_threshold(classifier, clean_purified, d, labels, max_dist, grid),
        length=d.flatten(1).norm(dim=1).double(),
        attack_length=(x_adv - x0).flatten(1).norm(dim=1).double())


def roc(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """ROC curve of ``scores`` (higher = positive) for the boolean ``positive`` (Fig. 6).

    Returns (false positive rates, true positive rates), the curve from (0, 0) to (1, 1)
    through every distinct threshold; its area, the Mann-Whitney probability that a
    positive outscores a negative (ties count one half), is :func:`diffrob.verdicts.auc`.
    Infinite scores (no flip found) are allowed.
    """
    s, pos = scores.double().flatten().cpu(), positive.bool().flatten().cpu()
    if s.shape != pos.shape:
        raise ValueError(f"scores {tuple(s.shape)} and positive {tuple(pos.shape)} must agree")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc: needs both classes, got {n_pos} positive and {n_neg} negative")
    thresholds = torch.unique(s).flip(0)
    tpr = torch.stack([(s[pos] >= t).sum() for t in thresholds]).double() / n_pos
    fpr = torch.stack([(s[~pos] >= t).sum() for t in thresholds]).double() / n_neg
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([zero, fpr]), torch.cat([zero, tpr])


def rule_agreement(robust: Tensor, critical: Tensor, length: Tensor) -> verdicts.Estimate:
    """Fig. 6a's rule against the base rate: the share of examples whose robustness "purified
    attack length < critical threshold" gets right, minus the share that naming the majority
    class gets right, on the same examples (:func:`diffrob.verdicts.paired_proportions`).
    Above 0: the rule beats always guessing the more frequent outcome."""
    robust = robust.bool().cpu()
    rule = robust == (length.cpu() < critical.cpu())
    majority = robust if 2 * int(robust.sum()) >= len(robust) else ~robust
    return verdicts.paired_proportions(rule, majority)


def _ratios(length: np.ndarray, attack: np.ndarray, robust: np.ndarray) -> tuple:
    """R_robust, R_non-robust per resample row: mean purified over mean attack length."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((length * robust).sum(-1) / (attack * robust).sum(-1),
                (length * (1 - robust)).sum(-1) / (attack * (1 - robust)).sum(-1))


def length_ratios(length: Tensor, attack_length: Tensor,
                  robust: Tensor) -> dict[str, verdicts.Estimate]:
    """Sec. 6 (Fig. 6c): mean ||f(x_adv) - f(x0)|| over mean ||x_adv - x0|| of the robust and of
    the non-robust examples (the paper's 0.76 / 1.16 and 1.29 / 1.23), and their difference,
    non-robust minus robust; bootstrap over the examples (NaN where a group is empty)."""
    samples = (length, attack_length, robust.double())
    return {"robust": verdicts.bootstrap(lambda a, b, r: _ratios(a, b, r)[0], *samples,
                                         method="bootstrap, ratio of means"),
            "non-robust": verdicts.bootstrap(lambda a, b, r: _ratios(a, b, r)[1], *samples,
                                             method="bootstrap, ratio of means"),
            "difference": verdicts.bootstrap(lambda a, b, r: np.subtract(*_ratios(a, b, r)[::-1]),
                                             *samples, method="bootstrap, difference of ratios")}


def compress_expand(length: Tensor, attack_length: Tensor, robust: Tensor) -> verdicts.Estimate:
    """Sec. 6: robust examples' purified attacks compressed (R_robust < 1) *and* non-robust ones'
    expanded (R_non-robust > 1) as one statistic, min(1 - R_robust, R_non-robust - 1) with the R
    of :func:`length_ratios`: above 0 exactly when both hold; bootstrap over the examples."""
    def stat(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
        rob, non = _ratios(a, b, r)
        return np.minimum(1 - rob, non - 1)
    return verdicts.bootstrap(stat, length, attack_length, robust.double(),
                              method="bootstrap, min(1 - R_robust, R_non-robust - 1)")
