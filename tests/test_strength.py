"""Worst-of-N, worst case over attacks, and the attack-strength experiments of chapter
04b_strength (sec. 4.2, Table S1; Carlini et al. 2019) with its tables."""

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from diffrob import params
from diffrob.figures import Table
from diffrob.fuzzy import analysis, report_strength, runs_strength

from conftest import tiny_world

PREDS = np.array([[0, 1, 9, 9, 4],
                  [0, 1, 2, 9, 4],
                  [0, 7, 2, 9, 5],
                  [0, 1, 8, 9, 5]])
LABELS = np.array([0, 1, 2, 3, 4])


def test_worst_of_n_by_hand():
    """Right in 4, 3, 2, 0, 2 of the 4 runs: N = 1 is the mean accuracy, N = r is m = 0."""
    assert analysis.worst_of_n(PREDS, LABELS, 1) == pytest.approx(11 / 20)
    assert analysis.worst_of_n(PREDS, LABELS, 2) == pytest.approx((6 + 3 + 1 + 0 + 1) / 6 / 5)
    assert analysis.worst_of_n(PREDS, LABELS, 4) == analysis.non_adversarial(analysis.grades(PREDS, LABELS))
    with pytest.raises(ValueError, match="n:"):
        analysis.worst_of_n(PREDS, LABELS, 5)


@settings(max_examples=30, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(1, 4)), elements=st.integers(0, 2)),
       st.data())
def test_worst_of_n_is_the_mean_over_every_n_subset_of_runs(preds, data):
    r, n_ex = preds.shape
    labels = np.zeros(n_ex, dtype=np.int64)
    n = data.draw(st.integers(1, r))
    subsets = [(preds[list(s)] == labels).all(axis=0).mean()
               for s in itertools.combinations(range(r), n)]
    assert analysis.worst_of_n(preds, labels, n) == pytest.approx(np.mean(subsets))


def test_worst_case_takes_per_example_the_attack_with_the_highest_grade():
    a = PREDS
    b = np.array([[9, 1, 2, 3, 9]] * 4)  # fools examples 0 and 4 always, never 1, 2, 3
    worst = analysis.worst_case({"a": a, "b": b}, LABELS)
    np.testing.assert_array_equal(worst[:, [0, 4]], b[:, [0, 4]])
    np.testing.assert_array_equal(worst[:, [1, 2, 3]], a[:, [1, 2, 3]])
    g = analysis.grades(worst, LABELS)
    assert (g >= analysis.grades(a, LABELS)).all() and (g >= analysis.grades(b, LABELS)).all()


def test_summarised_accuracy_is_in_percent_with_an_interval_around_it():
    v = np.random.default_rng(0).random(50)
    row = analysis.summarise(v)
    assert row["accuracy"] == pytest.approx(100 * v.mean())
    assert row["low"] < row["accuracy"] < row["high"]
    assert row["high"] - row["low"] < 50


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return tiny_world(4, results_dir=str(tmp_path_factory.mktemp("res")), strength_images=3,
                      strength_evals=3, strength_steps=1, strength_eot=2,
                      strength_rel_stepsizes=[0.25], autoattack_steps=2, autoattack_eot=3)


def test_base_world_is_the_first_images_with_the_strength_protocol(small):
    w = runs_strength.base_world(small, eps_255=16.0)
    p = w.params
    assert len(w.images) == p.n_images == p.batch_size == 3
    assert (p.n_evals, p.attack_steps, p.eot, p.eps_255) == (3, 1, 2, 16.0)


