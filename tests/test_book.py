"""The book's infrastructure: chapters and toc, notebook/text pairing, Colab
cells, `_config.yml`, one smoke execution per chapter on `digits`, one on
`params/cifar10.yaml` with a fake CIFAR-10 world and one on `params/imagenet.yaml` with a
fake ImageNet world, and the static widgets in a headless browser.

Every chapter listed in `_toc.yml` is picked up; a listed chapter whose files are
missing fails here, with its name.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from book.assemble import MATHJAX, WIDGET_CONFIG, WIDGET_JS, assemble, build_html  # noqa: E402
from book.execute import SharedKernel, execute  # noqa: E402
from book.pages import page_check_tools  # noqa: E402
from book.postprocess import strip_progress_bars  # noqa: E402
from book.toc import chapters, find_chapter, toc_pages  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
CHAPTERS = chapters()
IDS = [c.stem for c in CHAPTERS]
TABLE_OR_WIDGET = ("text/html", "application/vnd.jupyter.widget-view+json")


def cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    """What pairing must keep equal: each cell's type, source and tags."""
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", [])))
            for c in notebook.cells]


def read_text(chapter: Path) -> nbformat.NotebookNode:
    """A chapter's py:percent source, or a failure naming the missing file."""
    assert chapter.is_file(), f"{chapter.relative_to(ROOT)} is listed in _toc.yml but does not exist"
    return jupytext.read(chapter)


def code_cells(chapter: Path) -> list[nbformat.NotebookNode]:
    return [c for c in read_text(chapter).cells if c.cell_type == "code"]


# --- toc and chapters ------------------------------------------------------------

