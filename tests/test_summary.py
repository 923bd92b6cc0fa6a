"""The Summary wing: the claims recorded for one parameter set, their verdicts counted by
section, and the same claims across worlds."""

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from IPython.display import Markdown

from diffrob import claims, params
from diffrob.figures import Table
from diffrob.summary import analysis, report
from diffrob.verdicts import Estimate, VERDICTS


def est(lo, hi):
    return Estimate((lo + hi) / 2, lo, hi, 10, "test")


@pytest.fixture
def digits(tmp_path):
    """The digits parameters, with three claims recorded (one holds, one does not, one not
    tested) and one claim under another parameter set (``eot = 5``)."""
    p = params.load("params/digits.yaml", results_dir=str(tmp_path))
    claims.record(p, "sec6", "compression_rate", est(0.2, 0.3))          # holds
    claims.record(p, "sec31", "l2_grows", est(1.0, 1.5))                  # does not hold
    claims.record(p, "setup", "samplers_comparable", None)                # not tested
    claims.record(p.replace(eot=5), "sec31", "ssim_falls", est(0.1, 0.2))
    return p


def test_recorded_rows_in_book_order_with_the_papers_section_numbers(digits):
    r = report.recorded(digits, "params/digits.yaml")
    assert r.digest == claims.params_digest(digits) and r.params_file == "params/digits.yaml"
    assert r.rows[["section", "claim"]].values.tolist() == [
        ["Setup", "samplers_comparable"], ["3.1", "l2_grows"], ["6", "compression_rate"]]
    assert list(r.rows.columns) == ["section", "claim", *claims.COLUMNS, "registered",
                                    "other protocols"]
    assert r.rows["registered"].tolist() == [
        claims.spec(s, c)["criterion"]["registered"]
        for s, c in [("setup", "samplers_comparable"), ("sec31", "l2_grows"),
                     ("sec6", "compression_rate")]]


def test_parameter_sets_name_this_set_and_how_the_others_differ(digits):
    text = report.parameter_sets(report.recorded(digits, "params/digits.yaml"))
    first, other = text.splitlines()
    assert first == (f"World **digits**, parameters `params/digits.yaml` (with any `-p` "
                     f"overrides), digest `{claims.params_digest(digits)}`: **3** claims recorded.")
    assert other == f"- not shown: set `{claims.params_digest(digits.replace(eot=5))}` (eot = 5)"


def test_claims_and_sources_tables(digits):
    r = report.recorded(digits, "params/digits.yaml")
    verdicts = report.claims_table(r)
    assert isinstance(verdicts, Table) and verdicts.name == "tbl-summary-claims"
    assert list(verdicts.frame.columns) == ["section", "claim", "paper", "ours", "criterion",
                                            "verdict", "MDE", "n needed", "other protocols"]
    assert verdicts.frame["verdict"].tolist() == ["not tested", "does not hold", "holds"]
    assert verdicts.frame["other protocols"].tolist() == ["", "", ""]
    assert verdicts.frame["MDE"].tolist()[0] == ""                 # not tested: no power
    assert verdicts.frame["n needed"].tolist()[1] == claims.judge(
        "sec31", "l2_grows", est(1.0, 1.5))["n needed"]
    assert f"digest `{r.digest}`" in verdicts.caption
    assert "no table of the paper" in verdicts.caption
    sources = report.sources_table(r)
    assert sources.name == "tbl-summary-sources" and not sources.index
    assert list(sources.frame.columns) == ["section", "claim", "words", "source", "registered"]
    assert sources.frame["registered"].str.match(r"pre$|post hoc \(\d{4}-\d\d-\d\d\)$").all()