def test_compare_gives_paired_rows_and_a_worst_case_no_stronger_attack_beats(small):
    side = runs_strength.compare(small, {"pgd-eot": ("pgd-eot", {}), "transfer": ("transfer", {}),
                                    "apgd": ("apgd-eot", {})}, reference="pgd-eot")
    assert list(side.index) == ["pgd-eot", "transfer", "apgd", "worst case"]
    acc = side["accuracy"].astype(float)
    assert acc["worst case"] <= acc.drop(index="worst case").min() + 1e-9
    assert side.loc["pgd-eot", "vs pgd-eot"] == 0
    assert list(side["gradients"]) == [2, 1, 4, 7]  # 1 step x 2 EOT; 1; (1 + 1) x 2
    assert side.loc["pgd-eot", "N=1"] == pytest.approx(acc["pgd-eot"])
    best = acc.drop(index="worst case").idxmin()       # paired against the strongest single one
    assert side.loc[best, "vs best"] == 0 and side.loc["worst case", "vs best"] <= 0
    assert (side["best low"] <= side["vs best"]).all()
    assert (side["vs best"] <= side["best high"]).all()


def test_strongest_text_gives_the_lead_with_its_paired_interval_and_the_level_attacks():
    side = pd.DataFrame({
        "accuracy": [80.0, 40.0, 42.0, 50.0, 35.0], "low": [70, 30, 32, 40, 25],
        "high": [90, 50, 52, 60, 45], "vs best": [40.0, 0.0, 2.0, 10.0, -5.0],
        "best low": [35.0, 0.0, -0.5, 6.0, -8.0], "best high": [45.0, 0.0, 4.5, 14.0, -2.0]},
        index=[report_strength.PAPER_NAME, "vote", "apgd", "square", "worst case"])
    text = report_strength.strongest_text(side)
    assert "**Strongest here:** vote, 40.0 % [30.0, 50.0]" in text
    assert (f"2.0 points below the next (apgd; paired "
            f"{report_strength.interval_text(-0.5, 4.5)})") in text
    assert "Not significantly stronger than: apgd." in text and "square" not in text
    side.loc["apgd", "best low"] = 0.5
    assert "Significantly stronger than every other attack." in report_strength.strongest_text(side)


def test_gradients_count_every_gradient_evaluation_per_image(tmp_path):
    """The "gradients" column is what the attacks compute, counted here as rows
    back-propagated through the classifier per image: EOT samples x steps (APGD: x (steps +
    1)) x restarts, the checked attack's evaluations and restarts' scores not among them,
    with 2 steps of 3 EOT samples so that neither the steps nor the samples alone pass."""
    world = tiny_world(4, results_dir=str(tmp_path), strength_images=2, strength_evals=2,
                       strength_steps=2, strength_eot=3)
    rows = []
    world.classifier.register_full_backward_hook(lambda m, g_in, g_out: rows.append(len(g_out[0])))
    protocols = {"pgd-eot": {}, "bpda-eot": {"attack_restarts": 2}, "transfer": {},
                 "apgd-eot": {"attack_restarts": 2}, "apgd-dlr-eot": {}, "eotpgd": {},
                 "pgd": {"pgd_iterate": "best"}, "vote-eot": {}, "nevals-eot": {}}
    for attack, changes in protocols.items():
        rows.clear()
        side = runs_strength.compare(world, {attack: (attack, changes)}, reference=attack)
        assert side.loc[attack, "gradients"] == sum(rows) / 2, attack
        assert side.loc[attack, "gradients"] == runs_strength.gradients(
            attack, runs_strength.base_world(world, **changes).params)
    assert runs_strength.gradients("pgd-eot", runs_strength.base_world(world).params) == 6


def test_steps_read_as_fractions_of_eps():
    """Table S1's eps/30 (0.01 / 0.3 in the params), not a rounded float."""
    assert [report_strength.step_text(r) for r in (0.01 / 0.3, 1 / 16, 0.25, 0.75, 1.0)] == [
        "eps/30", "eps/16", "eps/4", "3eps/4", "eps"]
    assert report_strength.step_text(0.0123456) == "0.0123 eps"
    cosine_best = {"rel_stepsize": 0.25, "pgd_schedule": "cosine", "pgd_iterate": "best"}
    assert report_strength.protocol_text(cosine_best) == "step eps/4, cosine, best iterate"


