"""Two purifier variants the paper reports outside its tables (appendix C.2, review thread).

- **One-step denoising** (Carlini et al. 2022; appendix C.2, "One-step denoising"): the
  purifier jumps to x_{t*} in one draw of eq. 1 and predicts x_0 once. The paper gives
  clean 85.2 % and PGD-EOT 48.3 % on CIFAR-10 (review thread). :func:`onestep` runs the
  full-gradient PGD-EOT of Table S1 and the r re-evaluations of sec. 4.2 through
  :mod:`diffrob.stages`, on the first ``variant_images`` test images.
- **Fixed noise** (review thread; eq. 9 and appendix B, "Fixing randomness in diffusion
  models"): DiffPure (``ddpm``) and reverse-only purification with the purifier's noise
  fixed, attacked with BPDA and BPDA-EOT. Appendix B fixes the randomness by seeding every
  draw with eq. 9 under one base seed, which "will keep the randomness the same through the
  entire purification process if encountering the same data batch"; the within-seed
  experiments use base seed 0. Read literally, the purifier is then one deterministic map
  f_s: every purification of batch i, by the attack (each gradient, each EOT sample) and by
  the evaluation, uses base seed s = ``base_seed``. :class:`.analysis.FixedNoise` is that
  map, and :func:`fixed_noise` the attacks and the one evaluation under it. Under this
  reading the EOT samples are copies of one sample, so BPDA-EOT's gradient is BPDA's (the
  sign of a sum of equal terms is theirs): the experiment measures it rather than assuming it.

The thread ran the fixed-noise experiment at t = 150 (CIFAR-10, against Table 1's
t* = 100); :func:`.analysis.fixed_noise_t` carries that ratio to a world's own t*.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .. import attacks, stages, store
from .analysis import FixedNoise

FIXED_METHODS = ("ddpm", "reverse")
# The thread's BPDA and BPDA-EOT, and the known-noise attacker: PGD through every diffusion
# step of the fixed-noise purifier, the white-box bound on an adaptive attacker.
FIXED_ATTACKS = ("bpda", "bpda-eot", "pgd")


def subset(world, **changes):
    """The world on its first ``variant_images`` test images (at most ``n_images``), with
    parameter ``changes``: the store keys of its stages then name both."""
    p = world.params
    n = min(p.variant_images, len(world.images))
    return dataclasses.replace(world, images=world.images[:n], labels=world.labels[:n],
                               params=p.replace(n_images=n, **changes))


def onestep(world, progress: bool = True) -> dict[str, np.ndarray]:
    """Predictions (r, n) of one-step denoising on clean and PGD-EOT inputs (appendix C.2).

    The attack and the r = ``n_evals`` re-evaluations are the stages of Table 1
    (:func:`diffrob.stages.adversarial`, :func:`diffrob.stages.evaluations`) with
    ``purifier = onestep`` at the world's t*, so they are stored and resumed like them.
    """
    w = subset(world, purifier="onestep")
    return {s: stages.evaluations(w, s, progress=progress) for s in ("clean", "pgd-eot")}


def fixed_noise(world, method: str, t: int, attack_names: Sequence[str] = FIXED_ATTACKS,
                progress: bool = True) -> dict[str, np.ndarray]:
    """Predictions (n,) of ``method`` at t with the noise fixed to base seed ``base_seed``,
    on clean inputs and on each attack's examples, made with the same fixed noise.

    Adversarial batches are stored as ``fixed-noise/attack/<attack>`` under the attack's
    stage key (:func:`diffrob.stages.attack_key`) plus the fixed seed. An EOT attack averages
    copies of one draw here, so its examples are its twin's without EOT
    (:func:`diffrob.attacks.without_eot`: BPDA-EOT's are BPDA's), computed once.
    """
    if method not in FIXED_METHODS:
        raise ValueError(f"method: expected one of {list(FIXED_METHODS)}, got {method!r}")
    for a in attack_names:
        attacks.get(a)
    w = subset(world, purifier=method, t_star=t)
    p = w.params
    purifier = FixedNoise(w.purifier(), p.base_seed)
    rows = dict(w.batches())
    out = {"clean": [_predict(w, purifier, w.images[r], i) for i, r in rows.items()]}
    for a in attack_names:
        same = attacks.without_eot(a)
        key = {**stages.attack_key(w, same), "noise": "fixed", "noise_seed": p.base_seed}
        x_adv = store.cached(p, f"fixed-noise/attack/{same}", key, list(rows),
                             lambda i, same=same: attacks.attack_batch(
                                 w, same, w.images[rows[i]], w.labels[rows[i]], i, purifier,
                                 progress=progress))
        out[a] = [_predict(w, purifier, x.to(w.device), i) for i, x in x_adv.items()]
    return {s: np.concatenate(v) for s, v in out.items()}


@torch.no_grad()
def _predict(world, purifier: FixedNoise, x: Tensor, batch_index: int) -> np.ndarray:
    return world.classifier(purifier(x, 0, batch_index)).argmax(1).cpu().numpy()
