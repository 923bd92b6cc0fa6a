"""The expensive stages of sec. 4, batch by batch through the results store.

- :func:`adversarial`: a system attack (Table 1) on every test image;
- :func:`evaluations`: the r re-evaluations of the purified system (sec. 4.2):
  predictions under base seeds ``0 .. n_evals - 1`` for clean or attacked inputs;
- :func:`fuzzy_table`: Table 1 for clean inputs and every attack of the params.

Batch ``i`` is the i of eq. 9 (``world.batches()``), so each batch's result
depends on nothing but its key (:func:`diffrob.store.key`): a rerun skips finished
batches, ``n`` shards (batch ``i`` belongs to shard ``i % n``) write exactly the
files one process writes, and processes sharing a store compute each batch once
(:func:`diffrob.store.each`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import fuzzy, store
from .attacks import attack_batch, attack_eot, check_attack


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"k/n"`` (k = 0 .. n-1) -> (k, n); ``None`` stays ``None`` (all batches)."""
    if text is None:
        return None
    try:
        k, n = map(int, text.split("/")) if isinstance(text, str) else map(int, text)
    except ValueError:
        raise ValueError(f"shard: expected 'k/n' with integers, got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"shard: expected 'k/n' with 0 <= k < n, got {text!r}")
    return k, n


def batches(world, shard: str | tuple[int, int] | None = None) -> list[tuple[int, slice]]:
    """The (batch index, rows) of the world's test images that belong to ``shard``."""
    s = parse_shard(shard)
    return [(i, rows) for i, rows in world.batches() if s is None or i % s[1] == s[0]]


def adversarial(world, attack: str, shard: str | tuple[int, int] | None = None,
                progress: bool = True) -> Tensor:
    """The attack's adversarial images (rows of the shard's batches; all rows without one).

    Finished batches are read from the store (``attack/<attack>``); missing ones
    are computed with :func:`diffrob.attacks.attack_batch` and written at once.
    """
    check_attack(attack)
    stage, todo = f"attack/{attack}", dict(batches(world, shard))
    k = store.world_key(world, stage)
    purifier, out = world.purifier(), {}
    eot = attack_eot(attack, world.params.eot)
    with tqdm(total=len(todo), desc=f"{attack} (eot {eot})", unit="batch",
              disable=not progress) as bar:
        for i, x in store.each(world.params, stage, k, list(todo),
                               lambda i: _attack(world, attack, i, todo[i], purifier, progress),
                               lambda i: _bytes(world.images[todo[i]])):
            out[i] = x.to(world.device)
            bar.update()
    return torch.cat([out[i] for i in sorted(out)])


def _bytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _attack(world, attack: str, i: int, rows: slice, purifier, progress: bool) -> Tensor:
    """Batch ``i`` of an attack, computed."""
    return attack_batch(world, attack, world.images[rows], world.labels[rows], i,
                        purifier or world.purifier(), progress=progress)


def _adversarial_batch(world, attack: str, i: int, rows: slice, k: dict, progress: bool
                       ) -> Tensor:
    """Batch ``i`` of an attack: from the store, or computed and stored (once across processes)."""
    stage = f"attack/{attack}"
    ((_, x),) = store.each(world.params, stage, k, [i],
                           lambda i: _attack(world, attack, i, rows, None, progress),
                           lambda i: _bytes(world.images[rows]))
    return x.to(world.device)


@torch.no_grad()
def predict_purified(world, x: Tensor, batch_index: int, seeds: list[int],
                     chunk: int | None = None) -> np.ndarray:
    """Predictions of classifier(purifier(x)) under each base seed: int array (len(seeds), N).

    Seeds are folded into the batch ``chunk`` at a time (default: ``eot_per_call``,
    the number the attack stage already fits into memory with a full gradient).
    """
    chunk = chunk or world.params.eot_per_call
    purifier, n, preds = world.purifier(), len(x), []
    for c in range(0, len(seeds), chunk):
        group = seeds[c:c + chunk]
        rows = x.repeat(len(group), 1, 1, 1)
        logits = world.classifier(purifier(rows, group, batch_index))
        store.check_finite(logits, f"classifier logits under base seeds {group}")
        preds.append(logits.argmax(1).view(len(group), n).cpu())
    return torch.cat(preds).numpy().astype(np.int64)


def evaluations(world, source: str, shard: str | tuple[int, int] | None = None,
                progress: bool = True) -> np.ndarray:
    """Predictions (r, n) of the purified system under base seeds 0..r-1 (sec. 4.2).

    ``source`` is ``"clean"`` or an attack name (whose images come from the store,
    computed first if missing); r = ``n_evals``. Stored as ``evaluate/<source>``.
    With a shard, the columns are that shard's images.
    """
    if source != "clean":
        check_attack(source)
    p, stage = world.params, f"evaluate/{source}"
    k = store.world_key(world, stage)  # checks the seeds (attack_seed >= n_evals)
    k_attack = store.world_key(world, f"attack/{source}") if source != "clean" else None
    seeds, todo, out = list(range(p.n_evals)), dict(batches(world, shard)), {}

    def compute(i: int) -> Tensor:
        rows = todo[i]
        x = (world.images[rows] if k_attack is None else
             _adversarial_batch(world, source, i, rows, k_attack, progress))
        return torch.from_numpy(predict_purified(world, x, i, seeds))

    with tqdm(total=len(todo), desc=f"evaluate {source} (r={p.n_evals})", unit="batch",
              disable=not progress) as bar:
        for i, preds in store.each(p, stage, k, list(todo), compute,
                                   lambda i: 8 * p.n_evals * len(world.labels[todo[i]])):
            out[i] = preds.numpy()
            bar.update()
    return np.concatenate([out[i] for i in sorted(out)], axis=1).astype(np.int64)


def fuzzy_table(world, sources: list[str] | None = None, alpha: float = 0.5,
                progress: bool = True) -> pd.DataFrame:
    """Table 1 on this world: clean inputs and every attack in ``params.attacks``."""
    sources = sources or ["clean", *world.params.attacks]
    labels = world.labels.cpu().numpy()
    preds = {s: evaluations(world, s, progress=progress) for s in sources}
    return fuzzy.table(preds, labels, alpha=alpha, ks=world.params.vote_k)