def test_step_grid_and_strongest(small):
    grid = runs_strength.step_grid(small)
    assert len(grid) == 3 and set(grid["iterate"]) == {"last", "best"}
    choice = runs_strength.choose(grid, 1, 40)
    strong = choice.protocol
    assert strong["rel_stepsize"] == 0.25
    assert choice.edges == ("no larger step tried", "no smaller step tried")  # the only step
    assert grid["choice half"].min() == pytest.approx(grid.loc[
        (grid["schedule"] == strong["pgd_schedule"]) & (grid["iterate"] == strong["pgd_iterate"]),
        "choice half"].min())
    more = dataclasses.replace(small, params=small.params.replace(
        strength_more_rel_stepsizes=[0.5, 0.25]))
    assert runs_strength.rel_stepsizes(more.params) == [0.25, 0.5]


def test_held_out_halves_are_disjoint_fixed_and_cover_the_images():
    for n in (2, 3, 16, 97):
        choice, report = runs_strength.halves(n)
        assert not set(choice) & set(report) and sorted([*choice, *report]) == list(range(n))
        assert abs(len(choice) - len(report)) <= 1
        again = runs_strength.halves(n)
        assert np.array_equal(again[0], choice) and np.array_equal(again[1], report)
    assert list(runs_strength.halves(5)[1]) == [1, 3]
    with pytest.raises(ValueError, match="strength_images"):
        runs_strength.halves(1)


def grid_of(rows):
    return pd.DataFrame([{"rel_stepsize": r, "schedule": "constant", "iterate": "last",
                          "accuracy": a, "choice half": c} for r, a, c in rows])


def test_the_protocol_is_chosen_on_the_choice_half_and_an_edge_winner_is_flagged():
    """All images would pick eps/4; the choice half picks eps/16, inside the grid; a winner at
    the largest step (below the corner step of 2 eps), the smallest step, or with no more
    iterations tried, is flagged."""
    inside = grid_of([(1 / 30, 50, 60), (1 / 16, 40, 20), (0.25, 10, 30), (0.5, 30, 40)])
    chosen = runs_strength.choose(inside, 20, 40)
    assert chosen.protocol["rel_stepsize"] == 1 / 16 and chosen.edges == ()
    top = grid_of([(1 / 30, 50, 60), (0.25, 10, 5)])
    assert runs_strength.choose(top, 20, 40).edges == ("no larger step tried",)
    bottom = grid_of([(1 / 30, 50, 5), (0.25, 10, 30)])
    assert runs_strength.choose(bottom, 20, 40).edges == ("no smaller step tried",)
    assert runs_strength.choose(inside, 40, 40).edges == ("no more iterations tried",)
    # A constant step of 2 eps is the top: every larger constant step gives the same iterates
    corner = grid_of([(1 / 30, 50, 60), (1.0, 10, 30), (2.0, 10, 5)])
    assert runs_strength.choose(corner, 20, 40).edges == ()
    corner["schedule"] = "cosine"  # a cosine schedule's later, smaller steps would differ
    assert runs_strength.choose(corner, 20, 40).edges == ("no larger step tried",)
    # the corner step is a step the protocol can take, and the last one the params accept
    assert params.load(None, rel_stepsize=2.0, strength_more_rel_stepsizes=[2.0]).step_size > 0
    with pytest.raises(ValueError, match="rel_stepsize"):
        params.load(None, rel_stepsize=2.5)


def test_grid_table_and_text_name_the_strongest_protocol(small):
    s = report_strength.setting(small)
    assert s.paper == {"rel_stepsize": small.params.rel_stepsize, "pgd_schedule": "constant",
                       "pgd_iterate": "last"}
    assert report_strength.setting_text(s) == ("digits: eps = 48/255, 3 images, 1 steps x 2 EOT "
                                               "samples, r = 3")
    g = report_strength.step_grid(s)
    t = report_strength.grid_table(g)
    assert isinstance(t, Table) and t.name == "tbl-strength-grid" and not t.index
    assert list(t.frame.columns) == ["step", "schedule", "iterate", "all images", "low", "high",
                                     "choice half (chooses)"]
    assert set(t.frame["step"]) == {"eps/4"}
    first, second = report_strength.grid_text(g).splitlines()
    assert first == (f"strongest protocol, chosen on the choice half: step eps/4, "
                     f"{g.strong['pgd_schedule']}, {g.strong['pgd_iterate']} iterate (AT THE "
                     f"GRID'S EDGE: no larger step tried; no smaller step tried; no more "
                     f"iterations tried)")
    assert report_strength.split_text(s) == ("held-out split: 2 images choose the protocol "
                                             "(even positions), 1 report every attack (odd "
                                             "positions)")
    assert second.startswith("best minus last iterate (points, constant step): {'eps/4': ")


