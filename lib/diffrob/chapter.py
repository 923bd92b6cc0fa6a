"""What every chapter (``book/NN_*.py``) opens with: its parameters, its world, the
reproduce line under each result and the glue of its numbers.

    from diffrob import chapter
    ch = chapter.open(params_file, globals(), "05_cap")
    P, reproduce, glue = ch.P, ch.reproduce, ch.glue

``globals()`` carries papermill's ``-p`` overrides (:func:`diffrob.params.load_notebook`).
"""

from __future__ import annotations

import time
from functools import cached_property
from pathlib import Path
from typing import Any

from . import figures, params, worlds
from .params import Params


class Chapter:
    """A chapter's parameters ``P`` as this machine runs them (:func:`diffrob.worlds.settled`),
    its ``world`` (loaded on first use, once), ``reproduce`` (:class:`diffrob.figures.Reproduce`)
    and ``glue`` (:func:`diffrob.figures.glue`)."""

    glue = staticmethod(figures.glue)

    def __init__(self, params_file: str | Path, namespace: dict[str, Any], name: str) -> None:
        self.name = name
        self.P: Params = worlds.settled(params.load_notebook(params_file, namespace))
        self.reproduce = figures.Reproduce(self.P, params_file, name)
        self.started = time.time()

    @cached_property
    def world(self):
        """The :class:`diffrob.worlds.World` of ``P`` (data, classifier, diffusion model)."""
        return worlds.from_params(self.P)


    def run_time(self) -> str:
        """"Chapter computed in N s on <device>.": the time since the chapter opened."""
        return f"Chapter computed in {time.time() - self.started:.0f} s on {self.world.device}."


def open(params_file: str | Path, namespace: dict[str, Any], name: str) -> Chapter:  # noqa: A001
    """The :class:`Chapter` ``name`` (e.g. ``"05_cap"``) on ``params_file`` and the notebook's
    papermill overrides in ``namespace``."""
    return Chapter(params_file, namespace, name)
