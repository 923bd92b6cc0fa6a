"""Claims: the paper's numbers as data, chapters' verdicts joined in the book's order."""

import pytest

from diffrob import claims, params


@pytest.mark.parametrize("section", claims.SECTIONS)
def test_every_section_has_the_papers_numbers(section):
    assert claims.paper(section)


def test_record_and_table_in_book_order(tmp_path):
    p = params.load("params/smoke.yaml", results_dir=str(tmp_path))
    claims.record(p, "sec6", "rate", "~0.25", "0.41", True)
    claims.record(p, "setup", "accuracy", "85.75", "93.8", None)
    claims.record(p, "sec31", "l2 grows", "3.6", "1.1", False)
    claims.record(p, "sec6", "rate", "~0.25", "0.30", True)  # a rerun replaces the row
    rows = claims.table(p)
    assert [(r["section"], r["claim"]) for r in rows] == [
        ("setup", "accuracy"), ("sec31", "l2 grows"), ("sec6", "rate")]
    assert rows[-1] == {"section": "sec6", "claim": "rate", "paper": "~0.25", "ours": "0.30",
                        "holds": True}
    assert claims.table(p.replace(world="cifar10")) == []
