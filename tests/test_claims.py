"""Claims: criteria as data, rows stored per parameter set, atomic and named on damage."""

import ast
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from diffrob import claims, params, verdicts, worlds
from diffrob.verdicts import Estimate


def est(lo, hi):
    return Estimate((lo + hi) / 2, lo, hi, 10, "test")


@pytest.fixture
def p(tmp_path):
    return params.load("params/smoke.yaml", results_dir=str(tmp_path))


@pytest.mark.parametrize("section", claims.SECTIONS)
def test_every_section_has_the_papers_numbers_and_checked_claims(section):
    assert claims.paper(section)
    for claim, entry in claims.specs(section).items():
        assert entry["source"].strip() and entry["words"].strip(), claim


def test_criteria_are_the_papers_own_numbers():
    """The derived bounds in paper_data follow from the paper's numbers beside them."""
    z = 1.959964                                  # the paper's 95 % interval of its mean
    s31 = claims.paper("sec31")["cifar10"]
    gap = max(s31["l2"][a]["end"][0] for a in ("bpda", "bpda-eot", "pgd", "pgd-eot")) / \
        s31["l2"]["uniform_8"]["end"][0]
    c = claims.spec("sec31", "attacks_like_uniform")["criterion"]
    assert c["hi"] == pytest.approx(gap, abs=5e-4) and c["lo"] == pytest.approx(2 - gap, abs=5e-4)
    assert claims.spec("sec31", "linf_grows")["criterion"]["threshold"] == \
        s31["end_over_init_linf"] / 2                       # half the paper's ratio
    setup = claims.paper("setup")["cifar10"]["purified_clean_accuracy"]
    spread = max(r["value"] for r in setup.values()) - min(r["value"] for r in setup.values())
    c = claims.spec("setup", "samplers_comparable")["criterion"]
    assert (c["lo"], c["hi"]) == pytest.approx((-spread / 100, spread / 100))
    slope = claims.paper("sec5")["cifar10"]["slope"]
    c = claims.spec("sec5", "mean_slope")["criterion"]
    se = slope["std"] / slope["n"] ** 0.5                   # standard error, not the std
    assert (c["lo"], c["hi"]) == pytest.approx((slope["mean"] - z * se, slope["mean"] + z * se),
                                               abs=5e-3)
    jac = claims.paper("sec6")["cifar10"]["jacobian"]
    top, se = jac["top_eigenvalue"][0], jac["top_eigenvalue"][1] / jac["images"] ** 0.5
    c = claims.spec("sec6", "top_eigenvalue")["criterion"]
    assert (c["lo"], c["hi"]) == pytest.approx((top - z * se, top + z * se), abs=5e-4)
    s32 = claims.paper("sec32")["cifar10"]["correlation"]
    mid = (s32["fixed input"] + s32["fixed seed"]) / 2
    for sister in ("seeds_weakly_correlated", "inputs_almost_identical"):   # one bar
        assert claims.spec("sec32", sister)["criterion"]["threshold"] == pytest.approx(mid,
                                                                                   abs=1e-4)
    s4 = claims.paper("sec4")
    col = {c: i for i, c in enumerate(s4["columns"])}
    rows = s4["table1"]["rows"]
    half_gap = (rows["bpda-eot"][col["standard"]] - rows["pgd-eot"][col["standard"]]) / 200
    assert claims.spec("sec4", "pgd_stronger_than_bpda")["criterion"]["threshold"] == \
        pytest.approx(half_gap)
    assert claims.spec("sec4", "pgd_stronger_than_bpda_direction")["criterion"]["threshold"] == 0
    fuzzy = min((100 - r[col["m=0"]] - r[col["m=1"]]) / (100 - r[col["m=0"]])
                for name, r in rows.items() if name != "clean")
    c = claims.spec("sec4", "most_examples_fuzzy")
    assert c["paper_effect"]["cifar10"] == pytest.approx(fuzzy - c["criterion"]["threshold"],
                                                         abs=5e-4)
    assert "not_binary" not in claims.specs("sec4")           # m = 0 < standard: a tautology
    assert "alpha_half_close_to_standard" not in claims.specs("sec4")   # a reading, no claim


