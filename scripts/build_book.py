"""Execute the book's chapters with papermill and build the static HTML (issue 5).

    python scripts/build_book.py                                 # every chapter on digits + jb build -W
    python scripts/build_book.py --params params/cifar10.yaml    # the paper's setting
    python scripts/build_book.py --chapter 02_distances -p eot 5 # rerun one chapter, then the HTML
    python scripts/build_book.py --no-html                       # execute only

The chapters are the notebooks listed in ``_toc.yml`` (``book/NN_name.ipynb``,
output-free, paired with their py:percent text). Each runs from the project root
with ``params_file`` and the ``-p`` overrides injected by papermill, and its executed
copy, widget state included (nbclient's ``store_widget_state``), is written to
``_build/notebooks/``, never over the source. The HTML is built from ``_build/src/``:
``_config.yml``, ``_toc.yml``, the toc's text pages and the executed notebooks, in the
repository's layout (so Colab buttons point at ``book/NN_name.ipynb``), plus the widget
JavaScript served by the book itself (``widgets_js/``, from the npm packages of
``package.json``). ``jb build -W`` turns every warning into an error.

What the terminal shows (issue 15): a wrong parameter file or key stops the build
before any kernel starts, in one line naming the closest valid keys; papermill's
"Passed unknown parameter" notice is kept only for keys that are not parameters (the
chapters read every ``diffrob.params`` key through ``params.load_notebook``, so for those
the notice is false); kernels talk over IPC sockets (no "TCP without encryption"
warning); and each chapter's kernel appends stage progress (which attack or stage,
batches done, elapsed and remaining time; :mod:`diffrob.progress`) to
``_build/logs/<chapter>.progress``, printed here as it comes.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from jupyter_client.manager import AsyncKernelManager
from traitlets import default

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
EXECUTED = BUILD / "notebooks"
SOURCE = BUILD / "src"
LOGS = BUILD / "logs"
HTML = BUILD / "html"
NODE = ROOT / "node_modules"
# What the book serves instead of a CDN: html-manager's self-contained AMD bundle
# with its font files, and require.js (see _config.yml, nb_ipywidgets_js).
WIDGET_JS = {
    "@jupyter-widgets/html-manager/dist": ("embed-amd.js", "*.woff", "*.woff2", "*.ttf",
                                          "*.eot", "*.svg"),
    "requirejs": ("require.js",),
}
# MathJax 3 served by the book too, so equations render offline (_config.yml, mathjax_path):
# the combined TeX component (every TeX extension inside, nothing loaded on demand) and
# its CommonHTML fonts, at their paths relative to mathjax/es5.
MATHJAX_DIR = "mathjax/es5"
MATHJAX = ("tex-chtml-full.js", "output/chtml/fonts/woff-v2/*.woff")
# Our own glue: tells require.js where html-manager's files are; its folder also holds the
# book's stylesheet (book.css, _config.yml's html_css_files), copied with it.
WIDGET_CONFIG = Path(__file__).resolve().parent / "widgets_js" / "widgets_config.js"


# The first code cell of every chapter (issue 14, item 8; issue 15, item 9): written from
# _config.yml's repository by sync_colab_cells, so the URL is set in one place. In Colab it
# keeps the runtime's torch, torchvision and scientific stack (COLAB_KEEPS) and installs
# the rest at the versions the book was tested with (requirements-colab.txt).
COLAB_CELL = """\
# Colab: fetch and install the project (a GPU runtime can run params/cifar10.yaml).
# Written by scripts/build_book.py from _config.yml (repository); edit it there.
import os, subprocess, sys
if "google.colab" in sys.modules:
    if not os.path.exists("/content/diffrob"):
        subprocess.run(["git", "clone", "-b", "{branch}", "{url}", "/content/diffrob"], check=True)
        # Colab's own torch stays: the other requirements at the tested versions, then the project
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "/content/diffrob/requirements-colab.txt"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", "/content/diffrob"], check=True)
    os.chdir("/content/diffrob")
    sys.path.insert(0, "/content/diffrob/lib")
    print("Colab: results are stored in this runtime only (results/); the Summary lists the "
          "chapters run in this runtime.")"""
COLAB_KEEPS = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pyyaml", "tqdm",
               "matplotlib", "ipywidgets", "pandas")


def colab_cell(root: Path = ROOT) -> str:
    """The Colab cell for the repository and branch of ``_config.yml``."""
    repo = yaml.safe_load((root / "_config.yml").read_text())["repository"]
    return COLAB_CELL.format(url=repo["url"], branch=repo["branch"])


def sync_colab_cells(root: Path = ROOT) -> list[str]:
    """Write :func:`colab_cell` into each chapter (``.py`` and its ``.ipynb``) whose Colab cell
    (the code cell starting ``# Colab:``) differs; return the chapters changed."""
    import nbformat

    cell, changed = colab_cell(root), []
    for chapter in chapters(root):
        text = chapter.read_text()
        new = re.sub(r"^# Colab:.*?(?=\n# %%)", lambda _: cell, text, count=1, flags=re.S | re.M)
        notebook = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
        cells = [c for c in notebook.cells if c.source.startswith("# Colab:")]
        if new == text and all(c.source == cell for c in cells):
            continue
        chapter.write_text(new)
        for c in cells:
            c.source = cell
        nbformat.write(notebook, chapter.with_suffix(".ipynb"))
        changed.append(chapter.stem)
    return changed


def colab_requirements() -> str:
    """requirements-colab.txt: the project's requirements (with the ``paper`` extra) other than
    :data:`COLAB_KEEPS`, pinned to the versions installed here (``make colab-requirements``)."""
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement

    wanted = [Requirement(r) for r in requires("diffrob")]
    names = sorted({r.name.lower() for r in wanted if r.name.lower() not in COLAB_KEEPS
                    and r.name != "diffrob" and (r.marker is None
                                                 or r.marker.evaluate({"extra": "paper"}))})
    return ("# The project's requirements that Colab does not ship, at the versions the book\n"
            "# was tested with; made by `make colab-requirements`. Read by the chapters'\n"
            "# Colab cell (scripts/build_book.py, COLAB_CELL).\n"
            + "".join(f"{n}=={version(n)}\n" for n in names))


def toc_pages(root: Path = ROOT) -> list[str]:
    """Every page of ``_toc.yml`` in reading order, as paths without suffix (``book/01_setup``)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections", []))
            for part in entry.get("parts", []):
                walk(part.get("chapters", []))

    walk(toc.get("chapters", []))
    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return pages


def chapters(root: Path = ROOT) -> list[Path]:
    """The executable chapters of ``_toc.yml`` in order: their py:percent sources.

    A page is a chapter when it is not a Markdown page; a chapter listed in the toc
    whose ``.py`` does not exist is returned all the same, so that callers report it.
    """
    return [root / f"{page}.py" for page in toc_pages(root) if not (root / f"{page}.md").exists()]


def find_chapter(name: str, root: Path = ROOT) -> Path:
    """The chapter whose file name starts with ``name`` (``02``, ``02_distances``, a path)."""
    stem = Path(name).stem
    found = [c for c in chapters(root) if c.stem.startswith(stem)]
    if len(found) != 1:
        names = [c.stem for c in chapters(root)]
        raise ValueError(f"chapter {name!r}: expected exactly one of {names} to match, "
                         f"got {[c.stem for c in found]}")
    return found[0]


class IPCKernelManager(AsyncKernelManager):
    """A kernel reached over local IPC sockets instead of TCP (no unencrypted TCP port)."""

    @default("transport")
    def _transport_default(self) -> str:
        return "ipc"


class KnownParameters(logging.Filter):
    """Drop papermill's "Passed unknown parameter: KEY" when KEY is a ``diffrob.params`` key.

    papermill knows only the names of a chapter's parameters cell (``params_file``); the
    chapters take every other key of :class:`diffrob.params.Params` from the injected
    variables. Other keys keep the notice (and the chapter then stops on them).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from diffrob.params import FIELDS

        prefix = "Passed unknown parameter: "
        message = record.getMessage()
        return not (message.startswith(prefix) and message[len(prefix):] in FIELDS)


class ProgressLog:
    """``with ProgressLog(path): ...``: the kernels started inside write stage progress to
    ``path`` (:mod:`diffrob.progress`), and a thread prints each new line through ``write``."""

    def __init__(self, path: Path, write=None, every: float = 0.5) -> None:
        from tqdm import tqdm

        self.path, self.every = path, every
        self.write = write or (lambda line: tqdm.write(f"   {line}", file=sys.stdout))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> "ProgressLog":
        from diffrob.progress import ENV

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self.saved = os.environ.get(ENV)
        os.environ[ENV] = str(self.path)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        from diffrob.progress import ENV

        self.stop.set()
        self.thread.join()
        if self.saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = self.saved

    def _follow(self) -> None:
        with open(self.path) as log:
            pending = ""
            while True:
                stopping = self.stop.is_set()
                pending += log.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    self.write(line)
                if stopping:
                    return
                self.stop.wait(self.every)


def execute(chapter: Path, out: Path, params_file: str, overrides: dict[str, Any] | None = None,
            cwd: Path = ROOT, progress: bool = True) -> Path:
    """Run one chapter's paired ``.ipynb`` with papermill into ``out`` and keep its widget state.

    The kernel runs on IPC sockets (:class:`IPCKernelManager`); with ``progress``, its stage
    progress is printed as it comes (:class:`ProgressLog`, ``_build/logs/``). tqdm's
    progress-bar widgets are then removed from ``out`` (:func:`strip_progress_bars`).

    Raises ``FileNotFoundError`` naming the chapter if it has no notebook, and
    papermill's ``PapermillExecutionError`` (the executed copy, with the error, is in
    ``out``) if a cell fails.
    """
    import papermill

    notebook = chapter.with_suffix(".ipynb")
    if not notebook.is_file():
        raise FileNotFoundError(f"chapter {chapter.stem}: {notebook} not found (listed in "
                                f"_toc.yml; pair it with `jupytext --set-formats ipynb,py:percent`)")
    out.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("papermill")
    if not any(isinstance(f, KnownParameters) for f in logger.filters):
        logger.addFilter(KnownParameters())
    with ProgressLog(LOGS / f"{chapter.stem}.progress", write=None if progress else print):
        papermill.execute_notebook(
            str(notebook), str(out), parameters={"params_file": params_file, **(overrides or {})},
            cwd=str(cwd), kernel_name="python3", language="python", progress_bar=progress,
            store_widget_state=True, kernel_manager_class=IPCKernelManager)
    strip_progress_bars(out)
    hide_default_parameters(out)
    return out


def hide_default_parameters(path: Path) -> bool:
    """Tag the chapter's own ``parameters`` cell ``remove-cell`` when papermill injected one.

    The page then shows one parameters cell, papermill's, with the values the chapter
    really ran with (the file and every ``-p`` override). Returns whether it tagged one.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    own = [c for c, t in zip(nb.cells, tags) if "parameters" in t and "remove-cell" not in t]
    if not own or not any("injected-parameters" in t for t in tags):
        return False
    for cell in own:
        cell.metadata["tags"].append("remove-cell")
    nbformat.write(nb, path)
    return True


def _is_progress_bar(model_id: str, state: dict[str, Any]) -> bool:
    """tqdm's notebook bar: an HBox of (HTML, FloatProgress, HTML)."""
    model = state.get(model_id, {})
    children = [c.removeprefix("IPY_MODEL_") for c in model.get("state", {}).get("children", [])]
    return (model.get("model_name") == "HBoxModel"
            and [state.get(c, {}).get("model_name") for c in children]
            == ["HTMLModel", "FloatProgressModel", "HTMLModel"])


def _drop_model(model_id: str, state: dict[str, Any]) -> None:
    """Remove a widget model and every model it refers to (children, layout, style)."""
    model = state.pop(model_id, {})
    for value in model.get("state", {}).values():
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, str) and ref.startswith("IPY_MODEL_"):
                _drop_model(ref.removeprefix("IPY_MODEL_"), state)


