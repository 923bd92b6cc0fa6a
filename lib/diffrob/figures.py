"""Figures and widgets shared by the chapters.

Widgets are built so that they keep working in the static HTML book: every view
is precomputed, and a slider is linked to a ``Stack`` (a ``Tab`` under ipywidgets 7,
Colab's) on the JavaScript side (``jslink``), so moving it needs no kernel.

Importing this module sets figures on a white background (:data:`WHITE`), so they stay
readable in the book theme's dark mode; :class:`Reproduce` writes the line under every
table and figure of a chapter that says how to regenerate it, and :class:`Table` makes a
result table one that the book numbers, captions and cross-references.
"""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from matplotlib.figure import Figure
from torch import Tensor

from . import claims, params
from .params import Params

# Figures are drawn and saved on white: the book's dark mode keeps them readable.
WHITE = {"figure.facecolor": "white", "savefig.facecolor": "white", "axes.facecolor": "white"}
mpl.rcParams.update(WHITE)
# The Markdown line under every table and figure starts with this (tests/test_book.py looks for it).
REPRODUCE_MARK = "Reproduce:"


class Reproduce:
    """The line under every table and figure of a chapter: the command that
    regenerates it and the digest of the parameters it was computed with.

    ``reproduce = Reproduce(P, params_file, "04_fuzzy")`` once per chapter; then
    ``reproduce(table)`` shows ``table`` and the line under it, and ``reproduce()`` after
    ``plt.show()`` shows the line alone. The command is ``make chapter`` with ``-p KEY VALUE``
    for every parameter in which ``P`` differs from ``params_file`` (papermill's overrides); the
    digest is :func:`diffrob.claims.params_digest`, the one the Summary chapter files claims under.
    """

    def __init__(self, p: Params, params_file: str | Path, chapter: str) -> None:
        base = params.load(params_file).as_dict()
        overrides = {k: v for k, v in p.as_dict().items() if base.get(k) != v}
        self.command = f"make chapter CH={chapter} PARAMS={params_file}"
        if overrides:
            args = " ".join(f"-p {k} {shlex.quote(_plain(v))}" for k, v in overrides.items())
            self.command += f' ARGS="{args}"'
        self.digest = claims.params_digest(p)
        self.line = Markdown(f"<small>{REPRODUCE_MARK} `{self.command}` (parameter digest "
                             f"`{self.digest}`)</small>")

    def __call__(self, *results: Any) -> None:
        """Display each of ``results`` (tables, figures, widgets), then the reproduce line."""
        for result in results:
            display(result)
        display(self.line)


# What Markdown (MyST, with dollar math) would read as markup in a table cell.
MARKDOWN_MARKS = re.compile(r"([\\`*_$|<\[\]])")


class Table:
    """A result table that the book numbers and captions, ``{numref}`name``` from the prose:
    the last expression of a cell, ``Table(frame, "tbl-...", caption)``.

    It shows itself twice. As ``text/markdown`` it is a MyST ``{table}`` directive around a
    pipe table, which the book renders (``_config.yml``: myst-nb parses Markdown output as
    MyST and prefers it to HTML), so Sphinx numbers it like a figure. As ``text/html`` it is
    the DataFrame's own HTML, which Jupyter and Colab show. Values are shown as pandas would
    (six significant digits); round the frame first for fewer. ``index=False`` leaves the
    row labels out; a named or multi-level index becomes columns of its own.
    """

    def __init__(self, frame: pd.DataFrame, name: str, caption: str, index: bool = True) -> None:
        if not name.startswith("tbl-"):
            raise ValueError(f"Table name {name!r}: start it with 'tbl-' (the book's convention)")
        self.frame, self.name, self.caption, self.index = frame, name, caption, index

    def _repr_html_(self) -> str:
        return self.frame.to_html(index=self.index, na_rep="")

    def _repr_markdown_(self) -> str:
        return (f":::{{table}} {self.caption}\n:name: {self.name}\n\n"
                f"{pipe_table(self.frame, self.index)}\n:::\n")


def pipe_table(frame: pd.DataFrame, index: bool = True) -> str:
    """``frame`` as a Markdown pipe table: column levels joined by " / ", columns of numbers
    or intervals right-aligned, missing values blank."""
    if index and (frame.index.nlevels > 1 or any(frame.index.names)):
        frame = frame.reset_index()
    elif index:
        frame = frame.reset_index(names=[""])
    heads = [" / ".join(str(c) for c in (col if isinstance(col, tuple) else (col,)) if str(c))
             for col in frame.columns]
    numeric = [_numeric(frame.iloc[:, j]) for j in range(frame.shape[1])]
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(_escape(h) for h in heads) + " |",
             "|" + "|".join("---:" if n else ":---" for n in numeric) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


