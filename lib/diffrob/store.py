"""The results store: one file per (stage, batch), atomic, resumable, checked.

A stage's batch ``i`` lives in ``<store_dir>/<stage>/<key hash>/batch_<i>.safetensors``
(``store_dir`` = results_dir/world): runs with other parameters (a chapter rerun
with ``-p eot 5``) keep their results side by side. Each file holds one tensor and, as
metadata, the *key* that made it (exactly the parameters that determine the
result, plus a fingerprint of the model weights), the key's hash and the hash of
the data bytes. Files are written atomically (temp file in the same folder,
fsync, rename, fsync of the folder), so a process killed at any moment leaves
either the finished file or none. :func:`read` returns ``None`` for a missing
file and raises :class:`StoreError` for a damaged file or one made with other
parameters: a stored result is never silently used for other settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from torch import Tensor, nn

from .attacks import attack_eot, check_attack
from .params import Params

FORMAT = 1
# What determines a result, by stage. Not here on purpose: device, results_dir,
# model_dir (the weights fingerprint stands for the models), checkpointing,
# compile and channels_last (they change speed, not results).
_WORLD = ("world", "diffusion_model", "n_images", "batch_size", "autocast")
_PURIFIER = ("purifier", "t_star")
ATTACK_FIELDS = ("eps_255", "attack_steps", "rel_stepsize", "random_start", "attack_seed",
                 "pgd_iterate", "pgd_schedule")


class StoreError(ValueError):
    """A stored file is damaged or was made with other parameters."""


def fingerprint(*modules: nn.Module) -> str:
    """SHA-256 of the modules' weights (names, shapes, dtypes and bytes), 16 hex digits."""
    h = hashlib.sha256()
    for m in modules:
        for name, t in m.state_dict().items():
            t = t.detach().cpu().contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def key(p: Params, stage: str, models: str = "") -> dict[str, Any]:
    """The parameters that determine ``stage``: ``attack/<name>`` or ``evaluate/<source>``.

    ``models`` is the :func:`fingerprint` of the world's classifier and diffusion
    model. ``evaluate/<attack>`` includes the attack's parameters too.
    """
    kind, _, name = stage.partition("/")
    k: dict[str, Any] = {"format": FORMAT, "stage": stage, "models": models}
    k.update({f: getattr(p, f) for f in _WORLD + _PURIFIER})
    if kind == "evaluate":
        k["n_evals"] = p.n_evals
        if name == "clean":
            return k
    elif kind != "attack":
        raise ValueError(f"stage: expected 'attack/<attack>' or 'evaluate/<source>', "
                         f"got {stage!r}")
    check_attack(name)
    k.update({f: getattr(p, f) for f in ATTACK_FIELDS})
    k["eot"] = attack_eot(name, p.eot)
    return k


def digest(k: dict[str, Any]) -> str:
    """SHA-256 of a key's canonical JSON."""
    return hashlib.sha256(json.dumps(k, sort_keys=True).encode()).hexdigest()


def path(p: Params, stage: str, batch: int, k: dict[str, Any]) -> Path:
    """Where batch ``batch`` of ``stage`` made with key ``k`` lives."""
    return p.store_dir / stage / digest(k)[:12] / f"batch_{batch:05d}.safetensors"


def write(p: Params, stage: str, batch: int, data: Tensor, k: dict[str, Any]) -> Path:
    """Store ``data`` for (stage, batch) atomically with its key; returns the file's path."""
    data = data.detach().cpu().contiguous()
    meta = {"key": json.dumps(k, sort_keys=True), "key_sha256": digest(k),
            "batch": str(batch), "data_sha256": _data_hash(data)}
    blob = _safetensors(data, meta)
    target = path(p, stage, batch, k)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def read(p: Params, stage: str, batch: int, k: dict[str, Any]) -> Tensor | None:
    """The stored tensor of (stage, batch), or ``None`` when it is not there yet.

    Raises :class:`StoreError` if the file is damaged or its key differs from ``k``.
    """
    file = path(p, stage, batch, k)
    if not file.exists():
        return None
    blob = file.read_bytes()
    try:
        (n,) = struct.unpack("<Q", blob[:8])
        meta = json.loads(blob[8:8 + n])["__metadata__"]
        data = st_load(blob)["data"]
        stored = json.loads(meta["key"])
        ok = meta["data_sha256"] == _data_hash(data) and meta["key_sha256"] == digest(stored)
    except Exception as e:  # noqa: BLE001 -- any parse failure means a damaged file
        raise StoreError(f"{file} is damaged ({type(e).__name__}: {e}); delete it and "
                         f"rerun to recompute this batch") from e
    if not ok or meta["batch"] != str(batch):
        raise StoreError(f"{file} is damaged (its checksum or batch number does not match); "
                         f"delete it and rerun to recompute this batch")
    if stored != k:
        diff = {f: (stored.get(f), k.get(f)) for f in sorted(set(stored) | set(k))
                if stored.get(f) != k.get(f)}
        lines = ", ".join(f"{f}: {old!r} in the file, {new!r} now" for f, (old, new) in diff.items())
        raise StoreError(f"{file} was made with other parameters ({lines}); it does not "
                         f"belong in this folder: delete it to recompute")
    return data


_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
           torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8",
           torch.bool: "BOOL"}


def _safetensors(t: Tensor, meta: dict[str, str]) -> bytes:
    """The safetensors file of one tensor ``data``, byte for byte reproducible.

    (safetensors' own writer orders the metadata at random; equal results should
    give equal files, so that shards can be compared byte by byte.)
    """
    if t.dtype not in _DTYPES:
        raise ValueError(f"store: cannot store dtype {t.dtype}; expected one of {list(_DTYPES)}")
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    header = json.dumps({"__metadata__": meta, "data": {
        "dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [0, len(raw)]}},
        sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + raw


def _data_hash(t: Tensor) -> str:
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return hashlib.sha256(f"{tuple(t.shape)}:{t.dtype}".encode() + raw).hexdigest()
