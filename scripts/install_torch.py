"""Install PyTorch's CPU-only wheels into this environment, before the project.

    python scripts/install_torch.py [--index-url URL]     # what `make TORCH=cpu` runs

The versions allowed are the project's own (the ``torch`` and ``torchvision`` lines of
``pyproject.toml``), so the install of the project that follows keeps them. Without
the CUDA libraries the environment is several GB smaller (docs/install.md). pip runs
``--isolated``: both wheels come from that one index, never a CPU torch beside a CUDA
torchvision found through a configured extra index or find-links folder (their
compiled operators do not load together). When the index cannot be reached nothing is
installed here, and the project's install brings PyPI's torch.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def torch_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The project's ``torch`` and ``torchvision`` requirements, as written there."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    found = [d for d in deps if re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0] in ("torch", "torchvision")]
    if len(found) != 2:
        raise SystemExit(f"{pyproject}: expected one torch and one torchvision requirement, "
                         f"got {found}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index-url", default=CPU_INDEX,
                        help="where the CPU wheels are (default: %(default)s)")
    args = parser.parse_args(argv)
    done = subprocess.run([sys.executable, "-m", "pip", "--isolated", "install", "--index-url",
                           args.index_url, *torch_requirements()])
    if done.returncode:
        print(f"note: no CPU wheels from {args.index_url}; the project's install brings "
              f"PyPI's torch (with CUDA libraries on Linux)", file=sys.stderr)
        return 0
    return subprocess.run([sys.executable, "-c", "import torch, torchvision; print('installed "
                           "torch', torch.__version__, 'torchvision', torchvision.__version__, "
                           "'CUDA', torch.version.cuda or 'none (CPU only)')"]).returncode


if __name__ == "__main__":
    sys.exit(main())
