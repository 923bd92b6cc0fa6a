"""The book build (scripts/build_book.py and its modules, scripts/book/).

What `make book` / `make chapter` show in the terminal: wrong parameters stopped before a
kernel starts, in one line; papermill's "unknown parameter" notice only for keys that are
not parameters; no kernel TCP warning; stage progress. The Colab cell, which `make
colab-cells` writes and `make book` does not; the bibliography and the execution page."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_book  # noqa: E402
from book import colab, records  # noqa: E402
from book.execute import (KnownParameters, ProgressLog, SharedKernel,  # noqa: E402
                          check_parameters, execute)
from book.toc import chapters, toc_pages  # noqa: E402


@pytest.mark.parametrize("params_file, overrides, says", [
    ("params/digits.yaml", {"eps": 3}, "did you mean 'eps_255'"),
    ("params/digits.yaml", {"eot": -1}, "parameter 'eot'"),
    ("params/nope.yaml", {}, "parameter file params/nope.yaml not found"),
])
def test_wrong_parameters_stop_the_build_in_one_line(params_file, overrides, says, capsys):
    with pytest.raises(SystemExit) as stop:
        check_parameters(params_file, overrides)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and says in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_valid_parameters_pass():
    check_parameters("params/digits.yaml", {"eps_255": 3.0, "eot": 5})


def test_make_chapter_reports_a_typo_before_any_kernel(tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_book.py"), "--chapter",
                           "04_fuzzy", "--no-html", "-p", "n_image", "4"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert "did you mean 'n_images'" in done.stderr and "Traceback" not in done.stderr
    assert "== 04" not in done.stdout  # no chapter started


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("papermill", logging.WARNING, __file__, 1, message, None, None)


def test_papermill_notice_is_dropped_only_for_real_parameters():
    keep = KnownParameters().filter
    assert not keep(record("Passed unknown parameter: eot"))
    assert keep(record("Passed unknown parameter: eotz"))
    assert keep(record("Input Notebook:  book/04_fuzzy.ipynb"))


def test_progress_log_prints_each_line_once_as_it_comes(tmp_path):
    got = []
    log = tmp_path / "x.progress"
    with ProgressLog(log, write=got.append, every=0.01):
        with open(log, "a") as f:
            f.write("pgd-eot (eot 15):  50% 1/2 [00:10<00:10]\npartial")
        time.sleep(0.2)
        assert got == ["pgd-eot (eot 15):  50% 1/2 [00:10<00:10]"]
        with open(log, "a") as f:
            f.write(" line\n")
    assert got[-1] == "partial line" and len(got) == 2


def tiny_chapter(folder: Path) -> Path:
    """A chapter-shaped notebook: a parameters cell, then a tqdm loop in the library's way."""
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('params_file = "params/smoke.yaml"')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell(
        "import diffrob, time\nfrom tqdm.auto import tqdm\n"
        "for _ in tqdm(range(3), desc='attack pgd-eot (eot 2)', unit='batch'):\n"
        "    time.sleep(0.1)\nprint(eot)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = folder / "99_tiny.py"
    nbformat.write(nb, path.with_suffix(".ipynb"))
    return path


def test_a_chapter_run_prints_stage_progress_and_no_false_notice(tmp_path, capfd, caplog):
    chapter = tiny_chapter(tmp_path)
    out = execute(chapter, tmp_path / "out.ipynb", "params/smoke.yaml",
                  {"eot": 2, "not_a_key": 1}, progress=False, logs=tmp_path / "logs")
    seen = capfd.readouterr()
    terminal = seen.out + seen.err
    assert "attack pgd-eot (eot 2): 100% 3/3" in terminal  # the stage, its batches, times
    notices = [r.getMessage() for r in caplog.records if r.name == "papermill"]
    assert "Passed unknown parameter: not_a_key" in notices
    assert "Passed unknown parameter: eot" not in notices
    assert "without encryption" not in terminal
    assert nbformat.read(out, 4).cells[-1].outputs[-1]["text"] == "2\n"



def test_a_shared_kernel_runs_chapters_in_turn_each_from_an_empty_namespace(tmp_path, capfd):
    chapter = tiny_chapter(tmp_path)
    nb = nbformat.read(chapter.with_suffix(".ipynb"), 4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os\nprint('left', 'marker' in dir(), os.getpid())\nmarker = 1"))
    nbformat.write(nb, chapter.with_suffix(".ipynb"))
    shared = SharedKernel()
    try:
        runs = [execute(chapter, tmp_path / f"out{i}.ipynb", "params/smoke.yaml", {"eot": eot},
                        progress=False, logs=tmp_path / f"logs{i}", kernel=shared)
                for i, eot in enumerate((2, 3))]
    finally:
        shared.close()
    cells = [nbformat.read(out, 4).cells for out in runs]
    first, second = (c[-1].outputs[-1]["text"].split() for c in cells)
    # One process; the second chapter does not see the name the first one defined.
    assert first[2] == second[2] and first[1] == second[1] == "False"
    assert [c[-2].outputs[-1]["text"] for c in cells] == ["2\n", "3\n"]
    # Each chapter's stage progress goes to its own log and to the terminal.
    for i in (0, 1):
        assert "attack pgd-eot (eot 2)" in (tmp_path / f"logs{i}" / "99_tiny.progress").read_text()
    assert capfd.readouterr().out.count("attack pgd-eot (eot 2): 100% 3/3") == 2


# --- Colab -------------------------------------------------------------------------------

@pytest.mark.parametrize("chapter", chapters(), ids=lambda c: c.stem)
def test_the_committed_chapter_has_the_colab_cell_of_the_config(chapter):
    assert colab.in_sync(chapter, colab.colab_cell()), (
        f"{chapter.stem}: its Colab cell (.py or .ipynb) differs from the one _config.yml "
        f"makes: run `make colab-cells` and commit book/{chapter.stem}.py and .ipynb")


def test_only_make_colab_cells_writes_the_chapters(monkeypatch):
    """`make book` and `make chapter` leave the sources as committed, even where a chapter's
    Colab cell is out of date; `make colab-cells` (--colab-cells) writes every such chapter."""
    written = []
    monkeypatch.setattr(colab, "colab_cell", lambda root=ROOT: "# Colab: another repository")
    monkeypatch.setattr(colab, "write_colab_cell", lambda chapter, cell: written.append(chapter.stem))
    monkeypatch.setattr(build_book, "execute", lambda *args, **kw: None)
    monkeypatch.setattr(build_book, "record_execution", lambda *args, **kw: None)
    assert build_book.main(["--chapter", "01", "--no-html"]) == 0
    assert build_book.main(["--check"]) == 0 and written == []
    assert build_book.main(["--colab-cells"]) == 0
    assert written == [c.stem for c in chapters()]


def test_the_colab_cell_follows_the_repository_of_the_config(tmp_path):
    import shutil

    import yaml

    for name in ("_toc.yml", "book"):
        (shutil.copytree if name == "book" else shutil.copy)(ROOT / name, tmp_path / name)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["repository"]["url"] = "https://github.com/someone/fork"
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    cell = colab.colab_cell(tmp_path)
    assert not any(colab.in_sync(c, cell) for c in chapters(tmp_path))
    assert colab.sync_colab_cells(tmp_path) == [c.stem for c in chapters(tmp_path)]
    for chapter in chapters(tmp_path):
        assert colab.in_sync(chapter, cell)
        assert '"https://github.com/someone/fork"' in chapter.read_text()
        notebook = chapter.with_suffix(".ipynb").read_text()
        assert "github.com/someone/fork" in notebook and config["repository"]["branch"] in notebook
        assert "diffrob-book" not in chapter.read_text() + notebook
    assert colab.sync_colab_cells(tmp_path) == []


def test_colab_keeps_its_torch_and_pins_the_rest_at_tested_versions():
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    cell = colab.colab_cell()
    assert '"--no-deps", "-e", "/content/diffrob"' in cell and "[paper]" not in cell
    pins = [Requirement(line) for line in (ROOT / "requirements-colab.txt").read_text().split("\n")
            if line and not line.startswith("#")]
    assert all(len(p.specifier) == 1 and next(iter(p.specifier)).operator == "==" for p in pins)
    pinned = {p.name.lower(): next(iter(p.specifier)).version for p in pins}
    assert not set(pinned) & set(colab.COLAB_KEEPS)
    project = [Requirement(r) for r in requires("diffrob")]
    for req in project:  # every requirement but Colab's own is pinned, within the project's range
        if req.name.lower() in colab.COLAB_KEEPS or req.name == "diffrob" or (
                req.marker and not req.marker.evaluate({"extra": "paper"})):
            continue
        assert req.name.lower() in pinned and req.specifier.contains(pinned[req.name.lower()])


# --- bibliography and execution page -----------------------------------------------------

WORKS = {  # key -> a word of its title
    "liu2025diffusion": "Adversarial Robustness", "nie2022diffpure": "Adversarial Purification",
    "ho2020ddpm": "Denoising Diffusion Probabilistic", "song2021ddim": "Implicit",
    "dhariwal2021guided": "Beat", "lee2023robust": "Robust Evaluation",
    "kang2023diffattack": "DiffAttack", "wang2024diffhammer": "DiffHammer",
    "athalye2018obfuscated": "Obfuscated", "carlini2019evaluating": "On Evaluating",
    "tramer2017space": "Transferable", "madry2018towards": "Resistant",
    "croce2020reliable": "Parameter-Free"}


def test_the_bibliography_has_every_work_with_title_authors_year_and_venue():
    import yaml
    from pybtex.database import parse_file

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["bibtex_bibfiles"] == ["book/references.bib"]
    entries = parse_file(ROOT / "book" / "references.bib").entries
    assert set(entries) == set(WORKS)
    for key, word in WORKS.items():
        e = entries[key]
        assert word in e.fields["title"] and e.persons["author"] and e.fields["year"].isdigit()
        assert e.fields.get("booktitle") or e.fields.get("journal"), key
    assert "book/references" in toc_pages()
    assert "```{bibliography}" in (ROOT / "book" / "references.md").read_text()


def test_execution_records_make_the_execution_page(tmp_path):
    from diffrob import claims, params

    record = records.record_execution("04_fuzzy", "params/smoke.yaml", {"eot": 2}, 61.4,
                                      logs=tmp_path)
    assert record.name == "04_fuzzy.json"
    digest = claims.params_digest(params.load(ROOT / "params/smoke.yaml", eot=2))
    template = (ROOT / "book" / "execution.md").read_text()
    page = records.execution_page(template, ["04_fuzzy", "05_cap"], tmp_path)
    assert records.EXECUTION_MARK not in page
    row = next(line for line in page.splitlines() if line.startswith("| 04_fuzzy"))
    assert f"`{digest}`" in row and "`params/smoke.yaml`, `eot=2`" in row and "61 s" in row
    import diffrob
    assert f"| {diffrob.__version__}, `" in row and records.git_commit().rstrip("+") in row
    assert "| 05_cap | not recorded |" in page
    assert page.index(":::{div} execution-table") < page.index("| chapter |") < \
        page.rindex(":::")
    with pytest.raises(ValueError, match="execution.md"):
        records.execution_page("# no mark", ["04_fuzzy"], tmp_path)


def test_a_built_page_resolves_citations_and_offers_its_executed_notebook(tmp_path):
    """A small book with the project's _config.yml (less the widget files), a chapter-like
    notebook citing the paper, the execution page and the references, through `jb build -W`."""
    import shutil

    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    for key in ("html_static_path", "nb_ipywidgets_js"):
        config["sphinx"]["config"].pop(key)
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                       "  - file: book/tiny\n  - file: book/execution\n"
                                       "  - file: book/references\n")
    book = tmp_path / "book"
    book.mkdir()
    (book / "intro.md").write_text("# Intro\n")
    for name in ("references.md", "references.bib"):
        shutil.copy(ROOT / "book" / name, book / name)
    records.record_execution("tiny", "params/smoke.yaml", {}, 1.0, logs=tmp_path / "logs")
    (book / "execution.md").write_text(records.execution_page(
        (ROOT / "book" / "execution.md").read_text(), ["tiny"], tmp_path / "logs"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny\nAs {cite:t}`liu2025diffusion` show."),
                nbformat.v4.new_code_cell("1 + 1")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, book / "tiny.ipynb")
    jb = Path(sys.executable).with_name("jb")
    import subprocess

    done = subprocess.run([str(jb), "build", str(tmp_path), "--builder", "html", "-W"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    html = tmp_path / "_build" / "html" / "book"
    tiny = (html / "tiny.html").read_text()
    assert "references.html#" in tiny and "2025" in tiny  # the citation resolved
    assert "_sources/book/tiny.ipynb" in tiny  # the download button's notebook
    assert "colab.research.google.com/github/" + config["repository"]["url"].split(
        "github.com/")[1] in tiny
    assert "Dhariwal" in (html / "references.html").read_text()
    assert "params/smoke.yaml" in (html / "execution.html").read_text()