def test_every_criterion_says_when_it_was_registered():
    for section in claims.SECTIONS:
        for claim, entry in claims.specs(section).items():
            registered = entry["criterion"]["registered"]
            assert registered == "pre" or registered.startswith("post hoc (20"), (claim,
                                                                                  registered)


@pytest.mark.parametrize("section", claims.SECTIONS)
def test_claims_are_frozen_by_their_digest(section):
    """A section's claims (words, values, criteria, registration, sources) may change only
    with a new digest recorded in paper_data/frozen.yaml."""
    digest = claims.claims_digest(section)
    assert claims.frozen_digest(section) == digest, (
        f"the claims of paper_data/{section}.yaml changed since their digest was recorded. "
        f"Mark every criterion you wrote or changed registered: \"post hoc (YYYY-MM-DD)\" "
        f"(today's date), then record the new digest: append the line "
        f"'  - {{digest: {claims.claims_digest(section)}, date: YYYY-MM-DD}}' under "
        f"'{section}:' in lib/diffrob/paper_data/frozen.yaml")


def test_the_digest_sees_any_change_to_a_claim(monkeypatch):
    digest = claims.claims_digest("sec5")
    entries = claims.specs("sec5")
    changed = {**entries, "mean_slope": {**entries["mean_slope"],
                                         "criterion": {**entries["mean_slope"]["criterion"],
                                                       "hi": 7.0}}}
    monkeypatch.setattr(claims, "specs", lambda section: changed)
    assert claims.claims_digest("sec5") != digest


@pytest.mark.parametrize("change, message", [
    ({"criterion": {"kind": "above", "threshold": 0}}, "registered"),
    ({"criterion": {"kind": "above", "threshold": 0, "registered": "post hoc"}}, "registered"),
    ({"paper_effect": "large"}, "paper_effect must be a number"),
    ({"paper_effect": {"imagenet": 0.1}}, "needs a 'cifar10' entry"),
    ({"paper_effect": None, "criterion": {"kind": "within", "lo": 0, "hi": 1,
                                          "registered": "pre"}}, "half-width"),
    ({"paper_effect": "drop"}, "missing key 'paper_effect'"),
])
def test_bad_claims_are_refused_with_the_file_and_id(monkeypatch, change, message):
    entry = {**claims.specs("sec31")["l2_grows"], **change}
    if entry["paper_effect"] == "drop":
        del entry["paper_effect"]
    original = claims.paper
    monkeypatch.setattr(claims, "paper", lambda section: {**original(section),
                                                          "claims": {"l2_grows": entry}})
    with pytest.raises(ValueError, match=f"sec31.yaml: claim 'l2_grows'.*{message}"):
        claims.specs("sec31")


def test_judge_reads_the_criterion_and_decides():
    row = claims.judge("sec31", "l2_grows", est(2.5, 3.0))
    assert row["verdict"] == "holds" and row["criterion"] == "above 2"
    assert row["paper"].startswith("end / init 3.1") and "100 %" in row["source"]
    assert claims.judge("sec31", "l2_grows", est(1.2, 1.9))["verdict"] == "does not hold"
    assert claims.judge("sec31", "l2_grows", est(1.8, 2.2))["verdict"] == "inconclusive"
    assert claims.judge("sec31", "l2_grows", None)["verdict"] == "not tested"
    parts = claims.judge("sec31", "l2_grows", {"bpda": est(2.5, 3), "pgd": est(1.5, 2.5)})
    assert parts["verdict"] == "inconclusive" and parts["parts"]["bpda"]["verdict"] == "holds"
    assert "bpda: 2.75 [2.5, 3]" in parts["ours"]
    pct = claims.judge("sec4", "vote_helps", est(0.01, 0.03))
    assert pct["ours"] == "2 [1, 3] points" and pct["criterion"] == "above 0 points"
    assert row["registered"] == "pre"       # CIFAR-10: no result of it seen here
    assert claims.judge("sec31", "l2_grows", est(2.5, 3.0), "digits")["registered"] == \
        claims.spec("sec31", "l2_grows")["criterion"]["registered"]
    assert claims.judge("setup", "purification_costs_accuracy", None, "imagenet")["paper"] \
        .startswith("76.52")