# An interval as the tables print it, "[12.5, 62.5]" (the space may be a no-break space).
INTERVAL = re.compile(r"^\[-?[\d.]+(e[-+]?\d+)?,\s-?[\d.]+(e[-+]?\d+)?\]$")


def _numeric(column: pd.Series) -> bool:
    """Whether a column holds numbers, or intervals of numbers: right-aligned, kept whole
    (book.css lets only left-aligned text break inside a word)."""
    if pd.api.types.is_numeric_dtype(column):
        return True
    values = column.dropna()
    return len(values) > 0 and all(isinstance(v, str) and INTERVAL.match(v) for v in values)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.6g}"
    return _escape(str(value))


def _escape(text: str) -> str:
    """Plain text in a Markdown table cell: Markdown's marks escaped, on one line."""
    return MARKDOWN_MARKS.sub(r"\\\1", text).replace("\n", " ")


# myst-nb's mark for a glued value that is stored but not shown (myst_nb.ext.glue.GLUE_PREFIX).
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, text: str) -> None:
    """Store ``text`` in the executed notebook under ``name``, for the prose's
    ``{glue:text}`name``` role: the numbers in a chapter's "What it says
    here" come from the run, never typed by hand.

    Writes what ``myst_nb.glue(name, text, display=False)`` writes, without importing myst-nb,
    so that the chapters also run where Jupyter Book is not installed (Colab).
    """
    if not isinstance(text, str):
        raise TypeError(f"glue {name!r}: expected the formatted text, got {type(text).__name__}")
    display({GLUE_PREFIX + "text/plain": repr(text)}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})


def _plain(value: Any) -> str:
    """A parameter value as ``-p`` takes it (:func:`diffrob.params.parse_override`)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def text_figure(text: str, width: float = 6.0) -> Figure:
    """A figure that only says ``text``: what a numbered figure shows where its data do not
    exist in this world (no Jacobian on ImageNet, one class of examples only), so that the
    figure's number, and the references to it, stay the same in every world."""
    fig, ax = plt.subplots(figsize=(width, 1.0))
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    return fig


def figure_widget(fig: Figure, dpi: int = 90) -> widgets.Image:
    """A matplotlib figure as a PNG ``Image`` widget (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return widgets.Image(value=buf.getvalue(), format="png")


def _switch(children: Sequence[widgets.Widget], titles: Sequence[str] | None = None
            ) -> widgets.Box:
    """A container that shows one of ``children``, the one at its ``selected_index``: a
    ``Stack`` (ipywidgets 8, the static book), else a ``Tab`` whose tab bar names them by
    ``titles`` (ipywidgets 7.7, Colab's, has no ``Stack``)."""
    if hasattr(widgets, "Stack"):
        return widgets.Stack(children=children, selected_index=0)
    tab = widgets.Tab(children=children, selected_index=0)
    for i, title in enumerate(titles or ()):
        tab.set_title(i, title)
    return tab


def slider_stack(views: Sequence[Figure | widgets.Widget], description: str,
                 labels: Sequence[str] | None = None) -> widgets.VBox:
    """A slider that switches between precomputed views, without a kernel.

    ``views`` are matplotlib figures (turned into images) or widgets; the slider's
    value is the view's index, and ``labels[i]`` (if given) is shown beside it (under
    ipywidgets 7, in the tab bar of :func:`_switch`).
    """
    children = [figure_widget(v) if isinstance(v, Figure) else v for v in views]
    stack = _switch(children, [str(x) for x in labels or ()])
    slider = widgets.IntSlider(value=0, min=0, max=len(children) - 1, description=description,
                               readout=labels is None, continuous_update=True)
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    if labels is None or isinstance(stack, widgets.Tab):
        return widgets.VBox([slider, stack])
    names = _switch([widgets.Label(str(x)) for x in labels])
    widgets.jslink((slider, "value"), (names, "selected_index"))
    return widgets.VBox([widgets.HBox([slider, names]), stack])


def show_image(ax, image: Tensor) -> None:
    """One [0,1] image (C, H, W) on ``ax``, clipped for display, without axes."""
    img = image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(rows: dict[str, Tensor], scale: float = 1.3) -> Figure:
    """A figure with one row per entry: its label and its images (k, C, H, W) (Fig. S3)."""
    k = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), k, figsize=(scale * k, scale * len(rows)),
                             squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(k):
            if c < len(images):
                show_image(axes[r, c], images[c])
            else:
                axes[r, c].axis("off")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig
