"""How each chapter was executed (``_build/logs/<chapter>.json``), and the book's execution
page (``book/execution.md``) filled in from those records."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from book import LOGS, ROOT

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
    """``template`` (book/execution.md) with its mark replaced by one table row per chapter,
    in a block of class ``execution-table`` (smaller type, book.css: it fits the page)."""
    if EXECUTION_MARK not in template:
        raise ValueError(f"book/execution.md: the line {EXECUTION_MARK!r} is missing")
    rows = [":::{div} execution-table",
            "| chapter | parameters | digest | run time | diffrob, commit | finished |",
            "|---|---|---|---|---|---|"]
    for name in names:
        path = logs / f"{name}.json"
        if not path.is_file():
            rows.append(f"| {name} | not recorded | | | | |")
            continue
        r = json.loads(path.read_text())
        given = ", ".join([f"`{r['params_file']}`"] + [f"`{k}={v!r}`"
                                                       for k, v in r["overrides"].items()])
        rows.append(f"| {name} | {given} | `{r['digest']}` | {r['seconds']:.0f} s | "
                    f"{r['diffrob']}, `{r['commit']}` | {r['finished']} |")
    return template.replace(EXECUTION_MARK, "\n".join([*rows, ":::"]))
