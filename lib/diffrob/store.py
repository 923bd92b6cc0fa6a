"""The results store: one file per (stage, batch), atomic, resumable, checked.

A stage's batch ``i`` lives in ``<store_dir>/<stage>/<key hash>/batch_<i>.safetensors``
(``store_dir`` = results_dir/world): runs with other parameters (a chapter rerun
with ``-p n_images 48``) keep their results side by side. Each file holds one tensor and, as
metadata, the *key* that made it, the key's hash and the hash of the data bytes.
The key is everything that decides the result (docs/design.md, "The store key"): the
parameters that matter (each stage declares its own: :mod:`diffrob.stages`), a fingerprint of the model weights (of the underlying
module, whatever ``torch.compile`` wraps around it), a digest of the test images
and labels as the world holds them (after any preprocessing), and, through the
batch index and the seeds in the parameters, the eq. 9 seed plan. The device is
not in it: every purifier draw is made on the CPU (:mod:`diffrob.purifiers`).

Files are written atomically (temp file in the same folder, fsync, rename, fsync
of the folder), so a process killed at any moment leaves either the finished file
or none; non-finite tensors are never written. :func:`read` returns ``None`` for
a missing file and raises :class:`StoreError` for a damaged file, another batch's
file or one made with other parameters: a stored result is never silently used
for other settings. :func:`cached` reads or computes a list of batches, the one primitive every stage
uses, so that concurrent processes on one store compute each batch once: a batch is claimed
with a lock file (owner host, pid, time; kept fresh by a heartbeat) before it is
computed, and a dead owner's claim is taken over (:func:`claim`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from torch import Tensor, nn
from tqdm.auto import tqdm

from .params import Params

FORMAT = 2  # 2: the key holds the data digest


# Parameters that change where or how fast a result is computed, not the result
# (eot_batch: up to float rounding, as its documentation says). Not in any key either:
# the device (noise is drawn on the CPU); results_dir, model_dir and data_dir (the weights
# fingerprint and the data digest stand for them).
NOT_RESULT = ("device", "results_dir", "model_dir", "data_dir", "checkpointing", "compile",
              "channels_last", "eot_batch")


class StoreError(ValueError):
    """A stored file is damaged, belongs to another batch or was made with other parameters."""


def _module(m: nn.Module) -> nn.Module:
    """The module under ``torch.compile``'s wrapper (whose state_dict names gain ``_orig_mod.``)."""
    while isinstance(getattr(m, "_orig_mod", None), nn.Module):
        m = m._orig_mod
    return m


def fingerprint(*modules: nn.Module) -> str:
    """SHA-256 of the modules' weights (names, shapes, dtypes and bytes), 16 hex digits.

    Wrappers such as ``torch.compile`` are looked through: the fingerprint is the
    underlying module's, so compiling does not hide stored results.
    """
    h = hashlib.sha256()
    for m in modules:
        for name, t in _module(m).state_dict().items():
            t = t.detach().cpu().contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def data_digest(images: Tensor, labels: Tensor) -> str:
    """SHA-256 of the test images and labels as used (shapes, dtypes, bytes), 16 hex digits."""
    h = hashlib.sha256()
    for t in (images, labels):
        h.update(_data_hash(t.detach().cpu().contiguous()).encode())
    return h.hexdigest()[:16]


def params_digest(p: Params) -> str:
    """SHA-256 of every parameter that can change a result (all but :data:`NOT_RESULT`)."""
    values = {f: v for f, v in p.as_dict().items() if f not in NOT_RESULT}
    return digest(values)


def key(stage: str, models: str = "", data: str = "", **fields: Any) -> dict[str, Any]:
    """The key of a stage's results: the store's format, the stage, the :func:`fingerprint`
    of the models and the :func:`data_digest` of the images that made it, and every other
    field that determines it (the stage declares them: :mod:`diffrob.stages`), as it reads
    back from a file (:func:`canonical`), so a stored batch is found again."""
    return canonical({"format": FORMAT, "stage": stage, "models": models, "data": data,
                      **fields})


def canonical(value: Any) -> Any:
    """``value`` as it reads back from JSON (a tuple as a list)."""
    return json.loads(json.dumps(value))


def digest(k: dict[str, Any]) -> str:
    """SHA-256 of a key's canonical JSON."""
    return hashlib.sha256(json.dumps(k, sort_keys=True).encode()).hexdigest()


def path(p: Params, stage: str, batch: int, k: dict[str, Any]) -> Path:
    """Where batch ``batch`` of ``stage`` made with key ``k`` lives."""
    return p.store_dir / stage / digest(k)[:12] / f"batch_{batch:05d}.safetensors"


