"""Verdicts: intervals that cover, and decisions on both sides of every criterion."""

import math

import numpy as np
import pytest

from diffrob import verdicts as v
from diffrob.verdicts import FAILS, HOLDS, INCONCLUSIVE, NOT_TESTED, UNDERPOWERED, Estimate


def est(lo, hi, value=None):
    return Estimate((lo + hi) / 2 if value is None else value, lo, hi, 100, "test")


# --- intervals ----------------------------------------------------------------------

def test_wilson_matches_the_textbook_values():
    # Wilson 95 % interval of 8 / 10 (Newcombe 1998, Table I, method 3): 0.4902-0.9433.
    e = v.wilson(8, 10)
    assert e.value == 0.8 and e.lo == pytest.approx(0.4902, abs=1e-4)
    assert e.hi == pytest.approx(0.9433, abs=1e-4)
    zero = v.wilson(0, 20)
    assert zero.lo == 0 and 0 < zero.hi < 0.2
    assert v.proportion([True, False, True, True]) == v.wilson(3, 4)


@pytest.mark.parametrize("successes, n", [(-1, 5), (6, 5), (0, 0)])
def test_wilson_rejects_impossible_counts(successes, n):
    with pytest.raises(ValueError, match="successes|n:"):
        v.wilson(successes, n)


def test_bootstrap_mean_covers_the_truth_and_is_reproducible():
    x = np.random.default_rng(1).normal(3.0, 1.0, 400)
    e = v.mean(x)
    assert e.value == pytest.approx(x.mean())
    assert e.lo < 3.0 < e.hi and e.hi - e.lo == pytest.approx(2 * 1.96 / 20, rel=0.25)
    assert v.mean(x) == e                          # fixed seed: the same interval
    assert v.mean(x[:1]).lo == -math.inf           # one image: no interval at all


def test_paired_difference_sees_a_small_shift_that_unpaired_noise_would_hide():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 10, 200)                  # large per-image spread
    a, b = base + 0.5 + rng.normal(0, 0.1, 200), base
    assert v.above(v.paired_difference(a, b), 0) == HOLDS
    assert v.above(v.paired_difference(b, a), 0) == FAILS
    with pytest.raises(ValueError, match="same images"):
        v.paired_difference(a, b[:-1])


def test_ratio_of_means():
    den = np.random.default_rng(3).uniform(1, 2, 300)
    r = v.ratio_of_means(3 * den, den)
    assert r.value == pytest.approx(3) and r.hi - r.lo < 1e-9


def test_proportion_among_counts_only_the_selected_units():
    flags = np.array([True, False, True, True, False, True])
    among = np.array([True, True, False, True, False, False])   # units 0, 1, 3: 2 of 3 flagged
    assert v.proportion_among(flags, among) == v.wilson(2, 3)
    none = v.proportion_among(flags, np.zeros(6, bool))
    assert none.n == 0 and v.above(none, 0.5) == NOT_TESTED
    with pytest.raises(ValueError, match="same units"):
        v.proportion_among(flags, among[:-1])


def test_auc_perfect_chance_and_undefined():
    pos = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    perfect = v.auc(np.r_[np.full(50, np.inf), np.arange(50.0)], pos)   # inf allowed
    assert perfect.value == 1 and perfect.lo == 1
    noise = v.auc(np.random.default_rng(4).normal(size=100), pos)
    assert noise.lo < 0.5 < noise.hi and v.above(noise, 0.5) == INCONCLUSIVE
    assert v.above(v.auc(np.arange(4.0), np.ones(4, bool)), 0.5) == NOT_TESTED


# --- decisions on both sides of every criterion -------------------------------------------

@pytest.mark.parametrize("interval, verdict", [((2.1, 2.5), HOLDS), ((1.5, 2.0), FAILS),
                                               ((1.9, 2.3), INCONCLUSIVE)])
def test_above(interval, verdict):
    assert v.above(est(*interval), 2) == verdict
    assert v.decide({"kind": "above", "threshold": 2}, est(*interval)) == verdict


@pytest.mark.parametrize("interval, verdict", [((0.2, 0.9), HOLDS), ((1.0, 1.4), FAILS),
                                               ((0.8, 1.2), INCONCLUSIVE)])
def test_below(interval, verdict):
    assert v.below(est(*interval), 1) == verdict
    assert v.decide({"kind": "below", "threshold": 1}, est(*interval)) == verdict


@pytest.mark.parametrize("interval, verdict", [
    ((5.0, 6.0), HOLDS), ((7.0, 8.0), FAILS), ((3.0, 4.0), FAILS),
    ((6.5, 7.5), INCONCLUSIVE), ((4.5, 5.5), INCONCLUSIVE), ((4.0, 8.0), INCONCLUSIVE)])
def test_within(interval, verdict):
    assert v.within(est(*interval), 4.84, 6.98) == verdict
    assert v.decide({"kind": "within", "lo": 4.84, "hi": 6.98}, est(*interval)) == verdict


def test_an_undefined_statistic_is_not_tested():
    nan = Estimate(math.nan, -math.inf, math.inf, 0, "test")
    assert {v.above(nan, 0), v.below(nan, 0), v.within(nan, 0, 1)} == {NOT_TESTED}