def test_side_table_and_the_strongest_attack_in_words(small):
    s = report_strength.setting(small)
    g = report_strength.step_grid(s)
    side = report_strength.side_by_side(s, g.strong)
    assert list(side.index)[-1] == "worst case" and len(side) == 18
    budget = "AutoAttack's budget (2 x 3)"
    assert {"PGD-EOT, strongest protocol, 3 restarts", "APGD-CE-EOT, 3 restarts",
            "vote attack, k = 2", "N-evaluation-aware PGD-EOT, N = 3"} <= set(side.index)
    # AutoAttack's APGD at its own budget, beside our PGD-EOT at as many gradients (APGD: one
    # more step, its clean start)
    assert side.loc[f"APGD-CE-EOT, {budget}", "gradients"] == 3 * (2 + 1)
    assert side.loc[f"APGD-DLR-EOT, {budget}", "gradients"] == 3 * (2 + 1)
    assert side.loc[f"PGD-EOT, strongest protocol, {budget}", "gradients"] == 3 * 2
    assert side.loc["Square (autoattack, gradient-free)", "gradients"] == 0
    assert side.loc["PGD-EOT, strongest protocol, 3 restarts", "gradients"] == 3 * side.loc[
        report_strength.STRONGEST_NAME, "gradients"]
    assert side.loc["vote attack, k = 2", "gradients"] == 2  # 1 step x k = 2 purifications
    t = report_strength.side_table(side)
    assert t.name == "tbl-strength-side" and list(t.frame.index) == list(side.index)
    assert list(t.frame.columns) == ["gradients", "accuracy", "interval",
                                     "vs strongest PGD-EOT (points)", "its interval",
                                     "all images*"]
    assert t.frame.loc["worst case", "gradients"] == side["gradients"].iloc[:-1].sum()
    strongest = report_strength.STRONGEST_NAME
    assert t.frame.loc[strongest, "vs strongest PGD-EOT (points)"] == 0
    assert t.frame.loc[strongest, "interval"] == report_strength.interval_text(
        side.loc[strongest, "low"], side.loc[strongest, "high"])
    n = report_strength.worst_of_n_table(side)
    assert n.name == "tbl-strength-worst-of-n"
    assert list(n.frame.columns) == ["N=1", "N=3", "alpha=0.5", "N=3, while optimising"]
    assert n.frame["N=1"].equals(t.frame["accuracy"])
    own = n.frame["N=3, while optimising"]
    assert own.notna().sum() == 1 and 0 <= own["N-evaluation-aware PGD-EOT, N = 3"] <= 100
    v = report_strength.vote_table(side)
    assert v.name == "tbl-strength-vote"
    assert list(v.frame.columns) == ["k=2", "k=2 vs strongest", "k=2 interval"]
    assert v.frame.loc[report_strength.STRONGEST_NAME, "k=2 vs strongest"] == 0
    text = report_strength.strongest_text(side)
    assert text.startswith("**Strongest here:** ") and "The paper's protocol leaves" in text


def test_autoattack_table_beside_its_examples_re_evaluated(small):
    t = report_strength.autoattack_table(report_strength.setting(small))
    assert t.name == "tbl-strength-autoattack" and list(t.frame.columns) == ["%"]
    assert list(t.frame.index) == ["AutoAttack's own robust accuracy (1 evaluation)",
                                   "its examples, standard robust accuracy (r = 3)", "interval",
                                   "its examples, N = r (3)"]