def check_finite(t: Tensor, what: str) -> None:
    """``FloatingPointError`` naming ``what`` unless every value of ``t`` is finite."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise FloatingPointError(f"{what}: {bad} of {t.numel()} values are NaN or infinite")


def write(p: Params, stage: str, batch: int, data: Tensor, k: dict[str, Any]) -> Path:
    """Store ``data`` for (stage, batch) atomically with its key; returns the file's path.

    Non-finite data raise ``FloatingPointError`` and nothing is written; an I/O
    error names the file.
    """
    check_finite(data, f"{stage}, batch {batch}: the result (not stored)")
    data = data.detach().cpu().contiguous()
    meta = {"key": json.dumps(k, sort_keys=True), "key_sha256": digest(k),
            "batch": str(batch), "data_sha256": _data_hash(data)}
    blob = _safetensors(data, meta)
    target = path(p, stage, batch, k)
    _mkdir(target.parent)
    tmp = _temp(target)
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror} while writing {target}", str(tmp)) from e
    finally:
        tmp.unlink(missing_ok=True)
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
    if not ok:
        raise StoreError(f"{file} is damaged (its checksum does not match); "
                         f"delete it and rerun to recompute this batch")
    if meta["batch"] != str(batch):
        raise StoreError(f"{file} belongs to batch {meta['batch']}, not batch {batch} (a file "
                         f"copied or renamed into this place); delete it to recompute")
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


# --- several processes on one store: claims, orphans, free space -----------------------------

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
STALE_S = 600.0     # a claim or temp file not refreshed for this long is a dead owner's
HEARTBEAT_S = 60.0  # how often a live owner refreshes its claim
POLL_S = 2.0        # how often a batch another process computes is looked for
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def _temp(target: Path) -> Path:
    """A unique temp name beside ``target`` that says who writes it (host and pid)."""
    return target.with_name(f".{target.name}.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror}: cannot create the results folder", str(folder)) from e


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped by its parent is dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _dead(host: str, pid: int, mtime: float) -> bool:
    """Whether the owner of a claim or temp file (``host``, ``pid``, last refreshed at
    ``mtime``) is gone: a dead pid on this host, or no refresh for :data:`STALE_S`."""
    return (host == HOST and not _pid_alive(pid)) or time.time() - mtime > STALE_S


def clean_orphans(folder: Path) -> list[Path]:
    """Remove the ``*.tmp`` files in ``folder`` whose writers are dead; returns them."""
    removed = []
    for f in folder.glob(".*.tmp") if folder.is_dir() else []:
        m = _TEMP.fullmatch(f.name)
        try:
            if m and _dead(m["host"], int(m["pid"]), f.stat().st_mtime):
                f.unlink()
                removed.append(f)
        except FileNotFoundError:
            pass
    return removed


def _lock(target: Path) -> Path:
    return target.with_name(target.name + ".lock")


def _owner(lock: Path) -> tuple[dict | None, float] | None:
    """(owner, mtime) of a claim, owner ``None`` if unreadable; ``None`` if there is none."""
    try:
        mtime = lock.stat().st_mtime
        text = lock.read_text()
    except FileNotFoundError:
        return None
    try:
        owner = json.loads(text)
        return (owner if isinstance(owner, dict) else None), mtime
    except ValueError:
        return None, mtime


def _take(lock: Path) -> bool:
    """Create ``lock`` for this process, breaking a dead owner's claim; whether it is ours."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen = _owner(lock)
            if seen is None:
                continue  # released meanwhile: try again
            owner, mtime = seen
            host, pid = (owner.get("host", ""), int(owner.get("pid", -1))) if owner else ("", -1)
            if not _dead(host, pid, mtime):
                return False
            grave = _temp(lock)  # break it: only one process can rename it away
            try:
                os.rename(lock, grave)
            except FileNotFoundError:
                continue
            if _owner(grave) != seen:  # a fresh claim made meanwhile: give it back
                with contextlib.suppress(OSError):
                    os.link(grave, lock)
                grave.unlink(missing_ok=True)
                return False
            grave.unlink(missing_ok=True)
            continue
        except OSError as e:
            raise OSError(e.errno, f"{e.strerror}: cannot claim a batch (is the results folder "
                                   f"writable?)", str(lock)) from e
        try:
            os.write(fd, json.dumps({"host": HOST, "pid": os.getpid(),
                                     "time": time.time()}).encode())
            os.fsync(fd)
        except OSError as e:
            lock.unlink(missing_ok=True)
            raise OSError(e.errno, f"{e.strerror}: cannot claim a batch", str(lock)) from e
        finally:
            os.close(fd)
        return True
    return False


