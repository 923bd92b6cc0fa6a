"""The book as a publication: the reproduce line, glued numbers, equations and
figure references, checked statically on the chapters' py:percent sources (no execution;
tests/test_book.py executes the chapters and checks the reproduce line under every output)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import jupytext
import numpy as np
import pandas as pd
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


SKIPPED_CALLS = {"print", "display", "reproduce", "Markdown", "glue"}


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def shows_result(cell) -> bool:
    """Whether a code cell shows a table, figure or widget: it calls ``plt.show()`` or
    ``display(x)`` with ``x`` other than Markdown, or ends in an expression that is not a call of
    print, display, Markdown, glue or reproduce."""
    tags = cell.metadata.get("tags", [])
    if cell.cell_type != "code" or "remove-cell" in tags or "parameters" in tags:
        return False
    tree = ast.parse(cell.source)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if (_name(node) == "show" and isinstance(node.func, ast.Attribute)
                and getattr(node.func.value, "id", "") == "plt"):
            return True
        if _name(node) == "display" and node.args and not (
                isinstance(node.args[0], ast.Call) and _name(node.args[0]) == "Markdown"):
            return True
    last = tree.body[-1] if tree.body else None
    return isinstance(last, ast.Expr) and not (isinstance(last.value, ast.Call)
                                               and _name(last.value) in SKIPPED_CALLS)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_every_table_and_figure_has_a_reproduce_line_under_it(chapter: Path) -> None:
    cells = jupytext.read(chapter).cells
    setup = [c for c in cells if f'chapter.open(params_file, globals(), "{chapter.stem}")'
             in c.source]
    assert len(setup) == 1, (f"{chapter.name}: open the chapter once, "
                             f"chapter.open(params_file, globals(), {chapter.stem!r})")
    missing = [i for i, c in enumerate(cells) if shows_result(c) and not (
        i + 1 < len(cells) and cells[i + 1].source.strip() == "reproduce()"
        and "remove-input" in cells[i + 1].metadata.get("tags", []))]
    assert not missing, (f"{chapter.name}: cells {missing} show a table or figure without a "
                         "`reproduce()` cell (tagged remove-input) right after them")


def test_the_result_rule_recognises_results() -> None:
    code = lambda src: jupytext.reads(f"# %%\n{src}\n", fmt="py:percent").cells[0]
    assert shows_result(code("x = 1\nplt.show()"))
    assert shows_result(code("table"))
    assert shows_result(code("display(table.round(1))"))
    assert not shows_result(code("display(Markdown('text'))"))
    assert not shows_result(code("x = 1"))
    assert not shows_result(code("print(x)"))


# A cell that shows a slider of precomputed views (a figure of its own): a report function
# named for its slider, browser or scrubber.
SLIDER = re.compile(r"\b\w*(slider|browser|scrubber)\w*\(")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_set_up_is_hidden_and_figures_are_captioned(chapter: Path) -> None:
    """Results first: the set-up cell's code is collapsed; a figure cell with a caption shows
    one figure (myst-nb wraps every output of the cell in the figure) and names a figure of the
    paper or says it has none."""
    nb = jupytext.read(chapter)
    assert "mystnb" in nb.metadata["jupytext"]["cell_metadata_filter"], (
        f"{chapter.name}: the header's cell_metadata_filter must keep `mystnb` (figure captions)")
    code = [c for c in nb.cells if c.cell_type == "code"
            and not {"remove-cell", "parameters"} & set(c.metadata.get("tags", []))]
    assert "hide-input" in code[0].metadata.get("tags", []), f"{chapter.name}: set-up cell shown"
    captioned = [c for c in code if "mystnb" in c.metadata]
    assert captioned, f"{chapter.name}: no numbered figure"
    uncaptioned = [c.source.splitlines()[0] for c in code if "mystnb" not in c.metadata and (
        "plt.show()" in c.source or SLIDER.search(c.source))]
    assert not uncaptioned, f"{chapter.name}: figures without number and caption: {uncaptioned}"
    for c in captioned:
        figure = c.metadata["mystnb"]["figure"]
        last = c.source.strip().splitlines()[-1]
        one_figure = c.source.count("plt.show()") == 1 or (
            "plt.show()" not in c.source and SLIDER.search(last))
        assert figure["name"].startswith("fig-") and one_figure, figure["name"]
        # myst-nb puts every output of a captioned cell in the figure: a second output (a
        # table) repeats the figure's name, which `jb build -W` refuses
        assert not re.search(r"^\s*display\(|^\S.*\.style\b", c.source, re.M), (
            f"{chapter.name}: captioned cell {figure['name']} shows more than its figure")
        assert re.search(r"paper's (Fig|Appendix)|no figure of the paper|the paper shows",
                         figure["caption"]), figure["caption"]


PAPER_DATA = "\n".join(p.read_text() for p in (ROOT / "lib" / "diffrob" / "paper_data").glob("*.yaml"))
GLUE_ROLE = re.compile(r"\{glue:(?:text|md|any)\}`([^`:]+)(?::[^`]*)?`")


def said_here(cells) -> list[str]:
    """The "What it says here" paragraphs of a chapter, as Markdown (written in a markdown
    cell, or by a code cell through Markdown(...), as the Summary does)."""
    return [c.source for c in cells if "What it says here" in c.source]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_glued_names_are_glued_by_the_chapter(chapter: Path) -> None:
    cells = jupytext.read(chapter).cells
    used = {m for c in cells if c.cell_type == "markdown" for m in GLUE_ROLE.findall(c.source)}
    glued = {m for c in cells if c.cell_type == "code"
             for m in re.findall(r"""\bglue\(\s*["']([^"']+)["']""", c.source)}
    assert used <= glued, f"{chapter.name}: {{glue:text}} names never glued: {sorted(used - glued)}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_what_it_says_here_types_no_number_of_ours(chapter: Path) -> None:
    """A decimal number in "What it says here" is glued from the run or is the paper's (it
    appears in lib/diffrob/paper_data/); the Summary writes its paragraph from the run."""
    paragraphs = said_here(jupytext.read(chapter).cells)
    assert paragraphs, f"{chapter.name}: no 'What it says here' paragraph"
    for text in paragraphs:
        text = GLUE_ROLE.sub("", text)
        text = re.sub(r"\{[^}]*\}|f\"[^\"]*\"", "", text)  # f-strings are computed text
        typed = [x for x in re.findall(r"(?<![\w.])\d+\.\d+", text) if x not in PAPER_DATA]
        assert not typed, f"{chapter.name}: hand-typed numbers in 'What it says here': {typed}"


# The paper's equations the book uses, by label.
EQUATIONS = {"eq1": "eq. 1", "eq2": "eq. 2", "eq3": "eq. 3", "eq7": "eq. 7", "eq8": "eq. 8",
             "eq9": "eq. 9",
             "eq10": "eq. 10", "def1": "Definition 1", "def2": "Definition 2",
             "def3": "Definition 3"}
MATH = re.compile(r"```\{math\}\n:name: (\w+)\n(.*?)\n```", re.S)
TEXT = {c.stem: "\n".join(cell.source for cell in jupytext.read(c).cells
                          if cell.cell_type == "markdown") for c in CHAPTERS}


def test_every_equation_is_numbered_as_in_the_paper_and_implemented() -> None:
    """Each equation is a MyST math block named ``eqN``/``defN`` whose ``\\tag`` is the paper's
    number, followed in its cell by the library functions implementing it, whose docstrings
    cite it back."""
    import importlib

    blocks = {name: (stem, tex) for stem, text in TEXT.items() for name, tex in MATH.findall(text)}
    assert sorted(blocks) == sorted(EQUATIONS), f"equation blocks: {sorted(blocks)}"
    for name, (stem, tex) in blocks.items():
        number = re.sub(r"\D", "", name)
        assert tex.rstrip().endswith(f"\\tag{{{'Def. ' if name.startswith('def') else ''}{number}}}"), name
        cell = next(c.source for c in jupytext.read(ROOT / "book" / f"{stem}.py").cells
                    if f":name: {name}\n" in c.source)
        functions = re.findall(r"`(diffrob\.[\w.]+)`", cell.split(f":name: {name}\n", 1)[1])
        citing = []
        for dotted in functions:
            module, attr = dotted.rsplit(".", 1)
            citing += [dotted] * (EQUATIONS[name].lower()
                                  in (getattr(importlib.import_module(module), attr).__doc__ or "").lower())
        assert citing, f"{name}: none of {functions} (after its block) cites {EQUATIONS[name]!r}"


REPORTS = sorted((ROOT / "lib" / "diffrob").glob("*/report*.py"))


def tables(source: Path) -> list[tuple[str, str]]:
    """The ``(name, caption)`` of every ``Table(frame, name, caption)`` call of a wing's report
    module, the caption's f-string parts as written."""
    found = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Call) and _name(node) == "Table":
            name, caption = node.args[1], node.args[2]
            parts = caption.values if isinstance(caption, ast.JoinedStr) else [caption]
            found.append((name.value, "".join(p.value for p in parts
                                              if isinstance(p, ast.Constant))))
    return found


def test_tables_are_named_once_and_name_the_papers_table() -> None:
    """Every result table of the book (tests/test_book.py checks that no other kind is shown)
    has a label of its own (labels are global in Sphinx) and a caption naming the paper's
    table, figure, section or appendix it reproduces, or saying it has none."""
    named = [t for report in REPORTS for t in tables(report)]
    names = [n for n, _ in named]
    assert len(named) >= 40 and all(n.startswith("tbl-") for n in names), names
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    for name, caption in named:
        assert re.search(r"paper's (Table|Fig|sec|Appendix)|no table of the paper", caption), (
            f"{name}: the caption names no table, figure or section of the paper: {caption!r}")


def test_pipe_table_keeps_labels_values_and_blanks() -> None:
    frame = pd.DataFrame({("ours", "standard"): [81.54, np.nan], ("paper", "note"): ["a|b", "t* $x_1$"]},
                         index=pd.Index(["bpda", "pgd"], name="attack"))
    assert figures.pipe_table(frame).splitlines() == [
        "| attack | ours / standard | paper / note |", "|:---|---:|:---|",
        "| bpda | 81.54 | a\\|b |", "| pgd |  | t\\* \\$x\\_1\\$ |"]
    intervals = pd.DataFrame({"interval": ["[12.5,\u00a062.5]", None], "text": ["[a, b]", "c"]})
    assert figures.pipe_table(intervals, index=False).splitlines()[1] == "|---:|:---|"
    table = figures.Table(frame, "tbl-x", "A caption.")
    assert table._repr_markdown_().startswith(":::{table} A caption.\n:name: tbl-x\n\n| attack")
    assert "<table" in table._repr_html_()
    with pytest.raises(ValueError, match="'x'"):
        figures.Table(frame, "x", "A caption.")


def test_references_resolve_to_equations_figures_and_tables() -> None:
    """Every {ref} and {numref} of a chapter names an equation block, a captioned figure or a
    table of the book (an unresolved one would also fail `jb build -W`, but only at build
    time)."""
    names = {n for text in TEXT.values() for n, _ in MATH.findall(text)}
    for chapter in CHAPTERS:
        names |= {c.metadata["mystnb"]["figure"]["name"] for c in jupytext.read(chapter).cells
                  if "mystnb" in c.metadata}
    names |= {name for report in REPORTS for name, _ in tables(report)}
    for stem, text in TEXT.items():
        refs = re.findall(r"\{(?:ref|numref)\}`(?:[^`<]*<)?([\w-]+)>?`", text)
        assert set(refs) <= names, f"{stem}: unresolved references {sorted(set(refs) - names)}"
    assert "{ref}`eq. (9) <eq9>`" in TEXT["03_randomness"]
