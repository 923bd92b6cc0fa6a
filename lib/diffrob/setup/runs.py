"""The set-up's runs on a world (sec. 2): clean accuracy with and without each purifier, and
the images of Fig. S3. Recomputed, seeded by eq. 9, on every run (nothing is stored)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .. import attacks, purifiers
from ..params import PURIFIERS
from . import analysis


def clean_correct(world) -> dict[str, np.ndarray]:
    """Per test image, whether the bare classifier (``bare``) and the classifier behind each
    purifier of Table S5 classify it right, each purifier under the base seed with eq. 9's
    batch indices (Table 1's and Table 2's clean rows)."""
    p = world.params
    purified = {m: purifiers.purify(world, world.images, m, p.base_seed) for m in PURIFIERS}
    correct = {"bare": analysis.correct(world.predict(world.images), world.labels)}
    correct.update({m: analysis.correct(world.predict(x), world.labels)
                    for m, x in purified.items()})
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