def strip_progress_bars(path: Path) -> int:
    """Drop tqdm's progress-bar widgets (and their saved state) from an executed notebook.

    In a kernel, ``tqdm.auto`` draws widgets; they help while a chapter runs, but in
    the book they would show only finished bars and this build's timings. Returns how
    many were removed.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    widgets = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json")
    if not widgets:
        return 0
    state, removed = widgets["state"], 0
    view = "application/vnd.jupyter.widget-view+json"
    for cell in nb.cells:
        keep = []
        for output in cell.get("outputs", []):
            model_id = output.get("data", {}).get(view, {}).get("model_id")
            if model_id and _is_progress_bar(model_id, state):
                _drop_model(model_id, state)
                removed += 1
            else:
                keep.append(output)
        if "outputs" in cell:
            cell.outputs = keep
    nbformat.write(nb, path)
    return removed


EXECUTION_MARK = "<!-- execution table: written here by scripts/build_book.py -->"


def git_commit(root: Path = ROOT) -> str:
    """Short commit of the checkout, ``+`` when it has uncommitted changes; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def record_execution(chapter: str, params_file: str, overrides: dict[str, Any], seconds: float,
                     logs: Path = LOGS, root: Path = ROOT) -> Path:
    """Write ``logs/<chapter>.json``: how the chapter was executed (the execution page's row)."""
    import json

    import diffrob
    from diffrob import claims, params

    path = Path(params_file)
    p = params.load(path if path.is_absolute() else root / path, **overrides)
    record = {"chapter": chapter, "params_file": params_file, "overrides": overrides,
              "digest": claims.params_digest(p), "seconds": round(seconds, 1),
              "diffrob": diffrob.__version__, "commit": git_commit(root),
              "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    logs.mkdir(parents=True, exist_ok=True)
    out = logs / f"{chapter}.json"
    out.write_text(json.dumps(record, indent=1))
    return out


def execution_page(template: str, names: list[str], logs: Path = LOGS) -> str:
    """``template`` (book/execution.md) with its mark replaced by one table row per chapter."""
    import json

    if EXECUTION_MARK not in template:
        raise ValueError(f"book/execution.md: the line {EXECUTION_MARK!r} is missing")
    rows = ["| chapter | parameters | digest | run time | diffrob | commit | finished |",
            "|---|---|---|---|---|---|---|"]
    for name in names:
        path = logs / f"{name}.json"
        if not path.is_file():
            rows.append(f"| {name} | not recorded | | | | | |")
            continue
        r = json.loads(path.read_text())
        given = ", ".join([f"`{r['params_file']}`"] + [f"`{k}={v!r}`"
                                                       for k, v in r["overrides"].items()])
        rows.append(f"| {name} | {given} | `{r['digest']}` | {r['seconds']:.0f} s | "
                    f"{r['diffrob']} | `{r['commit']}` | {r['finished']} |")
    return template.replace(EXECUTION_MARK, "\n".join(rows))


def widget_js(dest: Path, node_modules: Path = NODE) -> Path:
    """Copy the widget JavaScript (html-manager, require.js) and MathJax into ``dest``;
    ``npm ci`` if missing."""
    if not all((node_modules / pkg).is_dir() for pkg in [*WIDGET_JS, MATHJAX_DIR]):
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("the book serves the ipywidgets JavaScript itself: install "
                               "Node.js/npm and run `npm ci` in the project root")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=node_modules.parent,
                       check=True)
    dest.mkdir(parents=True, exist_ok=True)
    for pkg, patterns in WIDGET_JS.items():
        for pattern in patterns:
            for f in sorted((node_modules / pkg).glob(pattern)):
                if not (dest / f.name).exists() or (dest / f.name).stat().st_mtime < f.stat().st_mtime:
                    shutil.copy2(f, dest / f.name)
    for pattern in MATHJAX:
        for f in sorted((node_modules / MATHJAX_DIR).glob(pattern)):
            target = dest / "mathjax" / f.relative_to(node_modules / MATHJAX_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
    for own in sorted(WIDGET_CONFIG.parent.iterdir()):  # widgets_config.js, book.css
        shutil.copy2(own, dest / own.name)
    return dest


def assemble(src: Path = SOURCE, executed: Path = EXECUTED, root: Path = ROOT,
             logs: Path = LOGS) -> Path:
    """Lay out the build source: config, toc, text pages, executed notebooks, widget JS.

    ``book/execution.md`` is filled in from the execution records in ``logs``
    (:func:`execution_page`).

    Files are copied with their times kept, so Sphinx re-reads only what changed.
    Raises ``FileNotFoundError`` listing the chapters that were never executed.
    """
    missing = [c.stem for c in chapters(root) if not (executed / f"{c.stem}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"not executed yet: {missing} (run `make book`)")
    src.mkdir(parents=True, exist_ok=True)
    wanted = {src / "_config.yml": root / "_config.yml", src / "_toc.yml": root / "_toc.yml"}
    for page in toc_pages(root):
        md = root / f"{page}.md"
        wanted[src / f"{page}{'.md' if md.exists() else '.ipynb'}"] = (
            md if md.exists() else executed / f"{Path(page).name}.ipynb")
    for bib in (root / "book").glob("*.bib"):
        wanted[src / "book" / bib.name] = bib
    stale = [p for p in src.glob("book/*") if p.is_file() and p not in wanted]
    for target in stale:  # pages dropped from the toc
        target.unlink()
    for target, origin in wanted.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.name == "execution.md":  # written from the records of the executions
            text = execution_page(origin.read_text(), [c.stem for c in chapters(root)], logs)
            if not target.exists() or target.read_text() != text:
                target.write_text(text)
        elif not target.exists() or target.stat().st_mtime != origin.stat().st_mtime:
            shutil.copy2(origin, target)
    widget_js(src / "widgets_js", root / "node_modules")
    return src


def build_html(src: Path = SOURCE, root: Path = ROOT) -> Path:
    """``jb build -W`` of the assembled source into ``_build/html`` (a warning is an error)."""
    jb = Path(sys.executable).with_name("jb")
    subprocess.run([str(jb) if jb.exists() else "jb", "build", str(src), "--path-output",
                    str(root), "--builder", "html", "-W", "--keep-going"], check=True)
    return root / "_build" / "html"


def page_check_tools(root: Path = ROOT) -> tuple[str, str] | str:
    """(node, chromium) for ``scripts/check_pages.mjs``, or why it cannot run here."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    node = shutil.which("node")
    if not Path(chromium).exists():
        return "Debian's chromium is not installed (apt-get install chromium)"
    if not node or not (root / "node_modules" / "playwright-core").is_dir():
        return "node or playwright-core missing (npm ci)"
    return node, chromium


def check_pages(html: Path = HTML, root: Path = ROOT) -> bool | None:
    """Open every built page as a reader's browser would (``scripts/check_pages.mjs``: a
    1300-px headless Chromium, offline): widgets move their views, equations are typeset,
    no table is wider than the page. Screenshots go to ``_build/screenshots/``. Returns
    whether every page passed, or None (with the reason printed) where Node.js, Debian's
    chromium or playwright-core is missing."""
    tools = page_check_tools(root)
    if isinstance(tools, str):
        print(f"== page check skipped: {tools}")
        return None
    node, chromium = tools
    shots = root / "_build" / "screenshots"
    run = subprocess.run([node, str(root / "scripts" / "check_pages.mjs"), str(html)],
                         capture_output=True, text=True,
                         env={**os.environ, "CHROMIUM": chromium, "SCREENSHOTS": str(shots)})
    for line in run.stdout.splitlines():
        if line.startswith("{") and '"ok":true' not in line:
            print(f"== page check: {line}", file=sys.stderr)
    if run.returncode not in (0, 1):
        print(run.stderr[-2000:], file=sys.stderr)
    print(f"== page check: {'passed' if run.returncode == 0 else 'FAILED'}; "
          f"screenshots in {shots.relative_to(root)}/")
    return run.returncode == 0


def check_parameters(params_file: str, overrides: dict[str, Any], root: Path = ROOT) -> None:
    """Exit with one line (status 2) if the parameter file or an override is wrong: before any
    kernel starts, as the chapters would read them (from ``root``), with the closest keys."""
    from diffrob import params

    path = Path(params_file)
    try:
        params.load(path if path.is_absolute() else root / path, **overrides)
    except (ValueError, FileNotFoundError) as err:
        print(f"build_book: error: {err}".replace(str(root) + os.sep, ""), file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params/digits.yaml",
                        help="parameter file (default: params/digits.yaml)")
    parser.add_argument("--chapter", action="append", default=[],
                        help="execute only this chapter (repeatable; default: all of _toc.yml)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("KEY", "VALUE"), help="override one parameter, as papermill -p")
    parser.add_argument("--no-html", action="store_true", help="execute only")
    parser.add_argument("--html-only", action="store_true",
                        help="build the HTML from the notebooks already executed")
    parser.add_argument("--colab-requirements", action="store_true",
                        help="write requirements-colab.txt from the installed versions and stop")
    parser.add_argument("--check", action="store_true",
                        help="check the parameters and chapters, say what would run, and stop")
    args = parser.parse_args(argv)
    from papermill.exceptions import PapermillExecutionError
    from diffrob.params import parse_override
    overrides = {k: parse_override(k, v) for k, v in args.parameter}
    try:
        todo = [find_chapter(c) for c in args.chapter] if args.chapter else chapters()
    except ValueError as err:
        parser.error(str(err))
    if not args.html_only:
        check_parameters(args.params, overrides)
    if args.colab_requirements:
        (ROOT / "requirements-colab.txt").write_text(colab_requirements())
        return 0
    if changed := sync_colab_cells():
        print(f"== wrote the Colab cell of {changed} from _config.yml (commit them)")
    if args.check:
        print(f"would execute {[c.stem for c in todo] if not args.html_only else []} on "
              f"{args.params} {overrides or ''}, then "
              f"{'no HTML' if args.no_html else 'the HTML'}")
        return 0
    begin, seconds = time.perf_counter(), {}
    if not args.html_only:
        missing = [c.stem for c in todo if not c.with_suffix(".ipynb").is_file()]
        if missing:
            raise SystemExit(f"chapters listed in _toc.yml without a notebook: {missing}")
        for chapter in todo:
            out = EXECUTED / f"{chapter.stem}.ipynb"
            start = time.perf_counter()
            print(f"== {chapter.stem} ({args.params}{', ' if overrides else ''}"
                  f"{', '.join(f'{k}={v!r}' for k, v in overrides.items())})", flush=True)
            try:
                execute(chapter, out, args.params, overrides)
            except PapermillExecutionError as err:
                print(f"{err}\n== {chapter.stem} failed: the executed copy, with the error, "
                      f"is {out.relative_to(ROOT)}", file=sys.stderr)
                return 1
            seconds[chapter.stem] = time.perf_counter() - start
            record_execution(chapter.stem, args.params, overrides, seconds[chapter.stem])
            print(f"== {chapter.stem}: {seconds[chapter.stem]:.0f} s", flush=True)
    if not args.no_html:
        start = time.perf_counter()
        try:
            src = assemble()
        except FileNotFoundError as err:
            if not args.chapter:
                raise SystemExit(f"no HTML: {err}") from None
            print(f"== no HTML: {err}")
            return 0
        html = build_html(src)
        seconds["jb build"] = time.perf_counter() - start
        print(f"== HTML in {html.relative_to(ROOT)}")
        if check_pages(html) is False:
            return 1
    for name, took in seconds.items():
        print(f"   {name:<20} {took:7.0f} s")
    print(f"   {'total':<20} {time.perf_counter() - begin:7.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