@pytest.mark.parametrize("registered, world, expected", [
    ("post hoc (2026-12-04)", "digits", "post hoc (2026-12-04)"),   # after digits' first results
    ("post hoc (2026-11-25)", "digits", "post hoc (2026-11-25)"),   # on the same day
    ("post hoc (2026-11-24)", "digits", "pre"),                     # the day before
    ("post hoc (2026-11-29)", "mnist", "pre"),
    ("post hoc (2026-12-04)", "cifar10", "pre"),                    # no cifar10 result seen
    ("post hoc (2026-12-04)", "imagenet", "pre"),
    ("pre", "digits", "pre"),
])
def test_registration_is_decided_per_world_against_its_first_results(registered, world,
                                                                      expected):
    assert claims.first_results()["digits"].isoformat() == "2026-11-25"
    assert claims.registration({"registered": registered}, world) == expected


def test_a_bad_first_results_file_is_refused_with_its_name(monkeypatch, tmp_path):
    (tmp_path / "paper_data").mkdir()
    (tmp_path / "paper_data" / claims.FIRST_RESULTS).write_text("digits: soon\n")
    monkeypatch.setattr(claims.resources, "files", lambda package: tmp_path)
    with pytest.raises(ValueError, match="first_results.yaml.*world -> date"):
        claims.registration({"registered": "post hoc (2026-12-04)"}, "digits")


def test_judge_shows_the_power_and_labels_an_underpowered_verdict():
    wide = claims.judge("sec31", "l2_grows", est(0.5, 3.5))      # paper effect 1.11 (Table S2)
    assert wide["verdict"] == verdicts.UNDERPOWERED
    assert wide["mde"] == pytest.approx(verdicts.mde(est(0.5, 3.5)))
    assert wide["MDE"] == f"{wide['mde']:.3g}" and wide["effect"] == pytest.approx(1.11)
    assert wide["n needed"] == f"{math.ceil(10 * (wide['mde'] / 1.11) ** 2):,}"
    narrow = claims.judge("sec31", "l2_grows", est(1.9, 2.1))    # straddles, but could see 1.11
    assert narrow["verdict"] == verdicts.INCONCLUSIVE and narrow["mde"] < 1.11
    imagenet = claims.judge("sec31", "l2_grows", est(0.5, 3.5), "imagenet")
    assert imagenet["effect"] == pytest.approx(2.691) and imagenet["verdict"] == "inconclusive"
    parts = claims.judge("sec31", "l2_grows", {"bpda": est(2.5, 2.7), "pgd": est(0.5, 3.5)})
    assert parts["verdict"] == verdicts.UNDERPOWERED           # the undecided part decides
    assert parts["mde"] == pytest.approx(verdicts.mde(est(0.5, 3.5)))
    assert parts["parts"]["bpda"]["verdict"] == "holds"
    window = claims.judge("sec6", "compression_rate", est(0.1, 0.3))
    assert window["effect"] == pytest.approx((0.5 - 0.125) / 2)  # a window's half-width
    none = claims.judge("sec32", "centroid_spread", est(-1, 1))  # Fig. 2f: no paper number
    assert none["verdict"] == "inconclusive" and none["n needed"] == "no paper number"
    untested = claims.judge("sec31", "l2_grows", None)
    assert untested["MDE"] == untested["n needed"] == "" and untested["mde"] is None


def test_judge_rejects_unknown_claims_and_values():
    with pytest.raises(ValueError, match="not_a_claim.*sec31"):
        claims.judge("sec31", "not_a_claim", est(0, 1))
    with pytest.raises(ValueError, match="ours"):
        claims.judge("sec31", "l2_grows", 2.5)
    with pytest.raises(ValueError, match="section"):
        claims.judge("sec7", "l2_grows", est(0, 1))


def test_record_and_table_in_book_order(p):
    claims.record(p, "sec6", "compression_rate", est(0.2, 0.3))
    claims.record(p, "setup", "samplers_comparable", est(0.0, 0.02))
    claims.record(p, "sec31", "ssim_falls", est(0.1, 0.2))
    claims.record(p, "sec31", "l2_grows", est(1.0, 1.5))
    claims.record(p, "sec6", "compression_rate", est(0.6, 0.7))   # a rerun replaces the row
    rows = claims.table(p)
    assert [(r["section"], r["claim"]) for r in rows] == [
        ("setup", "samplers_comparable"), ("sec31", "l2_grows"), ("sec31", "ssim_falls"),
        ("sec6", "compression_rate")]
    last = rows[-1]
    assert last["verdict"] == "does not hold" and last["estimate"]["lo"] == 0.6
    assert last["criterion"] == "within [0.125, 0.5]" and last["paper"] == "≈ 0.25"
    assert claims.table(p.replace(world="cifar10")) == []


