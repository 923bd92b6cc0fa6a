"""Fuzzy robustness (sec. 4, Definitions 1-2, Table 1) against hand-computed answers."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from diffrob import fuzzy

# 4 runs x 5 examples; labels 0 1 2 3 4.
PREDS = np.array([[0, 1, 9, 9, 4],
                  [0, 1, 2, 9, 4],
                  [0, 7, 2, 9, 5],
                  [0, 1, 8, 9, 5]])
LABELS = np.array([0, 1, 2, 3, 4])


def test_grades_are_the_fraction_of_runs_that_fool():
    np.testing.assert_allclose(fuzzy.grades(PREDS, LABELS), [0, 0.25, 0.5, 1, 0.5])


def test_alpha_cut_is_strictly_below_alpha():
    g = fuzzy.grades(PREDS, LABELS)
    assert fuzzy.robust_fraction(g, 0.5) == pytest.approx(2 / 5)   # grades 0, 0.25
    assert fuzzy.robust_fraction(g, 0.51) == pytest.approx(4 / 5)
    assert fuzzy.robust_fraction(g, 1.0) == pytest.approx(4 / 5)   # grade 1 is 1-fuzzy adversarial
    assert fuzzy.non_adversarial(g) == pytest.approx(1 / 5)
    assert fuzzy.full_adversarial(g) == pytest.approx(1 / 5)
    np.testing.assert_allclose(fuzzy.cfr(g, [0.1, 0.3, 0.6, 1.0]), [0.2, 0.4, 0.8, 0.8])
    with pytest.raises(ValueError, match="alpha"):
        fuzzy.robust_fraction(g, 0.0)


def test_cfr_limits_of_sec_4_2():
    alphas = np.linspace(0.01, 1, 50)
    np.testing.assert_allclose(fuzzy.cfr(np.zeros(7), alphas), 1)     # perfectly robust
    np.testing.assert_allclose(fuzzy.cfr(np.ones(7), alphas), 0)      # entirely non-robust
    det = np.array([0, 0, 0, 1.0])                                     # deterministic, 75 %
    np.testing.assert_allclose(fuzzy.cfr(det, alphas), 0.75)


def test_standard_robustness_is_mean_and_std_of_single_run_accuracies():
    acc = np.array([3, 4, 2, 2]) / 5
    mean, std = fuzzy.standard_robustness(PREDS, LABELS)
    assert mean == pytest.approx(acc.mean()) and std == pytest.approx(acc.std())


def test_majority_vote_groups_in_order_and_counts_a_tie_by_its_share():
    # k = 2: groups runs (0,1) and (2,3); a tie of m classes including the label counts 1/m.
    # group 0 votes: 0, 1, tie(9,2) 1/2, 9, 4  -> 3.5/5
    # group 1 votes: 0, tie(7,1) 1/2, tie(2,8) 1/2, 9, 5 -> 2/5
    assert fuzzy.majority_vote_accuracy(PREDS, LABELS, 2) == pytest.approx((3.5 / 5 + 2 / 5) / 2)
    # k = 3: one group (runs 0-2), run 3 is left out: 0, 1, 2, 9, 4 -> 4/5
    assert fuzzy.majority_vote_accuracy(PREDS, LABELS, 3) == pytest.approx(4 / 5)
    # k = 4: 0, 1, 2 (2 votes of 4), 9, tie(4,5) 1/2 -> 3.5/5
    assert fuzzy.majority_vote_accuracy(PREDS, LABELS, 4) == pytest.approx(3.5 / 5)
    with pytest.raises(ValueError, match="k"):
        fuzzy.majority_vote_accuracy(PREDS, LABELS, 5)


def test_majority_vote_breaks_ties_at_random_reproducibly():
    tie = np.tile(np.array([[3], [1]]), (1, 2000))            # every column a 1-vs-3 tie
    votes = fuzzy.majority_vote(tie, seed=5)
    assert set(np.unique(votes)) == {1, 3}                     # not always the smallest class
    assert abs((votes == 1).mean() - 0.5) < 0.05               # 2000 fair coins: sd 0.011
    assert np.array_equal(votes, fuzzy.majority_vote(tie, seed=5))
    assert np.array_equal(fuzzy.majority_vote(PREDS[:3]), [0, 1, 2, 9, 4])  # no ties: the mode


def test_table_has_table_1_columns_per_source():
    t = fuzzy.table({"clean": PREDS, "pgd": np.full_like(PREDS, 9)}, LABELS, ks=(2, 4))
    assert list(t.index) == ["clean", "pgd"]
    assert list(t.columns) == ["standard", "standard_std", "m=0", "m=1", "alpha=0.5", "k=2", "k=4"]
    assert t.loc["pgd", "m=1"] == 100                          # label 9 never occurs
    assert t.loc["pgd"].drop("m=1").eq(0).all()
    assert t.loc["clean", "alpha=0.5"] == pytest.approx(40.0)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="labels"):
        fuzzy.grades(PREDS, LABELS[:3])
    with pytest.raises(ValueError, match="preds"):
        fuzzy.grades(PREDS[0], LABELS)


@settings(max_examples=50, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(1, 12), st.integers(1, 8)),
              elements=st.integers(0, 3)), st.data())
def test_properties(preds, data):
    labels = data.draw(arrays(np.int64, preds.shape[1], elements=st.integers(0, 3)))
    g = fuzzy.grades(preds, labels)
    assert np.all((g >= 0) & (g <= 1))
    curve = fuzzy.cfr(g, np.linspace(0.05, 1, 20))
    assert np.all(np.diff(curve) >= 0)                        # CFR is non-decreasing
    mean, _ = fuzzy.standard_robustness(preds, labels)
    assert mean == pytest.approx(1 - g.mean())                # mean accuracy = 1 - mean grade
    assert fuzzy.non_adversarial(g) <= fuzzy.robust_fraction(g, 0.5) <= 1 - fuzzy.full_adversarial(g) + 1e-12
    # k = 1: every run is its own group, so the vote accuracy is the mean accuracy
    assert fuzzy.majority_vote_accuracy(preds, labels, 1) == pytest.approx(mean)
