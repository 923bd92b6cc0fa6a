"""The expensive stages of sec. 4, batch by batch through the results store, and the key
of every stage.

- :func:`key`: the store key of a stage on a world (the models' fingerprint, the data
  digest, and the fields the stage declares);
- :func:`adversarial`: a system attack (Table 1) on every test image, stored as
  ``attack/<name>`` under :func:`attack_key`;
- :func:`evaluations`: the r re-evaluations of the purified system (sec. 4.2):
  predictions under base seeds ``0 .. n_evals - 1`` for clean or attacked inputs, stored
  as ``evaluate/<source>`` under :func:`evaluation_key`.

Batch ``i`` is the i of eq. 9 (``world.batches()``), so each batch's result
depends on nothing but its key: a rerun skips finished batches, ``n`` shards (batch ``i``
belongs to shard ``i % n``) write exactly the files one process writes, and processes
sharing a store compute each batch once (:func:`diffrob.store.cached`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import attacks, store

# What determines a result of the attack and evaluation stages. Not here on purpose:
# checkpointing, compile, channels_last and eot_batch (speed, not results:
# store.NOT_RESULT), the device and the folders.
WORLD_FIELDS = ("world", "diffusion_model", "n_images", "batch_size", "autocast")
PURIFIER_FIELDS = ("purifier", "t_star")
ATTACK_FIELDS = ("eps_255", "attack_steps", "rel_stepsize", "random_start", "attack_seed",
                 "pgd_iterate", "pgd_schedule")


def key(world, stage: str, fields: tuple[str, ...] = (),
        modules: tuple[nn.Module, ...] | None = None, **values: Any) -> dict[str, Any]:
    """The store key of ``stage`` on ``world``: the :func:`~diffrob.store.fingerprint` of
    ``modules`` (default: the classifier and the diffusion model), the
    :func:`~diffrob.store.data_digest` of its test images and labels, the params ``fields``
    and the given ``values``."""
    models = store.fingerprint(*(modules or (world.classifier, world.diffusion)))
    data = store.data_digest(world.images, world.labels)
    p = world.params
    return store.key(stage, models, data, **{f: getattr(p, f) for f in fields}, **values)


def attack_key(world, attack: str) -> dict[str, Any]:
    """The key of ``attack/<attack>``: the world, the purifier, the attack's parameters and
    its EOT samples per gradient (and Square's queries: the registry of :mod:`diffrob.attacks`,
    :meth:`~diffrob.attacks.Attack.key_values`)."""
    return key(world, f"attack/{attack}", WORLD_FIELDS + PURIFIER_FIELDS + ATTACK_FIELDS,
               **attacks.get(attack).key_values(world.params))


def evaluation_key(world, source: str) -> dict[str, Any]:
    """The key of ``evaluate/<source>``: the world, the purifier and ``n_evals``, and for
    an attack its key's fields too. Refuses seeds that the attack could have seen
    (:func:`diffrob.attacks.check_seeds`), for stored attacks too."""
    fields = WORLD_FIELDS + PURIFIER_FIELDS + ("n_evals",)
    if source == "clean":
        return key(world, "evaluate/clean", fields)
    values = attacks.get(source).key_values(world.params)
    attacks.check_seeds(world.params)
    return key(world, f"evaluate/{source}", fields + ATTACK_FIELDS, **values)


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
    k, todo = attack_key(world, attack), dict(batches(world, shard))
    purifier = world.purifier()
    out = store.cached(world.params, f"attack/{attack}", k, list(todo),
                       lambda i: _attack(world, attack, i, todo[i], purifier, progress),
                       lambda i: _bytes(world.images[todo[i]]),
                       desc=f"{attack} (eot {k['eot']})", progress=progress)
    return torch.cat([x.to(world.device) for x in out.values()])


def _bytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _attack(world, attack: str, i: int, rows: slice, purifier, progress: bool) -> Tensor:
    """Batch ``i`` of an attack, computed."""
    return attacks.attack_batch(world, attack, world.images[rows], world.labels[rows], i,
                                purifier or world.purifier(), progress=progress)


def _adversarial_batch(world, attack: str, i: int, rows: slice, k: dict, progress: bool
                       ) -> Tensor:
    """Batch ``i`` of an attack: from the store, or computed and stored (once across processes)."""
    out = store.cached(world.params, f"attack/{attack}", k, [i],
                       lambda i: _attack(world, attack, i, rows, None, progress),
                       lambda i: _bytes(world.images[rows]))
    return out[i].to(world.device)


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
    p = world.params
    k = evaluation_key(world, source)  # checks the seeds (attack_seed >= n_evals)
    k_attack = attack_key(world, source) if source != "clean" else None
    seeds, todo = list(range(p.n_evals)), dict(batches(world, shard))

    def compute(i: int) -> Tensor:
        rows = todo[i]
        x = (world.images[rows] if k_attack is None else
             _adversarial_batch(world, source, i, rows, k_attack, progress))
        return torch.from_numpy(predict_purified(world, x, i, seeds))

    out = store.cached(p, f"evaluate/{source}", k, list(todo), compute,
                       lambda i: 8 * p.n_evals * len(world.labels[todo[i]]),
                       desc=f"evaluate {source} (r={p.n_evals})", progress=progress)
    return np.concatenate([x.numpy() for x in out.values()], axis=1).astype(np.int64)
