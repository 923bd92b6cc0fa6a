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
  the evaluation, uses base seed s = ``base_seed``. :class:`FixedNoise` is that map, and
  :func:`fixed_noise` the attacks and the one evaluation under it. Under this reading the
  EOT samples are copies of one sample, so BPDA-EOT's gradient is BPDA's (the sign of a sum
  of equal terms is theirs): the experiment measures it rather than assuming it.

The thread ran the fixed-noise experiment at t = 150 (CIFAR-10, against Table 1's
t* = 100); :func:`fixed_noise_t` carries that ratio to a world's own t*.

Accuracies carry 95 % intervals over the images (:mod:`diffrob.verdicts`: Wilson for one
evaluation, a bootstrap over images for the mean of r).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from . import stages, store, verdicts
from .attacks import attack_batch, check_attack
from .purifiers import Purifier

FIXED_METHODS = ("ddpm", "reverse")
FIXED_ATTACKS = ("bpda", "bpda-eot")


def fixed_noise_t(t_star: int, paper_t: int, paper_t_star: int) -> int:
    """The t of the fixed-noise experiment in a world with ``t_star``: the paper's ratio
    ``paper_t / paper_t_star`` (CIFAR-10: 150 / 100) times ``t_star``, rounded, at least 1."""
    for name, v in (("t_star", t_star), ("paper_t", paper_t), ("paper_t_star", paper_t_star)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    return max(1, round(t_star * paper_t / paper_t_star))


class FixedNoise:
    """A purifier whose noise is fixed: every call draws with base seed ``seed`` (eq. 9).

    The ``base_seeds`` a caller passes (an attack's EOT seeds, say) only say how many
    seed-major chunks the rows hold; each chunk is purified with ``seed``, so it gets
    exactly the noise it would get alone. Without gradients, equal chunks (EOT copies of
    one iterate) are purified once and repeated: the same result (up to the float rounding
    of batched kernels), one chunk's cost.
    """

    def __init__(self, purifier: Purifier, seed: int):
        if not (isinstance(seed, int) and seed >= 0):
            raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
        self.purifier, self.seed, self.model = purifier, seed, purifier.model

    def __repr__(self) -> str:
        return f"FixedNoise({self.purifier!r}, seed={self.seed})"

    def __call__(self, x: Tensor, base_seeds: int | Sequence[int] = 0, batch_index: int = 0,
                 grad: bool = False) -> Tensor:
        k = 1 if isinstance(base_seeds, int) else len(base_seeds)
        if k > 1 and not grad and len(x) % k == 0:
            chunks = x.chunk(k)
            if all(torch.equal(chunks[0], c) for c in chunks[1:]):
                return self.purifier(chunks[0], self.seed, batch_index).repeat(k, 1, 1, 1)
        return self.purifier(x, [self.seed] * k, batch_index, grad=grad)


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


def fixed_noise(world, method: str, t: int, attacks: Sequence[str] = FIXED_ATTACKS,
                progress: bool = True) -> dict[str, np.ndarray]:
    """Predictions (n,) of ``method`` at t with the noise fixed to base seed ``base_seed``,
    on clean inputs and on each attack's examples, made with the same fixed noise.

    Adversarial batches are stored as ``fixed-noise/attack/<attack>`` under the stage key
    of :func:`diffrob.store.key` plus the fixed seed.
    """
    if method not in FIXED_METHODS:
        raise ValueError(f"method: expected one of {list(FIXED_METHODS)}, got {method!r}")
    for a in attacks:
        check_attack(a)
    w = subset(world, purifier=method, t_star=t)
    p, seed = w.params, w.params.base_seed
    purifier = FixedNoise(w.purifier(), seed)
    out = {s: [] for s in ("clean", *attacks)}
    for i, rows in w.batches():
        x, y = w.images[rows], w.labels[rows]
        out["clean"].append(_predict(w, purifier, x, i))
        for a in attacks:
            stage, k = f"fixed-noise/attack/{a}", _key(w, a)
            x_adv = store.read(p, stage, i, k)
            if x_adv is None:
                x_adv = attack_batch(w, a, x, y, i, purifier, progress=progress)
                store.write(p, stage, i, x_adv, k)
            out[a].append(_predict(w, purifier, x_adv.to(w.device), i))
    return {s: np.concatenate(v) for s, v in out.items()}


def _key(world, attack: str) -> dict:
    return {**store.world_key(world, f"attack/{attack}"), "noise": "fixed",
            "noise_seed": world.params.base_seed}


@torch.no_grad()
def _predict(world, purifier: FixedNoise, x: Tensor, batch_index: int) -> np.ndarray:
    return world.classifier(purifier(x, 0, batch_index)).argmax(1).cpu().numpy()


def accuracy_row(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy in percent of predictions (n,) or (r, n) (mean over runs) with its 95 %
    interval over the n images: Wilson's for one run, a bootstrap of the per-image accuracy
    for several."""
    preds = np.atleast_2d(preds)
    if preds.shape[1] != len(labels):
        raise ValueError(f"preds: expected {len(labels)} columns (one per image), got "
                         f"{preds.shape[1]}")
    right = (preds == labels).mean(axis=0)
    e = verdicts.proportion(right > 0.5) if len(preds) == 1 else verdicts.mean(right)
    return {"ours": 100 * e.value, "low": 100 * e.lo, "high": 100 * e.hi}


def table(world, paper: dict, progress: bool = True) -> pd.DataFrame:
    """Both variants on this world beside the paper's numbers (``paper_data/sec4.yaml``, ``variants``).

    The fixed-noise rows use the paper's ImageNet numbers in the ``imagenet`` world and its
    CIFAR-10 numbers elsewhere; a source the paper did not run has no paper number (NaN).
    Columns: variant, t, source, ours, low, high (percent), paper (percent), n images.
    """
    labels_all = world.labels.cpu().numpy()
    rows = []
    ref = paper["onestep"]
    for source, pr in onestep(world, progress).items():
        rows.append({"variant": "one-step", "t": world.params.t_star, "source": source,
                     **accuracy_row(pr, labels_all[:pr.shape[1]]), "paper": ref.get(source)})
    fixed = paper["fixed_noise"]["imagenet" if world.params.world == "imagenet" else "cifar10"]
    for method in FIXED_METHODS:
        ref = fixed[method]
        t = fixed_noise_t(world.params.t_star, ref["t"], fixed["t_star"])
        for source, pr in fixed_noise(world, method, t, progress=progress).items():
            rows.append({"variant": f"{method} fixed noise", "t": t, "source": source,
                         **accuracy_row(pr, labels_all[:len(pr)]), "paper": ref.get(source)})
    df = pd.DataFrame(rows)
    df["paper"] = df["paper"].astype(float)
    df["n"] = min(world.params.variant_images, len(labels_all))
    return df