def test_a_stored_verdict_is_judged_again_under_todays_criterion(p, monkeypatch):
    claims.record(p, "sec31", "l2_grows", est(2.5, 3.0))
    claims.record(p, "sec31", "l2_grows", est(2.2, 2.4), protocol="strongest")
    assert [claims.table(p)[0][k] for k in ("verdict", "criterion")] == ["holds", "above 2"]
    original = claims.paper
    entry = original("sec31")["claims"]["l2_grows"]
    stricter = {**entry, "criterion": {**entry["criterion"], "threshold": 3.5}}
    monkeypatch.setattr(claims, "paper", lambda section: {
        **original(section), "claims": {**original(section)["claims"], "l2_grows": stricter}}
        if section == "sec31" else original(section))
    row = claims.table(p)[0]
    assert (row["verdict"], row["criterion"], row["estimate"]["lo"]) == \
        ("does not hold", "above 3.5", 2.5)
    assert row["protocols"]["strongest"]["verdict"] == "does not hold"


def test_rows_of_claims_no_longer_in_paper_data_are_left_out(p):
    claims.record(p, "sec4", "vote_helps", est(0.01, 0.03))
    stale = p.store_dir / "claims" / claims.params_digest(p) / "sec4" / "not_binary.json"
    stale.write_text(json.dumps({"section": "sec4", "claim": "not_binary"}))
    assert [r["claim"] for r in claims.table(p)] == ["vote_helps"]


def test_claims_are_keyed_by_the_parameters_that_change_results(p, tmp_path):
    claims.record(p, "sec6", "compression_rate", est(0.2, 0.3))
    other = p.replace(eot=5)
    assert claims.params_digest(other) != claims.params_digest(p)
    assert claims.table(other) == []                   # a -p eot 5 run is another set
    claims.record(other, "sec6", "compression_rate", est(0.6, 0.7))
    assert claims.table(p)[0]["verdict"] == "holds"    # the default set is untouched
    sets = claims.parameter_sets(p)
    assert set(sets) == {claims.params_digest(p), claims.params_digest(other)}
    assert sets[claims.params_digest(other)]["eot"] == 5
    # where files live and how fast it runs change nothing
    same = p.replace(results_dir=str(tmp_path / "elsewhere"), device="cpu", eot_batch=1,
                     checkpointing=not p.checkpointing)
    assert claims.params_digest(same) == claims.params_digest(p)


def test_claims_recorded_before_a_parameter_was_added_are_still_found(p):
    """A new parameter changes every digest; a set recorded before it (its params.json
    without the key, its folder under the old digest) is found while the new key is at its
    default, and new claims join it; at another value it is another set."""
    claims.record(p, "sec6", "compression_rate", est(0.2, 0.3))
    root = p.store_dir / "claims"
    old = root / "0123456789abcdef"
    (root / claims.params_digest(p)).rename(old)
    stored = json.loads((old / "params.json").read_text())
    assert stored.pop("pgd_schedule") == params.default("pgd_schedule") == "constant"
    (old / "params.json").write_text(json.dumps(stored))
    assert claims.params_digest(p) == old.name
    assert [r["claim"] for r in claims.table(p)] == ["compression_rate"]
    assert claims.cross_world(p.results_dir, {p.world: claims.params_digest(p)}).shape[0] == 1
    claims.record(p, "sec6", "top_eigenvalue", est(0.6, 0.7))
    assert sorted(f.name for f in (old / "sec6").iterdir()) == [
        "compression_rate.json", "top_eigenvalue.json"]
    other = p.replace(pgd_schedule="cosine")
    assert claims.params_digest(other) != old.name and claims.table(other) == []


def test_writes_are_atomic_and_leave_no_temporary_files(p):
    for i in range(3):
        claims.record(p, "sec31", "l2_grows", est(i, i + 1))
    folder = p.store_dir / "claims" / claims.params_digest(p)
    assert not [f for f in folder.rglob("*") if f.name.endswith(".tmp")]
    assert json.loads((folder / "sec31" / "l2_grows.json").read_text())["estimate"]["lo"] == 2