def test_rows_recorded_before_the_power_and_registration_fields_show_empty(digits):
    folder = digits.store_dir / "claims" / claims.params_digest(digits) / "sec5"
    folder.mkdir(parents=True)
    old = {"section": "sec5", "claim": "mean_slope", "words": "w", "paper": "5.91",
           "ours": "6 [5, 7]", "criterion": "within [4.84, 6.98]", "source": "s",
           "verdict": "inconclusive"}
    (folder / "mean_slope.json").write_text(json.dumps(old))
    r = report.recorded(digits, "params/digits.yaml")
    shown = r.rows.set_index("claim").loc["mean_slope"]
    assert shown["MDE"] == shown["registered"] == "" and shown["verdict"] == "inconclusive"


def test_verdicts_figure_stacks_each_sections_verdicts(digits):
    fig = report.verdicts_figure(report.recorded(digits, "params/digits.yaml"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Setup", "3.1", "6"]
    assert ax.get_title() == "Claims of the paper tested in the digits world"
    assert ax.get_legend().get_title().get_text() == "verdict"
    assert len(report.VERDICT_COLOURS) == len(VERDICTS)           # one colour per verdict
    plt.close(fig)


def test_verdicts_figure_without_claims_says_so(tmp_path):
    p = params.load("params/digits.yaml", results_dir=str(tmp_path))
    fig = report.verdicts_figure(report.recorded(p, "params/digits.yaml"))
    assert "no claims recorded under" in fig.axes[0].texts[0].get_text()
    plt.close(fig)


def test_what_it_says_counts_and_quotes_what_does_not_hold(digits):
    text = report.what_it_says(report.recorded(digits, "params/digits.yaml"))
    pre = sum(claims.spec(s, c)["criterion"]["registered"] == "pre"
              for s, c in [("setup", "samplers_comparable"), ("sec31", "l2_grows"),
                           ("sec6", "compression_rate")])
    assert text.startswith("Claims recorded in the `digits` world: **3**. Holding here: **1**; "
                           "not holding: **1**; inconclusive: **0**; underpowered: **0**; not "
                           f"tested: **1**. Criteria pre-registered: **{pre}** of 3 (the others "
                           "were fixed post hoc, after results had been seen).")
    words = claims.spec("sec31", "l2_grows")["words"]
    assert text.endswith(f" The claims that do not hold here: 3.1: \"{words}\".")


def test_across_worlds_one_row_per_claim_and_a_note_without_claims(digits, tmp_path):
    table = report.across_worlds(digits)
    assert isinstance(table, Table) and table.name == "tbl-summary-worlds"
    assert list(table.frame.index) == [("Setup", "samplers_comparable"), ("3.1", "l2_grows"),
                                       ("6", "compression_rate")]
    assert table.frame[("digits", "verdict")].tolist() == ["not tested", "does not hold", "holds"]
    empty = report.across_worlds(digits.replace(results_dir=str(tmp_path / "none")))
    assert isinstance(empty, Markdown) and "No claims recorded" in empty.data


def test_verdict_counts_and_tally():
    rows = pd.DataFrame({"section": ["3.1", "Setup", "3.1"],
                         "verdict": ["holds", "inconclusive", "holds"]})
    counts = analysis.verdict_counts(rows, ["Setup", "3.1", "5"], VERDICTS)
    assert counts.index.tolist() == ["Setup", "3.1"] and counts.columns.tolist() == list(VERDICTS)
    assert counts.loc["3.1"].tolist() == [2, 0, 0, 0, 0]
    assert counts.loc["Setup", "inconclusive"] == 1
    assert analysis.tally(rows["verdict"], VERDICTS).tolist() == [2, 0, 1, 0, 0]
    assert analysis.pre_registered(pd.Series(["pre", "post hoc (2026-11-30)", ""])) == 1
    assert analysis.differing({"eot": 5, "seed": 0, "new": 1}, {"eot": 2, "seed": 0}) == {"eot": 5}


def test_protocol_verdicts_name_each_further_protocol():
    assert analysis.protocol_verdicts({}) == ""
    assert analysis.protocol_verdicts({"strongest protocol": {"verdict": "holds"},
                                       "worst of 10": {"verdict": "does not hold"}}) == (
        "strongest protocol: holds; worst of 10: does not hold")