def test_toc_lists_the_chapters_in_order_with_the_summary_last() -> None:
    pages = toc_pages()
    assert pages[0] == "book/index" and (ROOT / "book" / "index.md").is_file()
    names = [c.stem for c in CHAPTERS]
    assert names == sorted(names), "chapters must be listed in their numbered order"
    assert names[-1] == "07_summary", "the Summary reads every chapter's claims: it runs last"
    on_disk = {p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.py")}
    assert on_disk <= set(names), f"chapters not in _toc.yml: {sorted(on_disk - set(names))}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_notebook_is_in_sync_with_its_text_and_has_no_outputs(chapter: Path) -> None:
    text = read_text(chapter)
    notebook = chapter.with_suffix(".ipynb")
    assert notebook.is_file(), f"{notebook.name} missing: run jupytext --set-formats ipynb,py:percent"
    ipynb = nbformat.read(notebook, as_version=4)
    assert cells(ipynb) == cells(text), (
        f"{notebook.name} differs from {chapter.name}: run `jupytext --sync {chapter}`")
    assert ipynb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    # A kernel name lets plain `papermill book/NN.ipynb ...` (and Colab) run it as is.
    assert ipynb.metadata.get("kernelspec", {}).get("name") == "python3", (
        f"{notebook.name} names no kernel: run `jupytext --set-kernel python3 {chapter}`")
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{notebook.name} holds outputs: the committed notebook must be output-free")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_headings_have_one_title_and_no_skipped_levels(chapter: Path) -> None:
    """What `jb build -W` rejects: a heading level skipped (# then ###), or no title."""
    levels, fenced = [], False
    for cell in read_text(chapter).cells:
        for line in cell.source.splitlines() if cell.cell_type == "markdown" else []:
            fenced ^= line.lstrip().startswith("```")
            if not fenced and re.match(r"#{1,6} ", line):
                levels.append(len(line.split(" ")[0]))
    assert levels[:1] == [1] and levels.count(1) == 1, f"{chapter.name}: one '# Title' first"
    jumps = [(a, b) for a, b in zip(levels, levels[1:]) if b > a + 1]
    assert not jumps, f"{chapter.name}: heading levels skip: {jumps}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_first_code_cell_installs_the_project_in_colab(chapter: Path) -> None:
    first = code_cells(chapter)[0]
    repo = CONFIG["repository"]
    assert "remove-cell" in first.metadata.get("tags", [])
    assert '"google.colab" in sys.modules' in first.source
    assert f'"git", "clone", "-b", "{repo["branch"]}", "{repo["url"]}"' in first.source, (
        f"the Colab cell of {chapter.name} must clone {repo['url']} at {repo['branch']} "
        "(the repository named in _config.yml)")
    assert '"pip", "install"' in first.source


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_parameters_cell_names_a_params_file(chapter: Path) -> None:
    tagged = [c for c in code_cells(chapter) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{chapter.name}: expected one cell tagged 'parameters'"
    first_line = tagged[0].source.splitlines()[0]
    assert first_line.startswith("params_file = ")
    assert (ROOT / ast.literal_eval(first_line.removeprefix("params_file = "))).is_file()


def test_config_serves_widgets_locally_and_points_colab_at_main() -> None:
    assert CONFIG["execute"]["execute_notebooks"] == "off"  # papermill executes
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["repository"]["branch"] == "main"
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    sphinx = CONFIG["sphinx"]["config"]
    assert sphinx["html_static_path"] == ["widgets_js"]
    served = {name for _, names in WIDGET_JS.items() for name in names}
    served.add(WIDGET_CONFIG.name)
    for url in sphinx["nb_ipywidgets_js"]:
        assert "://" not in url and url in served, f"widget script {url} is not served by the book"
    assert sphinx["mathjax_path"] == f"mathjax/{MATHJAX[0]}", "MathJax from a CDN"
    assert not (ROOT / "_static").exists() and not (ROOT / "book" / "_static").exists()


# --- the build script --------------------------------------------------------------

def test_find_chapter_accepts_prefixes_and_rejects_unknown_names() -> None:
    assert find_chapter("07").stem == "07_summary"
    assert find_chapter("book/07_summary.py").stem == "07_summary"
    with pytest.raises(ValueError, match="99_nothing"):
        find_chapter("99_nothing")


# --- smoke execution of every chapter -------------------------------------------------

@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results store for the smoke runs, so the Summary (last) sees the claims."""
    return tmp_path_factory.mktemp("results")


# The chapters of a test process run in one kernel, each from an empty namespace: torch and
# the project are imported once, not once per chapter (scripts/book/execute.py; `make book`
# gives each chapter a kernel of its own, as tests/test_build_book.py and the custom world's
# chapter test do).
KERNEL = SharedKernel()


@pytest.fixture(scope="session", autouse=True)
def _close_the_chapter_kernel():
    yield
    KERNEL.close()


def executed_outputs(chapter: Path, out: Path, params_file: str, overrides: dict) -> list:
    """Execute ``chapter`` with papermill; check that no cell failed, that it drew a figure and
    a table or widget, and that every widget view has saved state. Returns the outputs."""
    out = execute(chapter, out / chapter.with_suffix(".ipynb").name, params_file,
                  overrides, progress=False, kernel=KERNEL)
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{chapter.name}: {errors[0].ename}: {errors[0].evalue}"
    kinds = {k for o in outputs for k in o.get("data", {})}
    assert "image/png" in kinds, f"{chapter.name} produced no figure"
    assert kinds & set(TABLE_OR_WIDGET), f"{chapter.name} produced no table or widget"
    bare = [o.data["text/html"][:200] for o in outputs if "<table" in o.get("data", {}).get(
        "text/html", "") and not o.data.get("text/markdown", "").startswith(":::{table}")]
    assert not bare, (f"{chapter.name}: a table without number and caption (show it as "
                      f"diffrob.figures.Table): {bare[0]}")
    if "application/vnd.jupyter.widget-view+json" in kinds:
        state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        views = [o.data["application/vnd.jupyter.widget-view+json"]["model_id"] for o in outputs
                 if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert all(v in state for v in views), "widget views without saved state"
    return outputs


def output_text(outputs: list) -> str:
    return "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                      + o.get("data", {}).get("text/markdown", "") for o in outputs)


SMOKE_RUN: set[str] = set()  # the chapters executed into smoke_results in this session


def run_smoke(chapter: Path, smoke_results: Path, out: Path) -> list:
    outputs = executed_outputs(chapter, out, "params/smoke.yaml",
                               {"results_dir": str(smoke_results)})
    SMOKE_RUN.add(chapter.stem)
    return outputs


# Each world's chapters are the tests of one class: `make test`'s pytest-xdist (`--dist
# loadscope`) runs a class on one worker, in order, so the chapters share a results store and
# the Summary reads what the chapters before it recorded.
class TestSmokeBook:
    @pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
    def test_chapter_runs_on_smoke_params(self, chapter: Path, smoke_results: Path,
                                          tmp_path: Path) -> None:
        run_smoke(chapter, smoke_results, tmp_path)

    def test_the_smoke_book_computes_no_result_twice(self, smoke_results: Path,
                                                      tmp_path: Path) -> None:
        the_smoke_book_computes_no_result_twice(smoke_results, tmp_path)


def the_smoke_book_computes_no_result_twice(smoke_results: Path, tmp_path: Path) -> None:
    """Every stored result of the whole smoke book (chapters run above, or here when run
    alone) is computed once: the store's journal (``diffrob.store.computed``) lists each
    (stage, key, batch) once, though several chapters read it."""
    from diffrob import params, store

    for chapter in CHAPTERS:
        if chapter.stem not in SMOKE_RUN:
            run_smoke(chapter, smoke_results, tmp_path)
    p = params.load(ROOT / "params/smoke.yaml", results_dir=str(smoke_results))
    done = [(e["stage"], e["key"], e["batch"]) for e in store.computed(p)]
    stored = sorted(p.store_dir.rglob("*.safetensors"))
    assert len(done) == len(stored) > 10, (len(done), len(stored))
    twice = sorted({d for d in done if done.count(d) > 1})
    assert twice == [], f"computed more than once: {twice}"


# --- every chapter on the paper's parameter files, with fake CIFAR-10 and ImageNet worlds ---

# params/cifar10.yaml and params/imagenet.yaml as they are, except the sizes (smoke.yaml's
# scale) and the files.
PAPER_SMOKE = dict(n_images=2, batch_size=2, t_star=2, attack_steps=1, eot=2, n_evals=2,
                   vote_k=[2], uniform_eps_255=[4, 64], n_seeds=2, n_neighbours=2,
                   cap_images=1, cap_points=20, pca_samples=8, pca_components=3,
                   jacobian_images=1, singular_top_k=1, singular_oversample=1,
                   subspace_iterations=0, device="cpu", strength_images=2, strength_evals=2,
                   strength_steps=1, strength_eot=2, strength_eps_255=[4],
                   strength_step_grid=[1], strength_eot_grid=[2], strength_rel_stepsizes=[0.25],
                   rate_samples=2, gaas_max_k=2, variant_images=2, square_queries=5,
                   strength_restarts=2, attack_checks=2, randomness_images=2,
                   autoattack_steps=1, autoattack_eot=2, apgd_targets=1, critical_grid=20)
# (AutoAttack's budget as the strength chapter's base, 1 x 2: its rows are read from the store;
# a budget of its own runs in the smoke book, params/smoke.yaml. APGD-T's nine targets and the
# critical threshold's 500 grid steps, run in the digits smoke book, cost the fake worlds' real
# classifiers minutes: one target, 20 steps.)
# The fake CIFAR-10 and ImageNet worlds' UNets at 32x32 and 256x256 are most of CI's time: one
# diffusion step there (several steps, ImageNet's learned variance among them, run in the
# digits, mnist and custom books and in tests/test_world_*.py).
FAKE_WORLD_SMOKE = {**PAPER_SMOKE, "t_star": 1}
# What each chapter must show of the paper's setting (besides running through).
PAPER_MARKS = {
    "cifar10": {
        "01_setup": ["3x32x32", "paper (cifar10)", "WideResNet, 36,479,194 parameters"],
        "02_distances": ["paper (cifar10)", "3.606 ± 0.607", "0.313 ± 0.053"],  # Tables S2, S3
        "03_randomness": ["paper (cifar10)", "0.9954"],
        "04_fuzzy": ["CIFAR-10 (Linf 8/255)", "PGD-EOT 60.53 vs BPDA-EOT 81.54"],  # Table 1
        "04b_strength": ["cifar10: eps = 8/255", "full gradient vs central differences"],
        "05_cap": ["cifar10: d = 3072"],
        "06_compression": ["2760 of 3072 (89.8%)", "largest relative error vs the exact values",
                           "Adversarial examples: `pgd-eot`"],  # the exact Jacobian runs here
        "07_summary": ["`cifar10` world"],
    },
    "imagenet": {
        "01_setup": ["3x224x224", "paper (imagenet)", "guided diffusion 256x256"],
        "02_distances": ["paper (imagenet)", "17.712 ± 4.851"],            # Table S4
        "03_randomness": ["paper (cifar10)"],  # sec. 3.2 has CIFAR-10 numbers only
        "04_fuzzy": ["ImageNet (Linf 4/255)", "64.73", "BPDA 64.73 -> 58.41"],  # Table 2
        "04b_strength": ["imagenet: eps = 4/255", "full gradient vs central differences"],
        "05_cap": ["imagenet: d = 150528"],
        "06_compression": ["150528 x 150528", "singular values above 1 (of the top 1)",
                           "Adversarial examples: `bpda-eot`"],
        "07_summary": ["`imagenet` world"],
    },
}
WORLDS = list(PAPER_MARKS)


@pytest.fixture(scope="module")
def paper_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("paper_results")


def test_paper_marks_cover_every_chapter() -> None:
    assert all(sorted(marks) == sorted(IDS) for marks in PAPER_MARKS.values())


class PaperBook:
    """Every chapter, in order, on ``params/<world>.yaml`` with the fake world's files."""

    world: str

    @pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
    @pytest.mark.timeout(1800)  # a loaded CI machine: chapter 4b on the fake ImageNet world
    def test_chapter_runs_on_the_papers_params(self, chapter: Path, request: pytest.FixtureRequest,
                                               paper_results: Path, tmp_path: Path) -> None:
        fake = request.getfixturevalue(f"fake_{self.world}")
        files = {k: fake[k] for k in ("model_dir", "data_dir", "diffusion_model")}
        outputs = executed_outputs(chapter, tmp_path, f"params/{self.world}.yaml",
                                   {**FAKE_WORLD_SMOKE, **files, "results_dir": str(paper_results)})
        text = output_text(outputs)
        for mark in PAPER_MARKS[self.world][chapter.stem]:
            assert mark in text, f"{chapter.name} on {self.world} does not show {mark!r}"


class TestCifar10Book(PaperBook):
    world = "cifar10"


class TestImagenetBook(PaperBook):
    world = "imagenet"


# --- every chapter on the embedded 784-d world, its real models at smoke sizes ------------

@pytest.fixture(scope="module")
def mnist_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mnist_results")


class TestMnistBook:
    @pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
    def test_chapter_runs_on_mnist(self, chapter: Path, mnist_results: Path, tmp_path: Path) -> None:
        outputs = executed_outputs(chapter, tmp_path, "params/mnist.yaml",
                                   {**PAPER_SMOKE, "results_dir": str(mnist_results)})
        assert "mnist" in output_text(outputs) or chapter.stem not in ("01_setup", "07_summary")


# --- every chapter on `world: custom`: the mnist world's models exported (docs/custom.md) ---

@pytest.fixture(scope="module")
def custom_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    sys.path.insert(0, str(ROOT / "scripts"))
    import export_custom_example

    files = export_custom_example.export(tmp_path_factory.mktemp("custom_example"))
    return {k: str(v) for k, v in files.items()}


@pytest.fixture(scope="module")
def custom_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("custom_results")


class TestCustomBook:
    @pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
    def test_chapter_runs_on_a_custom_world(self, chapter: Path, custom_files: dict,
                                            custom_results: Path, tmp_path: Path) -> None:
        outputs = executed_outputs(chapter, tmp_path, "params/custom.example.yaml",
                                   {**PAPER_SMOKE, **custom_files,
                                    "results_dir": str(custom_results)})
        assert "custom" in output_text(outputs) or chapter.stem not in ("01_setup", "07_summary")


# --- static widgets: a two-page book built like the real one ----------------------------

DEMO = '''# %% [markdown]
# # {title}
#
# $$ \\boldsymbol{{x}}_t = \\sqrt{{\\bar\\alpha_t}}\\,\\boldsymbol{{x}}_0 \\tag{{1}} $$
# {markdown}
#
# {{numref}}`tbl-wide-{label}` is wide.

# %% tags=["parameters"]
params_file = "params/smoke.yaml"
n = 3

# %%
import ipywidgets as widgets
import matplotlib.pyplot as plt
from diffrob.figures import slider_stack
views = []
for k in range(n):
    fig, ax = plt.subplots(figsize=(1.5, 1.5))
    ax.plot([0, 1], [0, k])
    views.append(fig)
{widget}

# %%
import pandas as pd
from diffrob.figures import Table
cells = 30 if "{label}" == "unlinked" else 3
Table(pd.DataFrame([[f"a wide cell number {{i}}" for i in range(cells)]]), "tbl-wide-{label}",
      "A wide table (no table of the paper).")
'''
LINKED = 'slider_stack(views, "step", labels=[f"distance {k}" for k in range(n)])'
# The controls: the same views, but the slider drives nothing; an output table that scrolls
# sideways in book.css's output box; and a table in the prose, outside that box, wider than
# the page.
WIDE = "<table><tr>" + "".join(f"<td>a_wide_unbreakable_cell_{i}</td>" for i in range(30)) + "</tr></table>"
UNLINKED = ('from diffrob.figures import figure_widget\n'
            'widgets.VBox([widgets.IntSlider(0, 0, n - 1), '
            'widgets.Stack([figure_widget(v) for v in views], selected_index=0)])')


@pytest.fixture(scope="module")
def demo_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Execute two demo chapters with papermill (-p n 4) and build them with `jb build -W`."""
    if not all((ROOT / "node_modules" / pkg).is_dir() for pkg in WIDGET_JS):
        pytest.skip("widget JavaScript not installed: run `npm ci` (Node.js) to test the static widgets")
    root = tmp_path_factory.mktemp("demo_book")
    (root / "book").mkdir()
    shutil.copy(ROOT / "_config.yml", root)
    shutil.copy(ROOT / "book" / "references.bib", root / "book")  # _config.yml's bibtex_bibfiles
    shutil.copytree(ROOT / "params", root / "params")
    (root / "node_modules").symlink_to(ROOT / "node_modules")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n"
                                   "  - file: book/01_linked\n  - file: book/02_unlinked\n")
    (root / "book" / "index.md").write_text("# Demo\n\nTwo pages of widgets.\n")
    for name, widget, markdown in [("01_linked", LINKED, ""), ("02_unlinked", UNLINKED, WIDE)]:
        text = DEMO.format(title=name, widget=widget, markdown=markdown, label=name[3:])
        jupytext.write(jupytext.reads(text, fmt="py:percent"), root / "book" / f"{name}.ipynb")
        execute(root / "book" / f"{name}.py", root / "_build" / "notebooks" / f"{name}.ipynb",
                "params/smoke.yaml", {"n": 4}, cwd=root, progress=False)
    src = assemble(root / "_build" / "src", root / "_build" / "notebooks", root)
    return build_html(src, root)


def test_built_page_loads_widget_js_from_the_book_and_links_colab(demo_book: Path) -> None:
    page = (demo_book / "book" / "01_linked.html").read_text()
    for script in ("require.js", "widgets_config.js", "embed-amd.js"):
        assert f'src="../_static/{script}' in page and (demo_book / "_static" / script).is_file()
    # MathJax too (the page has an equation), with the fonts it asks for.
    mathjax = CONFIG["sphinx"]["config"]["mathjax_path"]
    assert f'src="../_static/{mathjax}' in page and (demo_book / "_static" / mathjax).is_file()
    assert list((demo_book / "_static" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))
    assert "cdn.jsdelivr.net" not in page and "cdnjs.cloudflare.com" not in page
    repo = CONFIG["repository"]
    colab = (f"colab.research.google.com/github/{repo['url'].removeprefix('https://github.com/')}"
             f"/blob/{repo['branch']}/book/01_linked.ipynb")
    assert colab in page
    state = json.loads(page.split('<script type="application/vnd.jupyter.widget-state+json">')[1]
                       .split("</script>")[0])
    sliders = [m for m in state["state"].values() if m["model_name"] == "IntSliderModel"]
    assert [s["state"]["max"] for s in sliders] == [3], "papermill's -p n 4 did not reach the page"
    # One parameters cell on the page: papermill's, with the values the chapter ran with.
    assignments = re.findall(r'<span class="n">n</span> <span class="o">=</span> '
                             r'<span class="mi">(\d+)</span>', page)
    assert assignments == ["4"], f"parameter cells shown with n = {assignments}, expected only 4"
    # The result table is Sphinx's: numbered, captioned, and the prose's {numref} links to it.
    assert '<span class="caption-number">Table 1 </span>' in page
    assert re.search(r'<a class="reference internal" href="#tbl-wide-linked">'
                     r'<span class="std std-numref">Table 1</span></a> is wide', page)


@pytest.mark.browser
def test_pages_work_offline_in_a_1300_px_headless_chromium(demo_book: Path) -> None:
    tools = page_check_tools()
    if isinstance(tools, str):
        pytest.skip(tools)
    node, chromium = tools
    script = ROOT / "scripts" / "check_pages.mjs"
    run = subprocess.run([node, str(script), str(demo_book), "book/01_linked.html",
                          "book/02_unlinked.html"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CHROMIUM": chromium})
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    pages = {r["page"]: r for r in lines if "page" in r}
    assert set(pages) == {"book/01_linked.html", "book/02_unlinked.html"}, run.stderr
    linked, unlinked = pages["book/01_linked.html"], pages["book/02_unlinked.html"]
    assert linked["ok"] and linked["sliders"] == [{"from": "0.0", "to": "1.0", "viewChanged": True}]
    assert linked["math"] == {"blocks": 1, "typeset": 1}, "the equation was not typeset offline"
    assert linked["width"] == {"tooWide": 0, "scrolling": 0, "pageScrolls": False}, linked["width"]
    assert unlinked["sliders"] and not unlinked["ok"], "the check must fail a slider that drives nothing"
    assert unlinked["width"]["tooWide"] > 0, "the check must fail a table wider than the page"
    assert unlinked["width"]["scrolling"] > 0, "the check must fail a table that scrolls sideways"
    assert not any("outsideRequests" in r for r in lines), lines
    assert run.returncode == 1  # because of the unlinked control page


@pytest.mark.browser
def test_the_page_check_fails_a_table_that_scrolls_sideways(tmp_path: Path) -> None:
    """A table wider than the sideways-scrolling box that holds it (book.css's output box)
    fits the page, but a reader sees only part of it: the page fails; the same box with a
    table that fits passes. So does a printed output's line wider than its box, and not the
    same line wrapped."""
    tools = page_check_tools()
    if isinstance(tools, str):
        pytest.skip(tools)
    node, chromium = tools
    cells = {"scrolls.html": 30, "fits.html": 3}
    page = ('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body><main>'
            '<article>{}</article></main></body></html>')
    for name, n in cells.items():
        row = "".join(f"<td>a_wide_unbreakable_cell_{i}</td>" for i in range(n))
        (tmp_path / name).write_text(page.format(
            f'<div style="max-width: 100%; overflow-x: auto"><table><tr>{row}</tr></table></div>'))
    # A printed output whose line is wider than its box fails; wrapped (book.css) it passes.
    line = " ".join(f"printed_word_{i}" for i in range(200))
    for name, style in (("printed.html", ""), ("wrapped.html", "white-space: pre-wrap")):
        (tmp_path / name).write_text(page.format(
            f'<div class="cell_output"><pre style="overflow: auto; {style}">{line}</pre></div>'))
    names = [*cells, "printed.html", "wrapped.html"]
    run = subprocess.run([node, str(ROOT / "scripts" / "check_pages.mjs"), str(tmp_path), *names],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CHROMIUM": chromium})
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    pages = {r["page"]: r for r in lines if "page" in r}
    assert set(pages) == set(names), run.stderr
    assert pages["wrapped.html"]["ok"], pages["wrapped.html"]
    assert not pages["printed.html"]["ok"] and pages["printed.html"]["width"]["scrolling"] == 1
    assert pages["printed.html"]["width"]["failing"][0].startswith("printed_word_0 ")
    assert pages["fits.html"]["ok"], pages["fits.html"]
    assert pages["fits.html"]["width"] == {"tooWide": 0, "scrolling": 0, "pageScrolls": False}
    assert not pages["scrolls.html"]["ok"]
    width = pages["scrolls.html"]["width"]
    assert (width["tooWide"], width["scrolling"], width["pageScrolls"]) == (0, 1, False), width
    assert width["failing"][0].startswith("a_wide_unbreakable_cell_0 "), "the table is not named"
    assert run.returncode == 1


def test_progress_bars_are_stripped_but_other_widgets_kept(tmp_path: Path) -> None:
    def model(name: str, **state: object) -> dict:
        return {"model_name": name, "model_module": "@jupyter-widgets/controls",
                "model_module_version": "2.0.0", "state": state}

    state = {"bar": model("HBoxModel", children=["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"],
                          layout="IPY_MODEL_bl"),
             "l": model("HTMLModel"), "p": model("FloatProgressModel", style="IPY_MODEL_ps"),
             "r": model("HTMLModel"), "bl": model("LayoutModel"), "ps": model("ProgressStyleModel"),
             # An HBox of other widgets (a slider and its label) stays.
             "box": model("HBoxModel", children=["IPY_MODEL_s", "IPY_MODEL_t"]),
             "s": model("IntSliderModel"), "t": model("LabelModel")}
    view = "application/vnd.jupyter.widget-view+json"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        nbformat.v4.new_output("display_data", {view: {"model_id": m}}) for m in ("bar", "box")])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json":
                              {"state": state, "version_major": 2, "version_minor": 0}}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert strip_progress_bars(path) == 1
    nb = nbformat.read(path, as_version=4)
    assert [o.data[view]["model_id"] for o in nb.cells[0].outputs] == ["box"]
    kept = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert sorted(kept) == ["box", "s", "t"]
