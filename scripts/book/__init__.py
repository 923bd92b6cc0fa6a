"""The book build, one job per module; ``scripts/build_book.py`` is its command line.

- :mod:`book.toc`: the pages and chapters of ``_toc.yml``.
- :mod:`book.execute`: a chapter run by papermill (parameters checked before any kernel
  starts, stage progress printed as it comes) into ``_build/notebooks/``.
- :mod:`book.postprocess`: the executed notebook readied for its page (no progress bars,
  one parameters cell).
- :mod:`book.records`: how each chapter was executed, and the execution page made of it.
- :mod:`book.assemble`: the ``_build/src/`` tree (config, toc, text pages, executed
  notebooks, the JavaScript the book serves itself) and ``jb build -W``.
- :mod:`book.pages`: every built page opened in a headless browser.
- :mod:`book.colab`: the chapters' Colab cell and ``requirements-colab.txt``, written only
  on request (``make colab-cells``, ``make colab-requirements``), never by ``make book``.

The build writes under ``_build/`` only: the sources stay as committed.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "_build"
EXECUTED = BUILD / "notebooks"
SOURCE = BUILD / "src"
LOGS = BUILD / "logs"
HTML = BUILD / "html"
