"""The sliders of the book (``figures.slider_stack``) under ipywidgets 8 and Colab's 7.7.1.

Each case builds a slider over three figures in a fresh Python and reads back what a
notebook and the static book get: the widget models and their tree, the ``jslink``s that
move the views without a kernel, the view a cell displays (IPython's ``display``) and a
page written by ``embed_minimal_html`` with the whole widget state. ipywidgets 8 is this
environment's (a ``Stack``); 7.7.1 is Colab's (a ``Tab``), in ``.venv-colab``, which
``make colab-check`` creates (scripts/colab_check.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLAB_PYTHON = ROOT / ".venv-colab" / "bin" / "python"
COLAB_READY = ROOT / ".venv-colab" / ".colab-installed"  # written by scripts/colab_check.py

# Run as `python -c PROBE OUT_DIR [--no-stack]`: prints what the slider is made of, as JSON.
PROBE = r'''
import json, re, sys
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import ipywidgets as widgets
from ipywidgets.embed import embed_minimal_html
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import display
from IPython.utils.capture import capture_output
if "--no-stack" in sys.argv and hasattr(widgets, "Stack"):
    del widgets.Stack  # ipywidgets 8 without its Stack: the path ipywidgets 7 takes
from diffrob.figures import slider_stack

box = slider_stack([plt.subplots(figsize=(1, 1))[0] for _ in range(3)], "step", ["a", "b", "c"])
state = widgets.Widget.get_manager_state(widgets=None)["state"]
name = {k: v["model_name"] for k, v in state.items()}
ref = lambda x: x.removeprefix("IPY_MODEL_")
tree = lambda k: [name[k], [tree(ref(c)) for c in state[k]["state"].get("children", ())]]
links = sorted([name[ref(s["state"]["source"][0])], s["state"]["source"][1],
                name[ref(s["state"]["target"][0])], s["state"]["target"][1]]
               for s in state.values() if s["model_name"] == "LinkModel")
titles = [s["state"].get("titles") or s["state"].get("_titles") for s in state.values()
          if s["model_name"] == "TabModel"]
InteractiveShell.instance()
with capture_output() as shown:  # what a cell shows (ipywidgets 8: _repr_mimebundle_)
    display(box)
page = Path(sys.argv[1]) / "slider.html"
embed_minimal_html(page, views=[box], state=state)
html = page.read_text()
embedded = re.search(r'widget-state[+]json">(.*?)</script>', html, re.S)
print(json.dumps({
    "ipywidgets": widgets.__version__, "tree": tree(box.model_id), "links": links,
    "titles": [list(t.values()) if isinstance(t, dict) else t for t in titles],
    "view": shown.outputs[0].data["application/vnd.jupyter.widget-view+json"]["model_id"]
            == box.model_id,
    "page": {"state": bool(embedded) and name == {k: v["model_name"] for k, v in
                                                   json.loads(embedded[1])["state"].items()},
             "view": f'"model_id": "{box.model_id}"' in html},
}))
'''

SLIDER_TO = ["IntSliderModel", "value"]
LABELS = ["a", "b", "c"]


def probe(python: Path | str, tmp_path: Path, *args: str) -> dict:
    """What :data:`PROBE` prints, run by ``python`` on this checkout's library."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(python), "-c", PROBE, str(tmp_path), *args], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def assert_rendered(found: dict) -> None:
    """The cell shows the slider's box; the page holds every widget's state and that view."""
    assert found["view"], "the cell's widget view is not the slider's box"
    assert found["page"] == {"state": True, "view": True}


def test_ipywidgets_8_the_static_book_s_models_a_stack_of_views_and_of_labels(tmp_path):
    found = probe(sys.executable, tmp_path)
    assert found["ipywidgets"].startswith("8.")
    labels = ["StackModel", [["LabelModel", []]] * 3]
    assert found["tree"] == ["VBoxModel", [["HBoxModel", [["IntSliderModel", []], labels]],
                                           ["StackModel", [["ImageModel", []]] * 3]]]
    assert found["links"] == [SLIDER_TO + ["StackModel", "selected_index"]] * 2
    assert found["titles"] == []
    assert_rendered(found)


def assert_tab(found: dict) -> None:
    """A ``Tab`` of the views whose tab bar names them, driven by the slider."""
    assert found["tree"] == ["VBoxModel", [["IntSliderModel", []],
                                           ["TabModel", [["ImageModel", []]] * 3]]]
    assert found["links"] == [SLIDER_TO + ["TabModel", "selected_index"]]
    assert found["titles"] == [LABELS]
    assert_rendered(found)


def test_without_stack_a_tab_linked_to_the_slider_names_the_views(tmp_path):
    assert_tab(probe(sys.executable, tmp_path, "--no-stack"))


@pytest.mark.skipif(not COLAB_READY.is_file(),
                    reason="no .venv-colab (Colab's ipywidgets 7.7.1 on Python 3.13): "
                           "`make colab-check` creates it")
def test_colab_s_ipywidgets_7_7_1_a_tab_linked_to_the_slider(tmp_path):
    found = probe(COLAB_PYTHON, tmp_path)
    assert found["ipywidgets"] == "7.7.1"
    assert_tab(found)
