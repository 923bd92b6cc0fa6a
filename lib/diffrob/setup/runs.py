"""The set-up's runs on a world (sec. 2): clean accuracy with and without each purifier, and
the images of Fig. S3. The purified accuracies are the r re-evaluations of sec. 4.2 (stored,
:func:`diffrob.stages.evaluations`; DiffPure's are Table 1's clean row, computed once for
both chapters); the rest is recomputed, seeded by eq. 9, on every run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .. import attacks, purifiers, stages
from ..params import PURIFIERS
from . import analysis


def clean_correct(world, progress: bool = True) -> dict[str, np.ndarray]:
    """Per test image, whether the bare classifier is right (``bare``, 0 or 1) and the
    fraction of the r = ``n_evals`` runs (base seeds 0..r-1, eq. 9's batch indices) in which
    the classifier behind each purifier of Table S5 is right (Table 1's and Table 2's clean
    rows: standard robustness on clean inputs)."""
    p = world.params
    correct = {"bare": analysis.correct(world.predict(world.images), world.labels).astype(float)}
    labels = world.labels.cpu().numpy()
    for m in PURIFIERS:
        w = dataclasses.replace(world, params=p.replace(purifier=m))
        correct[m] = (stages.evaluations(w, "clean", progress=progress) == labels).mean(axis=0)
    return correct


@dataclass
class Examples:
    """Fig. S3 for the first k test images: with uniform noise of the attack's eps
    (``perturbed``), DiffPure's states at :func:`analysis.shown_steps` (``states``: step ->
    images) and each sampler's purified images of the perturbed ones (``purified``)."""

    perturbed: Tensor
    states: dict[int, Tensor]
    purified: dict[str, Tensor]


def purification_examples(world, k: int) -> Examples:
    """Fig. S3 on the first ``k`` test images (uniform noise seeded by the base seed)."""
    p = world.params
    perturbed = attacks.uniform(world.images, p.eps, torch.Generator().manual_seed(p.base_seed))
    states = purifiers.first_states(world, perturbed, k, "ddpm", p.base_seed)
    steps = analysis.shown_steps(world.purifier().t_star)
    purified = {m: purifiers.purify(world, perturbed, m, p.base_seed)[:k] for m in PURIFIERS}
    return Examples(perturbed[:k], {s: states[s] for s in steps}, purified)
