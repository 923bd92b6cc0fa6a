"""The Colab-like check: a chapter with sliders run as it runs on Colab's own packages.

    python scripts/colab_check.py [--python python3.13] [--chapter 05_cap]   # make colab-check

1. A Python 3.13 venv, ``.venv-colab`` (Python 3.13's venv ignores itself in git), with the
   packages the book imports pinned to Colab's GPU runtime as published
   (``../shared/colab/pip-freeze.gpu.txt``: ipywidgets 7.7.1, numpy 2.1.3, torch 2.11.0):
   torch CPU-only from PyTorch's index where it can be reached, else PyPI's build.
2. The chapters' Colab cell's install steps exactly as written (``COLAB_CELL`` of
   ``scripts/book/colab.py``: ``requirements-colab.txt``, then ``pip install --no-deps -e``),
   run here with this checkout in place of ``/content/diffrob``.
3. The chapter executed with papermill on ``params/smoke.yaml`` (results in a temporary
   folder), and a check that its slider outputs are widget views; then that the runtime's
   own packages (``COLAB_KEEPS``, torch) kept Colab's versions through the cell's install.

A warm venv (steps 1-2 done, stamped ``.venv-colab/.colab-installed``) skips to step 3;
``--fresh`` starts from scratch. Each step prints its time.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from book.colab import COLAB_CELL, COLAB_KEEPS  # noqa: E402

VENV = ROOT / ".venv-colab"
FREEZE = ROOT.parent / "shared" / "colab" / "pip-freeze.gpu.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What a Colab runtime has besides COLAB_KEEPS and the book imports or runs in: its kernel
# and the libraries the requirements' own dependencies would otherwise bring newer.
COLAB_ALSO = ("torch", "torchvision", "ipykernel", "ipython", "jupyter-client", "traitlets",
              "widgetsnbextension", "jupyterlab-widgets", "nbformat", "nbclient", "pillow",
              "requests", "diffusers", "huggingface-hub", "safetensors", "setuptools")
# The CUDA runtime is torch's own: PyPI's torch 2.11.0 brings CUDA 13, Colab's is 12.8.
NOT_PINNED = re.compile(r"^(nvidia-|cuda-|triton)", re.I)
STAMP = VENV / ".colab-installed"


def colab_pins(freeze: Path = FREEZE) -> dict[str, str]:
    """``{name: version}`` of Colab's freeze, without git installs, local tags (``+cu128``)
    or the CUDA runtime (:data:`NOT_PINNED`); names normalised as pip compares them."""
    if not freeze.is_file():
        raise SystemExit(f"colab-check: no {freeze} (Colab's published pip freeze, in shared/)")
    pins = {}
    for line in freeze.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not NOT_PINNED.match(name):
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.split("+")[0]
    return pins


def cell_pip_steps(cell: str = COLAB_CELL) -> list[list[str]]:
    """The ``pip`` commands of the Colab cell, as written (arguments after ``-m pip``)."""
    steps = []
    for node in ast.walk(ast.parse(cell)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.List):
            argv = node.args[0].elts
            if [ast.unparse(a) for a in argv[:3]] == ["sys.executable", "'-m'", "'pip'"]:
                steps.append([ast.literal_eval(a) for a in argv[3:]])
    return steps


def step(title: str, argv: list[str], check: bool = True) -> bool:
    """Run ``argv``, printing ``title`` and the seconds it took; whether it succeeded."""
    print(f"== {title}", flush=True)
    start = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT)
    print(f"== {title}: {time.monotonic() - start:.0f} s", flush=True)
    if check and done.returncode:
        raise SystemExit(f"colab-check: {title} failed ({' '.join(argv)})")
    return done.returncode == 0


def install(python: str, pins: dict[str, str]) -> None:
    """Steps 1 and 2: the venv with Colab's pins, then the Colab cell's install."""
    step("venv", [python, "-m", "venv", "--clear", str(VENV)])
    py = str(VENV / "bin" / "python")
    version = subprocess.run([py, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    if version != "(3, 13)":
        raise SystemExit(f"colab-check: {python} is Python {version}; Colab's is 3.13 "
                         f"(make colab-check COLAB_PYTHON=/path/to/python3.13)")
    constraints = VENV / "colab-constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    torch = [f"torch=={pins['torch']}", f"torchvision=={pins['torchvision']}"]
    if not step("torch CPU-only from " + CPU_INDEX,
                [py, "-m", "pip", "--isolated", "install", "-q", "--index-url", CPU_INDEX, *torch],
                check=False):
        print("== no CPU-only wheels there: PyPI's torch (with its CUDA libraries)")
    names = sorted({*COLAB_KEEPS, *COLAB_ALSO, "papermill"})
    step("Colab's packages", [py, "-m", "pip", "install", "-q", "-c", str(constraints), *names])
    for argv in cell_pip_steps():
        step("Colab cell: pip " + " ".join(argv),
             [py, "-m", "pip", *[str(ROOT) if a == "/content/diffrob" else
                                 a.replace("/content/diffrob/", "") for a in argv]])
    step("kernel", [py, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"])
    STAMP.touch()


def kept(pins: dict[str, str]) -> list[str]:
    """The packages of :data:`COLAB_KEEPS` (and torch's) whose version is not Colab's."""
    names = sorted({*COLAB_KEEPS, "torch", "torchvision"})
    code = ("import json, sys; from importlib.metadata import version; "
            "print(json.dumps({n: version(n) for n in sys.argv[1:]}))")
    found = json.loads(subprocess.run([str(VENV / "bin" / "python"), "-c", code, *names],
                                      capture_output=True, text=True, check=True).stdout)
    return [f"{n} {found[n]} (Colab: {pins[n]})" for n in names
            if found[n].split("+")[0] != pins[n]]


def run_chapter(chapter: str) -> None:
    """Step 3: the chapter on smoke parameters; the widget state it stores must hold its
    sliders (an ``IntSlider`` jslinked to a ``Tab``, ipywidgets 7's :func:`figures.slider_stack`)."""
    with tempfile.TemporaryDirectory(prefix="colab-check-") as tmp:
        out = Path(tmp) / f"{chapter}.ipynb"
        step(f"papermill {chapter} on params/smoke.yaml",
             [str(VENV / "bin" / "papermill"), f"book/{chapter}.ipynb", str(out), "--cwd",
              str(ROOT), "-k", "python3", "-p", "params_file", "params/smoke.yaml",
              "-p", "results_dir", str(Path(tmp) / "results")])
        widgets = json.loads(out.read_text())["metadata"].get("widgets", {})
    state = widgets.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    name = {k: v["model_name"] for k, v in state.items()}
    sliders = [s for s in state.values() if s["model_name"] == "LinkModel"
               and [name.get(s["state"]["source"][0].removeprefix("IPY_MODEL_")),
                    name.get(s["state"]["target"][0].removeprefix("IPY_MODEL_"))]
               == ["IntSliderModel", "TabModel"]]
    if not sliders:
        raise SystemExit(f"colab-check: {chapter} stored no slider linked to a Tab "
                         f"(models: {sorted(set(name.values()))})")
    print(f"== {chapter}: {len(sliders)} sliders linked to a Tab (ipywidgets 7.7.1)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="python3.13", help="a Python 3.13 (default: %(default)s)")
    parser.add_argument("--chapter", default="05_cap", help="a chapter with sliders (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true", help="recreate .venv-colab from scratch")
    args = parser.parse_args(argv)
    start = time.monotonic()
    pins = colab_pins()
    if args.fresh or not STAMP.is_file():
        install(args.python, pins)
    changed = kept(pins)
    run_chapter(args.chapter)
    if changed:
        raise SystemExit("colab-check: the Colab cell changed the runtime's own packages: "
                         + ", ".join(changed))
    print(f"== colab-check passed in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
