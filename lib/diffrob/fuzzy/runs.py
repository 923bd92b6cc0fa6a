"""Table 1 on a world (sec. 4.2): the attacks of ``params.attacks`` and the r re-evaluations
of every clean and attacked example, through the store (:mod:`diffrob.stages`)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .. import stages
from . import analysis


def timed_evaluations(world, sources: list[str], progress: bool = True
                      ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Each source's predictions (r, n) under base seeds 0..r-1 (an attack's examples made
    first, :func:`diffrob.stages.adversarial`), and the wall time in seconds each took here
    (near zero for a stage already stored)."""
    preds, seconds = {}, {}
    for s in sources:
        t = time.perf_counter()
        if s != "clean":
            stages.adversarial(world, s, progress=progress)
        preds[s] = stages.evaluations(world, s, progress=progress)
        seconds[s] = time.perf_counter() - t
    return preds, seconds


def table_1(world, sources: list[str] | None = None, alpha: float = 0.5,
            progress: bool = True) -> pd.DataFrame:
    """Table 1 on this world (:func:`.analysis.table`): clean inputs and every attack in
    ``params.attacks`` unless ``sources`` names others."""
    p = world.params
    sources = sources or ["clean", *p.attacks]
    labels = world.labels.cpu().numpy()
    preds = {s: stages.evaluations(world, s, progress=progress) for s in sources}
    return analysis.table(preds, labels, alpha=alpha, ks=p.vote_k)