def test_gradient_table_holds_the_checks(small):
    t = report_strength.gradient_table(report_strength.setting(small))
    assert t.name == "tbl-strength-gradients" and len(t.frame) > 0


def test_the_own_count_is_stored_with_the_examples_and_resumed(tmp_path, monkeypatch):
    """The checked attack's own count runs the attack once, storing its examples beside it
    (the evaluation then reads them); a rerun reads both and computes nothing."""
    from diffrob import attacks, stages

    w = runs_strength.base_world(tiny_world(4, results_dir=str(tmp_path), strength_images=4,
                                            strength_evals=3, strength_steps=1,
                                            attack_checks=2))
    fooled = runs_strength.own_fooled(w, "nevals-eot")
    assert fooled.dtype == bool and fooled.shape == (4,)

    def fail(*a, **k):
        raise AssertionError("the attack ran again")
    monkeypatch.setattr(attacks, "attack_batch", fail)
    monkeypatch.setattr(attacks, "attack_batch_checked", fail)
    stages.evaluations(w, "nevals-eot", progress=False)
    assert np.array_equal(runs_strength.own_fooled(w, "nevals-eot"), fooled)


def test_autoattack_is_stored_with_its_own_flags_and_a_rerun_only_reads(tmp_path, monkeypatch):
    """AutoAttack's run is stored (its examples and its own flags, one run); a rerun of the
    chapter reads both: the same numbers, AutoAttack not called."""
    w = runs_strength.base_world(tiny_world(4, results_dir=str(tmp_path), strength_images=4,
                                            strength_evals=3, autoattack_steps=1,
                                            autoattack_eot=2))
    first = runs_strength.autoattack_example(w)
    assert {"own", "accuracy", "low", "high", "m=0"} <= set(first)

    def fail(*a, **k):
        raise AssertionError("AutoAttack ran again")
    monkeypatch.setattr(runs_strength, "autoattack_rand", fail)
    assert runs_strength.autoattack_example(w) == first
    with pytest.raises(AssertionError, match="ran again"):  # its budget is in the key
        runs_strength.autoattack_example(dataclasses.replace(
            w, params=w.params.replace(autoattack_steps=2)))


def test_levels_off_names_where_the_accuracy_stops_falling(monkeypatch):
    """The first budget that no later one undercuts significantly (paired over images), or
    None when the curve is still falling at its last value."""
    rng = np.random.default_rng(0)
    high, low = np.ones(40), (rng.random(40) < 0.3).astype(float)
    lower = np.zeros(40)
    w = tiny_world(4)

    def levels(per_steps: dict) -> object:
        monkeypatch.setattr(runs_strength, "correct",
                            lambda world, attack, progress=False:
                            per_steps[world.params.attack_steps])
        return runs_strength.levels_off(w, "pgd-eot", "attack_steps", list(per_steps))

    assert levels({5: high, 20: low, 40: low.copy()}) == 20     # falls, then flat
    assert levels({40: low, 5: high, 20: low}) == 20            # values sorted first
    assert levels({5: high, 20: low, 40: lower}) is None        # still falling at 40
    assert levels({5: low, 20: low, 40: low}) == 5              # flat from the start
    assert levels({20: low}) == 20                              # one value: nothing to undercut
    flat_then_up = {5: low, 20: high}
    assert levels(flat_then_up) == 5                            # rising is no fall


def test_convergence_text_reads_the_steps_and_eot_curves(small):
    w = dataclasses.replace(small, params=small.params.replace(strength_step_grid=[2],
                                                               strength_eot_grid=[1]))
    s = report_strength.setting(w)
    steps, eot = report_strength.convergence_text(s, report_strength.step_grid(s).strong) \
        .splitlines()
    assert steps.startswith("PGD steps [1, 2]: ") and eot.startswith("EOT samples [1, 2]: ")
    for line in (steps, eot):
        assert "stops falling at" in line or "STILL FALLING" in line
