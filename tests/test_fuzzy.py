"""Fuzzy robustness (sec. 4, Definitions 1-2, Table 1) against hand-computed answers, and the
tables, figures and claim rows of chapter 04_fuzzy on a tiny world."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from diffrob import claims, stages
from diffrob.figures import Table
from diffrob.fuzzy import analysis, report, runs_strength

from conftest import stage_world

# 4 runs x 5 examples; labels 0 1 2 3 4.
PREDS = np.array([[0, 1, 9, 9, 4],
                  [0, 1, 2, 9, 4],
                  [0, 7, 2, 9, 5],
                  [0, 1, 8, 9, 5]])
LABELS = np.array([0, 1, 2, 3, 4])


def test_grades_are_the_fraction_of_runs_that_fool():
    np.testing.assert_allclose(analysis.grades(PREDS, LABELS), [0, 0.25, 0.5, 1, 0.5])


def test_alpha_cut_is_strictly_below_alpha():
    g = analysis.grades(PREDS, LABELS)
    assert analysis.robust_fraction(g, 0.5) == pytest.approx(2 / 5)   # grades 0, 0.25
    assert analysis.robust_fraction(g, 0.51) == pytest.approx(4 / 5)
    assert analysis.robust_fraction(g, 1.0) == pytest.approx(4 / 5)   # grade 1 is 1-fuzzy adversarial
    assert analysis.non_adversarial(g) == pytest.approx(1 / 5)
    assert analysis.full_adversarial(g) == pytest.approx(1 / 5)
    np.testing.assert_allclose(analysis.cfr(g, [0.1, 0.3, 0.6, 1.0]), [0.2, 0.4, 0.8, 0.8])
    with pytest.raises(ValueError, match="alpha"):
        analysis.robust_fraction(g, 0.0)


def test_fooled_and_strictly_fuzzy_examples():
    g = analysis.grades(PREDS, LABELS)                          # 0, 0.25, 0.5, 1, 0.5
    assert analysis.fooled(g).tolist() == [False, True, True, True, True]
    assert analysis.strictly_fuzzy(g).tolist() == [False, True, True, False, True]
    with pytest.raises(ValueError, match="grades"):
        analysis.fooled(np.array([0.5, 1.5]))


def test_cfr_limits_of_sec_4_2():
    alphas = np.linspace(0.01, 1, 50)
    np.testing.assert_allclose(analysis.cfr(np.zeros(7), alphas), 1)     # perfectly robust
    np.testing.assert_allclose(analysis.cfr(np.ones(7), alphas), 0)      # entirely non-robust
    det = np.array([0, 0, 0, 1.0])                                     # deterministic, 75 %
    np.testing.assert_allclose(analysis.cfr(det, alphas), 0.75)


def test_standard_robustness_is_mean_and_std_of_single_run_accuracies():
    acc = np.array([3, 4, 2, 2]) / 5
    mean, std = analysis.standard_robustness(PREDS, LABELS)
    assert mean == pytest.approx(acc.mean()) and std == pytest.approx(acc.std())


def test_majority_vote_groups_in_order_and_counts_a_tie_by_its_share():
    # k = 2: groups runs (0,1) and (2,3); a tie of m classes including the label counts 1/m.
    # group 0 votes: 0, 1, tie(9,2) 1/2, 9, 4  -> 3.5/5
    # group 1 votes: 0, tie(7,1) 1/2, tie(2,8) 1/2, 9, 5 -> 2/5
    assert analysis.majority_vote_accuracy(PREDS, LABELS, 2) == pytest.approx((3.5 / 5 + 2 / 5) / 2)
    # k = 3: one group (runs 0-2), run 3 is left out: 0, 1, 2, 9, 4 -> 4/5
    assert analysis.majority_vote_accuracy(PREDS, LABELS, 3) == pytest.approx(4 / 5)
    # k = 4: 0, 1, 2 (2 votes of 4), 9, tie(4,5) 1/2 -> 3.5/5
    assert analysis.majority_vote_accuracy(PREDS, LABELS, 4) == pytest.approx(3.5 / 5)
    with pytest.raises(ValueError, match="k"):
        analysis.majority_vote_accuracy(PREDS, LABELS, 5)


def test_majority_vote_breaks_ties_at_random_reproducibly():
    tie = np.tile(np.array([[3], [1]]), (1, 2000))            # every column a 1-vs-3 tie
    votes = analysis.majority_vote(tie, seed=5)
    assert set(np.unique(votes)) == {1, 3}                     # not always the smallest class
    assert abs((votes == 1).mean() - 0.5) < 0.05               # 2000 fair coins: sd 0.011
    assert np.array_equal(votes, analysis.majority_vote(tie, seed=5))
    assert np.array_equal(analysis.majority_vote(PREDS[:3]), [0, 1, 2, 9, 4])  # no ties: the mode


def test_table_has_table_1_columns_per_source():
    t = analysis.table({"clean": PREDS, "pgd": np.full_like(PREDS, 9)}, LABELS, ks=(2, 4))
    assert list(t.index) == ["clean", "pgd"]
    assert list(t.columns) == ["standard", "standard_std", "m=0", "m=1", "alpha=0.5", "k=2", "k=4"]
    assert t.loc["pgd", "m=1"] == 100                          # label 9 never occurs
    assert t.loc["pgd"].drop("m=1").eq(0).all()
    assert t.loc["clean", "alpha=0.5"] == pytest.approx(40.0)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="labels"):
        analysis.grades(PREDS, LABELS[:3])
    with pytest.raises(ValueError, match="preds"):
        analysis.grades(PREDS[0], LABELS)


@settings(max_examples=50, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(1, 12), st.integers(1, 8)),
              elements=st.integers(0, 3)), st.data())
def test_properties(preds, data):
    labels = data.draw(arrays(np.int64, preds.shape[1], elements=st.integers(0, 3)))
    g = analysis.grades(preds, labels)
    assert np.all((g >= 0) & (g <= 1))
    curve = analysis.cfr(g, np.linspace(0.05, 1, 20))
    assert np.all(np.diff(curve) >= 0)                        # CFR is non-decreasing
    mean, _ = analysis.standard_robustness(preds, labels)
    assert mean == pytest.approx(1 - g.mean())                # mean accuracy = 1 - mean grade
    assert analysis.non_adversarial(g) <= analysis.robust_fraction(g, 0.5) <= 1 - analysis.full_adversarial(g) + 1e-12
    # k = 1: every run is its own group, so the vote accuracy is the mean accuracy
    assert analysis.majority_vote_accuracy(preds, labels, 1) == pytest.approx(mean)


# --- chapter 04_fuzzy's report on a tiny world ----------------------------------------------

@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    w = stage_world(tmp_path_factory.mktemp("res"), attacks=["bpda", "bpda-eot", "pgd", "pgd-eot"],
                    variant_images=4, strength_images=2, strength_evals=3, strength_steps=1,
                    strength_eot=2, strength_rel_stepsizes=[0.25])
    return report.evaluations(w)


def test_evaluations_hold_each_sources_predictions_grades_and_table_1(evaluated):
    r = evaluated
    assert r.sources == ["clean", "bpda", "bpda-eot", "pgd", "pgd-eot"] and r.attacks == r.sources[1:]
    assert all(r.preds[s].shape == (4, 6) for s in r.sources)
    np.testing.assert_array_equal(r.grades["pgd"], analysis.grades(r.preds["pgd"], r.labels))
    pd.testing.assert_frame_equal(r.table, analysis.table(r.preds, r.labels, ks=(2, 4)))


def test_work_table_gives_each_attack_its_eot_samples_from_the_registry(evaluated):
    t = report.work_table(evaluated)
    assert isinstance(t, Table) and t.name == "tbl-fuzzy-work"
    assert list(t.frame.index) == evaluated.sources
    np.testing.assert_array_equal(t.frame["EOT samples"], [np.nan, 1, 2, 1, 2])
    assert (t.frame["re-evaluations r"] == 4).all() and (t.frame["images"] == 6).all()


def test_table_1_sits_beside_the_papers_table_1(evaluated):
    t = report.table_1(evaluated)
    label = "paper (CIFAR-10 (Linf 8/255))"
    assert t.name == "tbl-fuzzy-table1"
    assert list(t.frame.index) == [(s, who) for s in evaluated.sources for who in ("ours", label)]
    ours, theirs = t.frame.xs("ours", level=1), t.frame.xs(label, level=1)
    columns = list(evaluated.table.columns)
    pd.testing.assert_frame_equal(ours[columns], evaluated.table.round(2).rename_axis("source"))
    assert list(t.frame.columns) == columns + [c for c in claims.paper("sec4")["columns"]
                                               if c not in columns]
    assert theirs.loc["pgd-eot", "m=1"] == 7.0


def test_paper_cost_table_counts_the_papers_stages_without_sec_6():
    t = report.paper_cost_table()
    assert t.name == "tbl-fuzzy-paper-cost"
    assert set(t.frame.index.get_level_values(0)) == {"cifar10", "imagenet"}
    assert not t.frame.index.get_level_values(1).str.startswith("compression/").any()


@pytest.mark.parametrize("known", [0, 1])
def test_fixed_randomness_claim_pairs_table_1s_pgd_eot_with_the_known_noise_attack(evaluated,
                                                                                    known):
    """Fixed noise that keeps every image (known = 1) leaves no drop: the claim cannot hold;
    fixed noise that keeps none (known = 0) drops by the whole of Table 1's robustness."""
    n = 4
    v = report.Variants(pd.DataFrame(), 0.0, {}, "digits", np.full(n, bool(known)))
    t = report.fixed_randomness_claim(v, evaluated)
    row = {r["claim"]: r for r in claims.table(evaluated.params)}["fixed_randomness_gain_drops"]
    random = 1 - evaluated.grades["pgd-eot"][:n]
    assert row["estimate"]["value"] == pytest.approx(random.mean() - known)
    assert t.frame.loc["fixed_randomness_gain_drops", "verdict"] == row["verdict"]
    if known:
        assert row["verdict"] == "does not hold"


def test_sec4_claims_under_worst_of_n_pair_each_images_n_evaluation_robustness(evaluated):
    r = evaluated
    est = report.sec4_estimates(r.params, r.preds, r.labels, worst_of=2)
    assert est["most_examples_fuzzy"] is None and est["vote_helps"] is None  # grades only
    worst = {s: analysis.worst_of_n_per_image(r.preds[s], r.labels, 2) for s in r.preds}
    assert est["pgd_stronger_than_bpda"].value == pytest.approx(
        (worst["bpda-eot"] - worst["pgd-eot"]).mean())
    assert np.mean(worst["pgd-eot"]) == pytest.approx(
        analysis.worst_of_n(r.preds["pgd-eot"], r.labels, 2))
    replaced = report.sec4_estimates(r.params, r.preds, r.labels, replaced=("pgd-eot",))
    assert list(replaced["eot_stronger"]) == ["bpda"]    # PGD's twin runs another protocol
    assert "fixed_randomness_gain_drops" not in replaced


def test_strongest_claims_are_stored_beside_each_claims_own_row(evaluated):
    r = evaluated
    v = report.Variants(pd.DataFrame(), 0.0, {}, "digits", np.ones(4, dtype=bool))
    strong = {"rel_stepsize": 0.25, "pgd_schedule": "constant", "pgd_iterate": "last"}
    report.claims_table(r)
    t = report.strongest_claims_table(r, strong, v)
    rows = {row["claim"]: row for row in claims.table(r.params)}
    eot = rows["eot_stronger"]["protocols"][report.STRONGEST]
    assert list(eot["parts"]) == ["bpda"]       # no PGD without EOT under the strongest
    assert t.frame.loc["eot_stronger (strongest protocol)", "verdict"] == eot["verdict"]
    other = rows["pgd_stronger_than_bpda"]["protocols"]
    n = min(report.WORST_OF, r.params.n_evals)
    assert set(other) == {report.STRONGEST, f"worst of {n}, {report.STRONGEST}"}
    assert rows["pgd_stronger_than_bpda"]["protocol"] is None
    chose, _ = runs_strength.halves(min(r.params.strength_images, len(r.labels)))
    same = rows["pgd_stronger_than_bpda"]["protocols"][report.STRONGEST]["estimate"]
    keep = np.setdiff1d(np.arange(len(r.labels)), chose)     # the choice half left out
    strong_preds = stages.evaluations(dataclasses.replace(
        r.world, params=r.params.replace(**strong)), "pgd-eot", progress=False)
    robust = lambda preds: 1 - analysis.grades(preds[:, keep], r.labels[keep])
    assert same["value"] == pytest.approx(
        (robust(r.preds["bpda-eot"]) - robust(strong_preds)).mean())
    assert "vote_helps (worst of" not in " ".join(t.frame.index)   # grades only
    with pytest.raises(ValueError, match="protocol"):
        claims.record(r.params, "sec4", "vote_helps", None, protocol="../x")
    report.claims_table(r)          # the claims' own rows again: no other protocol outlives it
    again = set(report.sec4_estimates(r.params, r.preds, r.labels))
    assert all(not row["protocols"] for row in claims.table(r.params) if row["claim"] in again)


def test_claims_table_judges_the_observations_of_sec_4_2(evaluated):
    t = report.claims_table(evaluated)
    assert t.name == "tbl-fuzzy-claims" and list(t.frame.columns) == claims.COLUMNS
    assert list(t.frame.index) == ["most_examples_fuzzy", "vote_helps", "pgd_stronger_than_bpda",
                                   "pgd_stronger_than_bpda_direction", "eot_stronger"]
    assert "not tested" not in set(t.frame["verdict"])  # every pair of attacks is there
    row = {r["claim"]: r for r in claims.table(evaluated.params)}
    g = evaluated.grades["pgd-eot"]
    fooled = int((g > 0).sum())
    assert 0 < fooled < len(g)                          # Wilson over the fooled examples only
    part = row["most_examples_fuzzy"]["parts"]["pgd-eot"]
    assert part["n"] == fooled and part["value"] == pytest.approx(
        ((g > 0) & (g < 1)).sum() / fooled)
    same = row["pgd_stronger_than_bpda"]["estimate"]    # one estimate, two bars
    assert same == row["pgd_stronger_than_bpda_direction"]["estimate"]
    assert t.frame.loc["pgd_stronger_than_bpda", "criterion"] != \
        t.frame.loc["pgd_stronger_than_bpda_direction", "criterion"]
    assert all(m for m in t.frame["MDE"])               # every tested claim shows its power
    assert report.table_1_text(evaluated).startswith("bpda: standard ")


def test_figures_show_every_source(evaluated):
    import matplotlib.pyplot as plt

    assert len(report.grades_figure(evaluated).axes) == 5
    assert len(report.cfr_figure(evaluated, 0.5).axes[0].lines) == 5 + 5 + 1  # curves, dots, cut
    assert len(report.cfr_slider(evaluated).children[1].children) == len(report.SLIDER_ALPHAS)
    plt.close("all")


def test_strongest_table_adds_the_strongest_protocol_and_the_worst_case(evaluated):
    strong = report.strongest_protocol(evaluated)
    assert strong["rel_stepsize"] == 0.25
    assert "step eps/4," in report.strongest_text(evaluated, strong)
    t = report.strongest_table(evaluated, strong)
    assert t.name == "tbl-fuzzy-strongest"
    assert list(t.frame.index) == [*evaluated.attacks, "pgd-eot (strongest protocol)",
                                   "worst case over attacks"]
    assert {"N=1", "N=4"} <= set(t.frame.columns)
    assert t.frame.loc[evaluated.attacks, "N=1"].isna().all()  # Table 1's rows have no N


def test_variants_table_shows_ours_with_intervals_beside_the_papers(evaluated):
    v = report.variants(evaluated.world)
    assert len(v.frame) == 2 + 2 * 4 and report.variants_text(v).startswith("4 images, ")
    t = report.variants_table(v)
    assert t.name == "tbl-fuzzy-variants" and not t.index
    assert list(t.frame.columns) == ["variant", "t", "source", "ours (%)", "paper (%)"]
    assert list(t.frame["paper (%)"][:2]) == ["85.20", "48.30"]
    assert all(c.count("[") == 1 for c in t.frame["ours (%)"])
    assert "(DiffPure under PGD-EOT: " in report.variants_summary(v, evaluated)
