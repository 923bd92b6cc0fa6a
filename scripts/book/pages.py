"""Every built page opened as a reader's browser would (``scripts/check_pages.mjs``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from book import HTML, ROOT


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
    """Open every built page in a 1300-px headless Chromium, offline: widgets move their
    views, equations are typeset, no table is wider than the page or scrolls sideways in its
    box (a reader would see part of it). Screenshots go to
    ``_build/screenshots/``. Returns whether every page passed, or None (with the reason
    printed) where Node.js, Debian's chromium or playwright-core is missing."""
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