def check_space(folder: Path, need: int) -> None:
    """``OSError`` (ENOSPC) naming ``folder`` unless it has ``need`` bytes (+ 1 MiB) free."""
    free = shutil.disk_usage(folder).free
    if free < need + 2**20:
        raise OSError(errno.ENOSPC, f"No space left for the next batch: {free} bytes free, "
                      f"about {need} needed (free some space or move results_dir)", str(folder))


@contextlib.contextmanager
def claim(p: Params, stage: str, batch: int, k: dict[str, Any], need: int = 0) -> Iterator[bool]:
    """Claim (stage, batch) before computing it: yields whether this process holds it.

    The claim is a lock file beside the batch's file, created atomically
    (``O_EXCL``) with the owner's host, pid and time, refreshed every
    :data:`HEARTBEAT_S` and removed on exit. A claim is taken over when its owner is
    dead: its pid is gone (same host; kill -9 included) or it was not refreshed for
    :data:`STALE_S` (any host). Before claiming, the folder's writability and its
    free space (``need`` bytes, the batch's size) are checked, so an unusable
    results folder fails before any computing, naming its path.
    """
    target = path(p, stage, batch, k)
    _mkdir(target.parent)
    check_space(target.parent, need)
    lock = _lock(target)
    if not _take(lock):
        yield False
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(lock)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join()
        lock.unlink(missing_ok=True)


JOURNAL = "computed.jsonl"  # in each world's store: one line per batch computed


def log_computed(p: Params, stage: str, batch: int, k: dict[str, Any], seconds: float) -> None:
    """Append to the world's journal (:data:`JOURNAL`) that this process computed batch
    ``batch`` of ``stage`` under key ``k`` in ``seconds``: what a build computed, and how
    long each batch took (one short line, appended atomically by concurrent writers)."""
    line = json.dumps({"stage": stage, "key": digest(k)[:12], "batch": batch,
                       "seconds": round(seconds, 3), "host": socket.gethostname(),
                       "pid": os.getpid(), "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    with open(p.store_dir / JOURNAL, "a") as f:
        f.write(line + "\n")


def computed(p: Params) -> list[dict[str, Any]]:
    """The world's journal: every batch computed into its store, oldest first."""
    path = p.store_dir / JOURNAL
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def cached(p: Params, stage: str, k: dict[str, Any], batches: Sequence[int],
           compute: Callable[[int], Tensor], need: Callable[[int], int] | None = None,
           desc: str | None = None, unit: str = "batch", progress: bool = True
           ) -> dict[int, Tensor]:
    """``{i: tensor}`` for every batch index in ``batches`` (in that order): the one way a
    stage's results are read or computed.

    A stored batch is read (and refused, :class:`StoreError`, if it was made with another
    key); a missing one is claimed (:func:`claim`), computed with ``compute(i)`` and
    written at once, so an interrupted run resumes where it stopped; one that another live
    process has claimed is left for later and waited for (:data:`POLL_S`), then read, or
    computed here if its owner died. So N processes on one store compute each batch once.
    Orphan temp files of dead writers are removed first. A non-finite result (or a
    ``FloatingPointError`` of ``compute``) raises naming the stage and batch, and nothing is
    written. Each batch computed is logged in the world's journal (:func:`log_computed`).
    ``need(i)`` is batch i's size in bytes (checked against the free space before
    claiming); with ``desc`` a progress bar counts the batches as they become ready.
    """
    need = need or (lambda i: 0)
    done: dict[int, Tensor] = {}
    if batches:
        clean_orphans(path(p, stage, batches[0], k).parent)
    pending = list(batches)
    with tqdm(total=len(pending), desc=desc, unit=unit,
              disable=desc is None or not progress) as bar:
        while pending:
            waiting = []
            for i in pending:
                x = read(p, stage, i, k)
                if x is None:
                    with claim(p, stage, i, k, need(i)) as mine:
                        x = read(p, stage, i, k) if mine else None  # finished meanwhile?
                        if mine and x is None:
                            start = time.monotonic()
                            try:
                                x = compute(i)
                            except FloatingPointError as e:
                                raise FloatingPointError(f"{stage}, batch {i}: {e}; nothing "
                                                         f"was stored") from e
                            write(p, stage, i, x, k)
                            log_computed(p, stage, i, k, time.monotonic() - start)
                if x is None:
                    waiting.append(i)
                else:
                    done[i] = x
                    bar.update()
            pending = waiting
            if pending:
                time.sleep(POLL_S)
    return {i: done[i] for i in batches}
