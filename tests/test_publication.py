"""The book as a publication (issue 14): the reproduce line, glued numbers, equations and
figure references, checked statically on the chapters' py:percent sources (no execution;
tests/test_book.py executes the chapters and checks the reproduce line under every output)."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

from diffrob import figures, params

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]*_*.py"))
IDS = [c.stem for c in CHAPTERS]


def test_reproduce_names_the_chapter_params_and_overrides() -> None:
    base = params.load(ROOT / "params" / "digits.yaml")
    line = figures.Reproduce(base, "params/digits.yaml", "04_fuzzy")
    assert line.command == "make chapter CH=04_fuzzy PARAMS=params/digits.yaml"
    changed = params.load(ROOT / "params" / "digits.yaml", eot=base.eot + 1,
                          uniform_eps_255=[8, 16])
    other = figures.Reproduce(changed, "params/digits.yaml", "04_fuzzy")
    assert other.command == (f"make chapter CH=04_fuzzy PARAMS=params/digits.yaml "
                             f"ARGS=\"-p eot {base.eot + 1} -p uniform_eps_255 '[8, 16]'\"")
    assert line.digest != other.digest and line.digest in line.line.data
    assert line.line.data.startswith("<small>" + figures.REPRODUCE_MARK)
