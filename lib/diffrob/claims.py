"""The paper's claims, its numbers beside ours, and whether each holds here.

The paper's numbers are the project's own data files (``paper_data/<section>.yaml``,
transcribed from the paper, its appendix and its review thread). Each chapter
records what it measured with :func:`record`; the Summary chapter joins them
with :func:`table`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .params import Params


def paper(section: str) -> dict[str, Any]:
    """The paper's numbers of one section (``paper_data/<section>.yaml``)."""
    text = resources.files("diffrob").joinpath("paper_data", f"{section}.yaml").read_text()
    return yaml.safe_load(text)


def _path(p: Params, section: str) -> Path:
    return p.store_dir / "claims" / f"{section}.json"


def record(p: Params, section: str, claim: str, paper_value: str, ours: str,
           holds: bool | None) -> None:
    """Record one claim of ``section``: the paper's number, ours, and whether it holds."""
    path = _path(p, section)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(path.read_text()) if path.exists() else {}
    rows[claim] = {"paper": paper_value, "ours": ours, "holds": holds}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(path)


SECTIONS = ("setup", "sec31", "sec32", "sec4", "sec5", "sec6")  # the book's order


def table(p: Params) -> list[dict[str, Any]]:
    """Every recorded claim of this world, in the book's section order."""
    rows = []
    order = {name: i for i, name in enumerate(SECTIONS)}
    paths = (p.store_dir / "claims").glob("*.json")
    for path in sorted(paths, key=lambda f: (order.get(f.stem, len(order)), f.stem)):
        for claim, row in json.loads(path.read_text()).items():
            rows.append({"section": path.stem, "claim": claim, **row})
    return rows
