"""Statistics with their uncertainty and power, and verdicts against criteria from ``paper_data``.

Every claim the book checks is a statistic of per-image data (or per-slice, per-sample
data), an interval for it, and a criterion read from ``paper_data``.
The intervals:

- a fraction of successes: Wilson's score interval (Wilson 1927); the difference of two
  yes/no outcomes on the same images: Newcombe's paired interval (1998, method 10);
- anything else (means, ratios of means, paired differences, ROC AUCs): the
  percentile bootstrap over images, ``N_RESAMPLES`` resamples from a fixed seed. Several
  arrays passed together are resampled with the *same* image indices (a paired
  comparison: "A is stronger than B" on the same images). The AUC resamples positives
  and negatives separately (stratified), so every resample has both classes.

A verdict compares the interval, not the point value, with the criterion:

- ``above t``: holds when the whole interval is above t, does not hold when the whole
  interval is at or below t, and is inconclusive when the interval straddles t;
- ``below t``: the mirror image;
- ``within [lo, hi]``: holds when the interval lies inside, does not hold when it lies
  entirely outside, inconclusive otherwise.

A claim with several parts (every attack, every sampler) holds when every part holds and
does not hold as soon as one part does not hold.

Power. An interval of half-width h at ``LEVEL`` 0.95 has standard error SE = h / z_0.975;
its minimum detectable effect at 80 % power is MDE = (z_0.975 + z_0.80) SE = 2.80 SE, the
distance from a criterion's bar at which the interval clears the bar in 80 % of data sets
(:func:`mde`). SE shrinks as 1 / sqrt(n), so detecting an effect e takes about
n (MDE / e)^2 units (:func:`n_needed`). A verdict that is not decided while the MDE is
larger than the effect the claim tests (the paper's distance from the bar) is
**underpowered** rather than inconclusive (:func:`powered`): at this n the test could not
have seen the paper's effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from scipy import stats

LEVEL = 0.95          # two-sided confidence level of every interval
N_RESAMPLES = 2000    # bootstrap resamples
SEED = 0              # bootstrap seed: the same data always get the same interval

POWER = 0.80         # the power at which the minimum detectable effect is stated

HOLDS, FAILS, INCONCLUSIVE, NOT_TESTED = "holds", "does not hold", "inconclusive", "not tested"
UNDERPOWERED = "underpowered"   # not decided, and the MDE exceeds the effect the claim tests
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, UNDERPOWERED, NOT_TESTED)
KINDS = ("above", "below", "within")


@dataclass(frozen=True)
class Estimate:
    """A statistic and its ``LEVEL`` interval [lo, hi] from ``n`` units by ``method``."""

    value: float
    lo: float
    hi: float
    n: int
    method: str

    def text(self, scale: float = 1.0, unit: str = "", digits: int = 3) -> str:
        """``value [lo, hi] unit``, each multiplied by ``scale`` (100 for percent)."""
        f = lambda v: f"{scale * v:.{digits}g}" if math.isfinite(v) else f"{v}"
        return f"{f(self.value)} [{f(self.lo)}, {f(self.hi)}]{unit}"

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n,
                "method": self.method}


def _array(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim == 0 or len(a) == 0:
        raise ValueError(f"{name}: expected a non-empty array over images, got shape {a.shape}")
    return a


def wilson(successes: int, n: int, level: float = LEVEL) -> Estimate:
    """The fraction successes / n with Wilson's score interval."""
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n: expected a positive int, got {n!r}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes: expected 0..n = 0..{n}, got {successes!r}")
    z = stats.norm.ppf(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n, "Wilson")


def proportion(flags: Any) -> Estimate:
    """The fraction of true ``flags`` (one per image or slice), Wilson interval."""
    a = _array(flags, "flags")
    return wilson(int(np.count_nonzero(a)), len(a))


def proportion_among(flags: Any, among: Any) -> Estimate:
    """The fraction of true ``flags`` among the units where ``among`` is true (a conditional
    fraction, Wilson interval over those units); with no such unit it is undefined (NaN, an
    infinite interval: the claim is then not tested)."""
    a, b = _array(flags, "flags").astype(bool), _array(among, "among").astype(bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"flags and among must cover the same units, got shapes {a.shape}, "
                         f"{b.shape}")
    if not b.any():
        return Estimate(math.nan, -math.inf, math.inf, 0, "Wilson")
    return wilson(int(np.count_nonzero(a & b)), int(np.count_nonzero(b)))


def paired_proportions(a: Any, b: Any, level: float = LEVEL) -> Estimate:
    """P(a) - P(b) of two yes/no outcomes on the same images, Newcombe's interval.

    Newcombe (1998), "Improved confidence intervals for the difference between binomial
    proportions based on paired data", method 10: Wilson intervals of both margins,
    combined with the phi correlation of the 2 x 2 table. Unlike a bootstrap it stays
    honest when no image disagrees (then the bootstrap interval collapses to 0).
    """
    x, y = _array(a, "a").astype(bool), _array(b, "b").astype(bool)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired outcomes must cover the same images, got shapes {x.shape}, "
                         f"{y.shape}")
    n = len(x)
    both, only_a = int((x & y).sum()), int((x & ~y).sum())
    only_b, neither = int((~x & y).sum()), int((~x & ~y).sum())
    p1, p2 = wilson(both + only_a, n, level), wilson(both + only_b, n, level)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins else 0.0
    d = p1.value - p2.value
    lo = d - math.sqrt(max(0.0, (p1.value - p1.lo) ** 2 - 2 * phi * (p1.value - p1.lo)
                           * (p2.hi - p2.value) + (p2.hi - p2.value) ** 2))
    hi = d + math.sqrt(max(0.0, (p1.hi - p1.value) ** 2 - 2 * phi * (p1.hi - p1.value)
                           * (p2.value - p2.lo) + (p2.value - p2.lo) ** 2))
    return Estimate(d, lo, hi, n, "Newcombe paired difference")


def bootstrap(statistic: Callable[..., np.ndarray], *samples: Any, method: str = "bootstrap",
              n_resamples: int = N_RESAMPLES, seed: int = SEED, level: float = LEVEL) -> Estimate:
    """Percentile bootstrap of ``statistic`` over the first axis (images) of ``samples``.

    ``statistic`` takes the samples with a leading resample axis, images on axis 1,
    and returns one value per resample. All samples are resampled with the same
    indices (paired). With fewer than 2 images the interval is (-inf, inf).
    """
    arrays = [_array(s, f"sample {i}") for i, s in enumerate(samples)]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"paired samples must cover the same images, got lengths "
                         f"{[len(a) for a in arrays]}")
    value = float(statistic(*(a[None] for a in arrays))[0])
    if n < 2 or not math.isfinite(value):
        return Estimate(value, -math.inf, math.inf, n, method)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    draws = np.asarray(statistic(*(a[idx] for a in arrays)), dtype=np.float64)
    lo, hi = np.nanpercentile(draws, [50 * (1 - level), 50 * (1 + level)])
    return Estimate(value, float(lo), float(hi), n, method)


def mean(x: Any) -> Estimate:
    """The mean over images, bootstrap interval."""
    return bootstrap(lambda a: a.mean(axis=1), x, method="bootstrap mean")


def ratio_of_means(numerator: Any, denominator: Any) -> Estimate:
    """mean(numerator) / mean(denominator) over the same images, paired bootstrap."""
    return bootstrap(lambda a, b: a.mean(axis=1) / b.mean(axis=1), numerator, denominator,
                     method="paired bootstrap, ratio of means")


def paired_difference(a: Any, b: Any) -> Estimate:
    """mean(a - b) over the same images, paired bootstrap (A above B: the interval above 0)."""
    return bootstrap(lambda x, y: (x - y).mean(axis=1), a, b,
                     method="paired bootstrap, mean difference")


def _auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC per row of (resamples, n_pos) and (resamples, n_neg); ties 1/2."""
    ranks = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    n_pos, n_neg = pos.shape[1], neg.shape[1]
    return (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auc(scores: Any, positive: Any, n_resamples: int = N_RESAMPLES, seed: int = SEED,
        level: float = LEVEL) -> Estimate:
    """ROC AUC of ``scores`` (higher = positive) for boolean ``positive``, stratified bootstrap.

    Infinite scores are allowed (ranked last or first). With one class missing the AUC
    is undefined: NaN with an infinite interval (the claim is then not tested).
    """
    s, pos = _array(scores, "scores"), _array(positive, "positive").astype(bool)
    if s.shape != pos.shape:
        raise ValueError(f"scores {s.shape} and positive {pos.shape} must agree")
    p, q = s[pos], s[~pos]
    n = len(s)
    if len(p) == 0 or len(q) == 0:
        return Estimate(math.nan, -math.inf, math.inf, n, "stratified bootstrap, AUC")
    value = float(_auc(p[None], q[None])[0])
    rng = np.random.default_rng(seed)
    draws = _auc(p[rng.integers(0, len(p), (n_resamples, len(p)))],
                 q[rng.integers(0, len(q), (n_resamples, len(q)))])
    lo, hi = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)])
    return Estimate(value, float(lo), float(hi), n, "stratified bootstrap, AUC")


# --- verdicts: one function per kind of criterion ------------------------------------

def _untestable(est: Estimate) -> bool:
    return not math.isfinite(est.value)


def above(est: Estimate, threshold: float) -> str:
    """The statistic is above ``threshold``."""
    if _untestable(est):
        return NOT_TESTED
    return HOLDS if est.lo > threshold else FAILS if est.hi <= threshold else INCONCLUSIVE


def below(est: Estimate, threshold: float) -> str:
    """The statistic is below ``threshold``."""
    if _untestable(est):
        return NOT_TESTED
    return HOLDS if est.hi < threshold else FAILS if est.lo >= threshold else INCONCLUSIVE


def within(est: Estimate, lo: float, hi: float) -> str:
    """The statistic lies in [lo, hi]."""
    if not lo <= hi:
        raise ValueError(f"within: expected lo <= hi, got [{lo}, {hi}]")
    if _untestable(est):
        return NOT_TESTED
    if lo <= est.lo and est.hi <= hi:
        return HOLDS
    return FAILS if est.hi < lo or est.lo > hi else INCONCLUSIVE


def all_of(verdicts: Iterable[str]) -> str:
    """A claim with parts: holds if all hold, does not hold if any does not; otherwise
    underpowered if an undecided part is, else inconclusive.

    Parts that could not be tested are left out; with none left the claim is not tested.
    """
    tested = [v for v in verdicts if v != NOT_TESTED]
    if not tested:
        return NOT_TESTED
    if FAILS in tested:
        return FAILS
    if all(v == HOLDS for v in tested):
        return HOLDS
    return UNDERPOWERED if UNDERPOWERED in tested else INCONCLUSIVE


# --- power: the minimum detectable effect of an interval ------------------------------

def _z(p: float) -> float:
    return float(stats.norm.ppf(p))


def mde(est: Estimate, level: float = LEVEL, power: float = POWER) -> float:
    """The minimum detectable effect of ``est``'s interval at ``power`` (80 %).

    The interval's half-width h at ``level`` (0.95) gives SE = h / z_{(1 + level) / 2}; an
    effect of (z_{(1 + level) / 2} + z_power) SE from a bar is detected (the interval clears
    the bar) with probability ``power`` (normal approximation). For an asymmetric interval
    (Wilson, percentile bootstrap) h is half its width; an infinite interval has an infinite
    MDE.
    """
    half = (est.hi - est.lo) / 2
    if not math.isfinite(half):
        return math.inf
    z = _z(0.5 + level / 2)
    return (z + _z(power)) * half / z


def n_needed(est: Estimate, effect: float | None, level: float = LEVEL,
             power: float = POWER) -> float | None:
    """The number of units (images, slices) at which :func:`mde` equals ``effect``:
    n (MDE / effect)^2, since SE falls as 1 / sqrt(n). ``None`` when the effect is unknown
    (the paper gives no number); infinite with an infinite interval."""
    if effect is None:
        return None
    if not (isinstance(effect, (int, float)) and not isinstance(effect, bool) and effect > 0):
        raise ValueError(f"effect: expected a number > 0 or None, got {effect!r}")
    return est.n * (mde(est, level, power) / effect) ** 2


def powered(verdict: str, est: Estimate, effect: float | None) -> str:
    """``verdict``, or :data:`UNDERPOWERED` when it is inconclusive and the MDE of ``est``
    exceeds ``effect`` (the paper's distance from the bar; ``None``: unknown, left as is)."""
    if verdict == INCONCLUSIVE and effect is not None and mde(est) > effect:
        return UNDERPOWERED
    return verdict


def check_criterion(criterion: Any, where: str) -> dict[str, Any]:
    """``criterion`` as a validated mapping, or a ``ValueError`` naming ``where``."""
    if not isinstance(criterion, Mapping) or criterion.get("kind") not in KINDS:
        raise ValueError(f"{where}: criterion must be a mapping with kind one of {list(KINDS)}, "
                         f"got {criterion!r}")
    needs = ("lo", "hi") if criterion["kind"] == "within" else ("threshold",)
    for key in needs:
        value = criterion.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}: criterion {criterion['kind']} needs a finite number "
                             f"'{key}', got {value!r}")
    if set(criterion) - {"kind", *needs}:
        raise ValueError(f"{where}: unknown criterion keys {sorted(set(criterion) - {'kind', *needs})}")
    if criterion["kind"] == "within" and not criterion["lo"] <= criterion["hi"]:
        raise ValueError(f"{where}: criterion within needs lo <= hi, got {criterion}")
    return dict(criterion)


def decide(criterion: Mapping[str, Any], est: Estimate) -> str:
    """The verdict of ``est`` under a criterion mapping from ``paper_data``."""
    c = check_criterion(criterion, "criterion")
    if c["kind"] == "within":
        return within(est, c["lo"], c["hi"])
    return (above if c["kind"] == "above" else below)(est, c["threshold"])


def describe(criterion: Mapping[str, Any], scale: float = 1.0, unit: str = "") -> str:
    """The criterion in words, in the unit the claim is shown in."""
    c = check_criterion(criterion, "criterion")
    f = lambda v: f"{scale * v:.4g}"
    if c["kind"] == "within":
        return f"within [{f(c['lo'])}, {f(c['hi'])}]{unit}"
    return f"{c['kind']} {f(c['threshold'])}{unit}"
