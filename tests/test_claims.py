"""Claims: criteria as data, rows stored per parameter set, atomic and named on damage."""

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest

from diffrob import claims, params, verdicts
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
    s31 = claims.paper("sec31")["cifar10"]["l2"]
    gap = max(s31[a]["end"][0] for a in ("bpda", "bpda-eot", "pgd", "pgd-eot")) / \
        s31["uniform_8"]["end"][0]
    c = claims.spec("sec31", "attacks_like_uniform")["criterion"]
    assert c["hi"] == pytest.approx(gap, abs=5e-4) and c["lo"] == pytest.approx(2 - gap, abs=5e-4)
    s4 = claims.paper("sec4")
    cols = s4["columns"]
    worst = max(abs(r[cols.index("alpha=0.5")] - r[cols.index("standard")])
                for r in s4["table1"]["rows"].values())
    assert claims.spec("sec4", "alpha_half_close_to_standard")["criterion"]["hi"] == \
        pytest.approx(worst / 100)
    setup = claims.paper("setup")["cifar10"]["purified_clean_accuracy"]
    spread = max(r["value"] for r in setup.values()) - min(r["value"] for r in setup.values())
    assert claims.spec("setup", "samplers_comparable")["criterion"]["threshold"] == \
        pytest.approx(spread / 100)
    slope = claims.paper("sec5")["cifar10"]["slope"]
    c = claims.spec("sec5", "mean_slope")["criterion"]
    assert (c["lo"], c["hi"]) == pytest.approx((slope["mean"] - slope["std"],
                                                slope["mean"] + slope["std"]))
    top = claims.paper("sec6")["cifar10"]["jacobian"]["top_eigenvalue"]
    c = claims.spec("sec6", "top_eigenvalue")["criterion"]
    assert (c["lo"], c["hi"]) == pytest.approx((top[0] - top[1], top[0] + top[1]))
    s32 = claims.paper("sec32")["cifar10"]["correlation"]
    mid = (s32["fixed input"] + s32["fixed seed"]) / 2
    assert claims.spec("sec32", "seeds_weakly_correlated")["criterion"]["threshold"] == \
        pytest.approx(mid, abs=1e-4)


def test_no_chapter_or_report_types_a_threshold():
    """Chapters and their wings pass statistics; the decision and its numbers come from
    paper_data. Every section of the book records its claims somewhere."""
    sources = [*Path("book").glob("[0-9][0-9]*_*.py"),
               *(f for f in Path("lib/diffrob").rglob("*.py") if f.name != "claims.py")]
    recorded = set()
    for source in sources:
        tree = ast.parse(source.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Attribute) and n.func.attr == "record"
                 and isinstance(n.func.value, ast.Name) and n.func.value.id == "claims"]
        for call in calls:
            assert len(call.args) == 4 and not call.keywords, (str(source), call.lineno)
            assert not [n for n in ast.walk(call) if isinstance(n, (ast.Compare, ast.BoolOp))
                        or isinstance(n, ast.Constant) and isinstance(n.value, bool)], (
                f"{source} line {call.lineno}: a comparison in claims.record")
            recorded.add(getattr(call.args[1], "value", None))
    assert set(claims.SECTIONS) <= recorded, sorted(set(claims.SECTIONS) - recorded)


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
    assert claims.judge("setup", "purification_costs_accuracy", None, "imagenet")["paper"] \
        .startswith("76.52")


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


def test_estimates_from_real_statistics_round_trip(p):
    row = claims.record(p, "sec5", "sharp_transitions",
                        verdicts.proportion(np.r_[np.ones(30), np.zeros(5)] > 0))
    assert row["verdict"] == "holds" and row["estimate"]["method"] == "Wilson"
    assert claims.table(p)[0] == row


def test_settings_are_what_the_digest_covers(p):
    s = claims.settings(p)
    assert "results_dir" not in s and "device" not in s and s["eot"] == p.eot
    assert claims.settings(p.replace(device="cpu", results_dir="/elsewhere")) == s
