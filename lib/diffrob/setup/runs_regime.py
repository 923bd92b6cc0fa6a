"""The numbers of the paper's regime rule on a world (:mod:`.analysis_regime`): PGD on the bare
classifier over a grid of radii, and the purifier's own distance (Table S1, Table S2)."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import purifiers
from ..attacks import pgd
from . import analysis
from .analysis_regime import Measures, grid, on_step, rule


def measure(world, eps_255: np.ndarray | None = None) -> Measures:
    """The world's numbers that the rule reads, on its ``n_images`` test images: PGD with the
    parameters' steps, relative step and random start (seeded by the base seed), the
    purifier's distance under the base seed (eq. 9). The grid (with the parameters' own radii)
    is walked upwards and stops past those radii once both eps rules are decided (the bare
    classifier broken on a multiple of its step, and the distance ratio, which falls as eps
    grows, below the paper's)."""
    p, r = world.params, rule()
    own_radii = [p.eps_255, p.sec31_eps_255]
    eps_255 = np.unique(np.concatenate([grid() if eps_255 is None else eps_255, own_radii]))
    x0, y = world.images, world.labels
    own = float((purifiers.purify(world, x0, p.purifier, p.base_seed) - x0)
                .flatten(1).norm(dim=1).mean())
    accuracy, length = [], []
    broken = below = False
    for e in tqdm(eps_255, desc="regime: PGD on the bare classifier", unit="eps", leave=False):
        eps = float(e) / 255
        x = pgd(world.classifier, x0, y, eps, p.attack_steps, eps * p.rel_stepsize,
                p.random_start, torch.Generator().manual_seed(p.base_seed))
        accuracy.append(float(analysis.correct(world.predict(x), y).mean()))
        length.append((x - x0).flatten(1).norm(dim=1).cpu().numpy())
        broken |= on_step(e, "bare_broken") and accuracy[-1] < r["bare_broken"]["below"]
        below |= (on_step(e, "distance_ratio")
                  and own / length[-1].mean() < r["distance_ratio"]["paper"])
        if broken and below and e >= max(own_radii):
            break
    done = len(accuracy)
    return Measures(world.scheduler.alphas_cumprod.cpu().numpy(), own, eps_255[:done],
                    np.array(accuracy), np.stack(length))
