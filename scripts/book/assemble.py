"""The build source ``_build/src/`` and its HTML.

``_config.yml``, ``_toc.yml``, the toc's text pages and the executed notebooks, in the
repository's layout (so Colab buttons point at ``book/NN_name.ipynb``), plus the widget
JavaScript and MathJax served by the book itself (``widgets_js/``, from the npm packages
of ``package.json``). ``jb build -W`` turns every warning into an error.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from book import EXECUTED, LOGS, ROOT, SOURCE
from book.records import execution_page
from book.toc import chapters, toc_pages

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
WIDGET_CONFIG = ROOT / "scripts" / "widgets_js" / "widgets_config.js"


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
    (:func:`book.records.execution_page`).

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
