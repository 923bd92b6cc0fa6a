"""An executed chapter readied for its page: tqdm's bars removed, one parameters cell shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat


def hide_default_parameters(path: Path) -> bool:
    """Tag the chapter's own ``parameters`` cell ``remove-cell`` when papermill injected one.

    The page then shows one parameters cell, papermill's, with the values the chapter
    really ran with (the file and every ``-p`` override). Returns whether it tagged one.
    """
    nb = nbformat.read(path, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    own = [c for c, t in zip(nb.cells, tags) if "parameters" in t and "remove-cell" not in t]
    if not own or not any("injected-parameters" in t for t in tags):
        return False
    for cell in own:
        cell.metadata["tags"].append("remove-cell")
    nbformat.write(nb, path)
    return True


def _is_progress_bar(model_id: str, state: dict[str, Any]) -> bool:
    """tqdm's notebook bar: an HBox of (HTML, FloatProgress, HTML)."""
    model = state.get(model_id, {})
    children = [c.removeprefix("IPY_MODEL_") for c in model.get("state", {}).get("children", [])]
    return (model.get("model_name") == "HBoxModel"
            and [state.get(c, {}).get("model_name") for c in children]
            == ["HTMLModel", "FloatProgressModel", "HTMLModel"])


def _drop_model(model_id: str, state: dict[str, Any]) -> None:
    """Remove a widget model and every model it refers to (children, layout, style)."""
    model = state.pop(model_id, {})
    for value in model.get("state", {}).values():
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, str) and ref.startswith("IPY_MODEL_"):
                _drop_model(ref.removeprefix("IPY_MODEL_"), state)


def strip_progress_bars(path: Path) -> int:
    """Drop tqdm's progress-bar widgets (and their saved state) from an executed notebook.

    In a kernel, ``tqdm.auto`` draws widgets; they help while a chapter runs, but in
    the book they would show only finished bars and this build's timings. Returns how
    many were removed.
    """
    nb = nbformat.read(path, as_version=4)
    widgets = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json")
    if not widgets:
        return 0
    state, removed = widgets["state"], 0
    view = "application/vnd.jupyter.widget-view+json"
    for cell in nb.cells:
        keep = []
        for output in cell.get("outputs", []):
            model_id = output.get("data", {}).get(view, {}).get("model_id")
            if model_id and _is_progress_bar(model_id, state):
                _drop_model(model_id, state)
                removed += 1
            else:
                keep.append(output)
        if "outputs" in cell:
            cell.outputs = keep
    nbformat.write(nb, path)
    return removed
