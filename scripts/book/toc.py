"""The book's pages and chapters, as ``_toc.yml`` lists them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from book import ROOT


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
