"""Figures and widgets shared by the chapters.

Widgets are built so that they keep working in the static HTML book: every view
is precomputed, and a slider is linked to a ``Stack`` on the JavaScript side
(``jslink``), so moving it needs no kernel.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def figure_widget(fig: Figure, dpi: int = 90) -> widgets.Image:
    """A matplotlib figure as a PNG ``Image`` widget (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return widgets.Image(value=buf.getvalue(), format="png")


def slider_stack(views: Sequence[Figure | widgets.Widget], description: str,
                 labels: Sequence[str] | None = None) -> widgets.VBox:
    """A slider that switches between precomputed views, without a kernel.

    ``views`` are matplotlib figures (turned into images) or widgets; the slider's
    value is the view's index, and ``labels[i]`` (if given) is shown beside it.
    """
    children = [figure_widget(v) if isinstance(v, Figure) else v for v in views]
    stack = widgets.Stack(children=children, selected_index=0)
    slider = widgets.IntSlider(value=0, min=0, max=len(children) - 1, description=description,
                               readout=labels is None, continuous_update=True)
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    if labels is None:
        return widgets.VBox([slider, stack])
    names = widgets.Stack(children=[widgets.Label(str(x)) for x in labels], selected_index=0)
    widgets.jslink((slider, "value"), (names, "selected_index"))
    return widgets.VBox([widgets.HBox([slider, names]), stack])