def test_all_of_parts():
    assert v.all_of([HOLDS, HOLDS]) == HOLDS
    assert v.all_of([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert v.all_of([INCONCLUSIVE, FAILS, HOLDS]) == FAILS
    assert v.all_of([HOLDS, NOT_TESTED]) == HOLDS
    assert v.all_of([NOT_TESTED]) == v.all_of([]) == NOT_TESTED
    assert v.all_of([HOLDS, UNDERPOWERED, INCONCLUSIVE]) == UNDERPOWERED
    assert v.all_of([UNDERPOWERED, FAILS]) == FAILS


# --- power ---------------------------------------------------------------------------

def test_mde_and_n_needed_follow_the_interval_width():
    z, z80 = 1.959964, 0.841621
    e = Estimate(0.0, -1.0, 1.0, 100, "test")                    # half-width 1: SE = 1 / z
    assert v.mde(e) == pytest.approx((z + z80) / z, rel=1e-5)
    assert v.mde(Estimate(0.0, -0.5, 1.5, 100, "test")) == pytest.approx(v.mde(e))  # width only
    assert v.n_needed(e, v.mde(e)) == pytest.approx(100)        # the effect it detects at n
    assert v.n_needed(e, v.mde(e) / 2) == pytest.approx(400)    # half the effect: 4 n
    assert v.n_needed(e, None) is None
    assert v.mde(Estimate(0.0, -math.inf, math.inf, 1, "test")) == math.inf
    with pytest.raises(ValueError, match="effect"):
        v.n_needed(e, 0)


def test_powered_relabels_only_undecided_verdicts_with_too_large_an_mde():
    e = est(1.9, 2.3)                                            # mde ~ 0.29, straddles 2
    assert v.powered(INCONCLUSIVE, e, 0.1) == UNDERPOWERED
    assert v.powered(INCONCLUSIVE, e, 1.0) == INCONCLUSIVE
    assert v.powered(INCONCLUSIVE, e, None) == INCONCLUSIVE      # no paper number: as is
    assert v.powered(HOLDS, e, 0.1) == HOLDS and v.powered(FAILS, e, 0.1) == FAILS


def test_an_effect_of_one_mde_is_detected_at_80_percent_power():
    """Normal data whose true distance from the bar is the MDE that n_needed promises for
    n = 100 (scaled from a large pilot): about 80 % of 400 simulated data sets hold."""
    rng = np.random.default_rng(7)
    pilot = v.mean(rng.normal(0, 1, 10_000))
    n, trials = 100, 400
    effect = v.mde(pilot) * math.sqrt(pilot.n / n)               # n_needed(pilot, effect) = n
    assert v.n_needed(pilot, effect) == pytest.approx(n)
    holds = sum(v.above(v.mean(rng.normal(effect, 1, n)), 0) == HOLDS for _ in range(trials))
    band = 3 * math.sqrt(0.8 * 0.2 / trials)                     # 3 binomial sd: +- 0.06
    assert abs(holds / trials - 0.8) < band, holds / trials


@pytest.mark.parametrize("criterion, message", [
    ({"kind": "more", "threshold": 1}, "kind"), ({"kind": "above"}, "threshold"),
    ({"kind": "above", "threshold": float("nan")}, "finite"),
    ({"kind": "within", "lo": 2, "hi": 1}, "lo <= hi"),
    ({"kind": "below", "threshold": 1, "margin": 2}, "unknown")])
def test_bad_criteria_are_refused(criterion, message):
    with pytest.raises(ValueError, match=message):
        v.decide(criterion, est(0, 1))


def test_describe_in_the_claims_unit():
    assert v.describe({"kind": "within", "lo": -0.0225, "hi": 0.0225}, 100, " points") == \
        "within [-2.25, 2.25] points"
    assert v.describe({"kind": "above", "threshold": 2}) == "above 2"
    assert est(0.1, 0.3).text(100, " %") == "20 [10, 30] %"


def test_paired_proportions_stays_honest_when_no_image_disagrees():
    same = np.ones(4, bool)
    e = v.paired_proportions(same, same)
    assert e.value == 0 and e.lo < -0.3 and e.hi > 0.3          # 4 images decide nothing
    assert v.above(e, 0) == INCONCLUSIVE
    assert v.paired_difference(same, same).hi == 0              # what a bootstrap would say
    rng = np.random.default_rng(5)
    a = rng.random(400) < 0.9
    b = a & (rng.random(400) < 0.8)                             # b loses 20 % of a's successes
    e = v.paired_proportions(a, b)
    assert e.value == pytest.approx(a.mean() - b.mean()) and v.above(e, 0) == HOLDS
    assert v.above(v.paired_proportions(b, a), 0) == FAILS
    boot = v.paired_difference(a, b)                            # large n: both agree
    assert e.lo == pytest.approx(boot.lo, abs=0.02) and e.hi == pytest.approx(boot.hi, abs=0.02)
    with pytest.raises(ValueError, match="same images"):
        v.paired_proportions(a, b[:-1])