def test_a_failed_write_keeps_the_old_row_and_cleans_up(p, monkeypatch):
    claims.record(p, "sec31", "l2_grows", est(2.5, 3))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        claims.record(p, "sec31", "l2_grows", est(1, 1.5))
    monkeypatch.undo()
    assert claims.table(p)[0]["verdict"] == "holds"
    folder = p.store_dir / "claims" / claims.params_digest(p)
    assert not [f for f in folder.rglob("*") if f.name.endswith(".tmp")]


def test_a_damaged_claims_file_names_its_path(p):
    claims.record(p, "sec31", "l2_grows", est(2.5, 3))
    path = p.store_dir / "claims" / claims.params_digest(p) / "sec31" / "l2_grows.json"
    path.write_text('{"claim": "l2_gr')
    with pytest.raises(ValueError, match=f"{path}.*damaged"):
        claims.table(p)


def test_cross_world_table_one_row_per_claim(tmp_path):
    digits = params.load("params/digits.yaml", results_dir=str(tmp_path))
    claims.record(digits, "sec6", "compression_rate", est(0.2, 0.3))
    claims.record(digits, "sec31", "l2_grows", est(1.0, 1.5))
    claims.record(digits.replace(eot=5), "sec31", "ssim_falls", est(0.1, 0.2))  # another set
    other = digits.replace(world="cifar10", n_images=8)
    claims.record(other, "sec6", "compression_rate", est(0.6, 0.7))
    digests = claims.default_digests(tmp_path, ("digits", "mnist-not-there"))
    assert digests == {"digits": claims.params_digest(digits)}
    only_digits = claims.cross_world(tmp_path, digests)
    assert list(only_digits.index) == [("sec31", "l2_grows"), ("sec6", "compression_rate")]
    assert only_digits[("digits", "verdict")].tolist() == ["does not hold", "holds"]
    both = claims.cross_world(tmp_path, {**digests, "cifar10": claims.params_digest(other)})
    assert both.columns.get_level_values(0).unique().tolist() == ["paper (CIFAR-10)", "digits",
                                                                   "cifar10"]
    assert both.loc[("sec31", "l2_grows"), ("cifar10", "verdict")] == ""
    assert both.loc[("sec6", "compression_rate"), ("cifar10", "verdict")] == "does not hold"
    assert both.loc[("sec6", "compression_rate"), ("paper (CIFAR-10)", "value")] == "≈ 0.25"
    assert claims.cross_world(tmp_path, {"digits": "0" * 16}).empty


@pytest.mark.parametrize("capabilities, runs", [({"avx512_bf16": True}, "bf16"),
                                                 ({"avx2": True}, "none")])
def test_claims_are_filed_under_the_parameters_as_the_machine_runs_them(
        monkeypatch, tmp_path, capabilities, runs):
    """``autocast: auto``: a chapter records with its world's resolved parameters and the
    Summary looks up with the file's; both must name one set (sec. 4's verdicts depend on the
    precision the attacks ran in)."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    from_file = params.load("params/digits.yaml", results_dir=str(tmp_path), device="cpu")
    as_run = worlds.settled(from_file)
    assert (from_file.autocast, as_run.autocast) == ("auto", runs)
    claims.record(as_run, "sec6", "compression_rate", est(0.2, 0.3))
    assert claims.params_digest(from_file) == claims.params_digest(as_run)
    assert [r["claim"] for r in claims.table(from_file)] == ["compression_rate"]
    assert claims.settings(from_file)["autocast"] == runs
    assert claims.default_digests(tmp_path, ("digits",)) == {
        "digits": claims.params_digest(as_run)}


def test_estimates_from_real_statistics_round_trip(p):
    row = claims.record(p, "sec5", "sharp_transitions",
                        verdicts.proportion(np.r_[np.ones(30), np.zeros(5)] > 0))
    assert row["verdict"] == "holds" and row["estimate"]["method"] == "Wilson"
    assert claims.table(p)[0] == {**row, "protocols": {}}   # judged under no other protocol


def test_settings_are_what_the_digest_covers(p):
    s = claims.settings(p)
    assert "results_dir" not in s and "device" not in s and s["eot"] == p.eot
    assert claims.settings(p.replace(device="cpu", results_dir="/elsewhere")) == s
