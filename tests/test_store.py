"""The results store: round trip, refusal of damaged or mismatching files, atomic writes,
what the key covers, claims of concurrent processes, orphans, non-finite data."""

import json
import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
import torch

from diffrob import params, store
from diffrob.worlds import digits


@pytest.fixture
def p(tmp_path):
    return params.load("params/smoke.yaml", results_dir=str(tmp_path))


def key_of(p, stage: str, models: str = "m") -> dict:
    """A key as a stage makes one: models, data and some of the parameters."""
    return store.key(stage, models, "d", eps_255=p.eps_255, n_images=p.n_images)


def test_round_trip_and_missing(p):
    k = key_of(p, "attack/pgd-eot", "abc")
    assert store.read(p, "attack/pgd-eot", 0, k) is None
    x = torch.rand(2, 1, 8, 8)
    path = store.write(p, "attack/pgd-eot", 0, x, k)
    assert path == (p.store_dir / "attack" / "pgd-eot" / store.digest(k)[:12]
                    / "batch_00000.safetensors")
    assert torch.equal(store.read(p, "attack/pgd-eot", 0, k), x)
    assert [f.name for f in path.parent.iterdir()] == [path.name]  # no temp file left
    preds = torch.randint(0, 10, (4, 2))
    store.write(p, "evaluate/clean", 1, preds, key_of(p, "evaluate/clean"))
    assert torch.equal(store.read(p, "evaluate/clean", 1, key_of(p, "evaluate/clean")), preds)


def test_a_key_with_a_tuple_finds_its_batch_again(p):
    """A key is kept as it reads back from the file: a tuple field (sec. 6's Jacobian rows)
    once made every later run refuse the batch it had stored."""
    def made() -> dict:
        return store.key("compression/jacobian", "m", "d", rows=("eigenvalues", "saturated"))
    store.write(p, "compression/jacobian", 0, torch.ones(2), made())
    assert torch.equal(store.read(p, "compression/jacobian", 0, made()), torch.ones(2))


def test_other_parameters_live_beside_and_a_misplaced_file_is_refused(p):
    x = torch.rand(2, 1, 8, 8)
    mine = store.write(p, "attack/bpda", 0, x, key_of(p, "attack/bpda"))
    q = p.replace(eps_255=8.0)
    kq = key_of(q, "attack/bpda")
    assert store.read(q, "attack/bpda", 0, kq) is None  # another run's folder: not there yet
    theirs = store.path(q, "attack/bpda", 0, kq)
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(mine.read_bytes())  # a file copied into the wrong run's folder
    with pytest.raises(store.StoreError, match=r"eps_255: 48.0 in the file, 8.0 now"):
        store.read(q, "attack/bpda", 0, kq)
    assert torch.equal(store.read(p, "attack/bpda", 0, key_of(p, "attack/bpda")), x)


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "rename"])
def test_damaged_files_are_refused(p, damage):
    k = key_of(p, "attack/bpda")
    path = store.write(p, "attack/bpda", 0, torch.rand(2, 1, 8, 8), k)
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip":
        blob[-3] ^= 0xFF  # a byte of the tensor data
        path.write_bytes(bytes(blob))
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # batch 0's file copied to batch 1's place
        path.rename(path.with_name("batch_00001.safetensors"))
    match = "belongs to batch 0, not batch 1" if damage == "rename" else "is damaged"
    with pytest.raises(store.StoreError, match=match):
        store.read(p, "attack/bpda", 1 if damage == "rename" else 0, k)


def test_fingerprint_follows_the_weights():
    torch.manual_seed(0)
    a, b = digits.DigitsCNN(), digits.DigitsCNN()
    assert store.fingerprint(a) == store.fingerprint(a) != store.fingerprint(b)
    b.load_state_dict(a.state_dict())
    assert store.fingerprint(a) == store.fingerprint(b)


def test_fingerprint_looks_through_torch_compile():
    torch.manual_seed(0)
    m = digits.DigitsCNN()
    compiled = torch.compile(m)  # lazy: nothing is compiled until called
    assert list(compiled.state_dict())[0].startswith("_orig_mod.")
    assert store.fingerprint(compiled) == store.fingerprint(m)


def test_data_digest_follows_images_and_labels():
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    d = store.data_digest(x, y)
    assert store.data_digest(x.clone(), y.clone()) == d
    x2 = x.clone()
    x2[0, 0, 0, 0] += 1 / 255
    assert store.data_digest(x2, y) != d
    assert store.data_digest(x, torch.tensor([0, 1, 2, 4])) != d
    assert store.key("attack/pgd", "m", d) != store.key("attack/pgd", "m", "other")


def test_params_digest_ignores_only_where_and_how_fast(p):
    d = store.params_digest(p)
    for change in [dict(device="cpu"), dict(results_dir="x"), dict(compile=True),
                   dict(checkpointing=False), dict(model_dir="m"), dict(eot_batch=1)]:
        assert store.params_digest(p.replace(**change)) == d, change
    for change in [dict(eot=5), dict(eps_255=8.0), dict(n_evals=3), dict(cap_radius=1.0),
                   dict(world="cifar10")]:
        assert store.params_digest(p.replace(**change)) != d, change


def test_non_finite_data_are_never_written(p):
    k = key_of(p, "attack/pgd")
    x = torch.rand(2, 1, 8, 8)
    x[1, 0, 3, 3] = float("nan")
    with pytest.raises(FloatingPointError, match=r"attack/pgd, batch 4: .*1 of 128 values"):
        store.write(p, "attack/pgd", 4, x, k)
    assert not p.store_dir.exists() or not any(p.store_dir.rglob("*.safetensors"))
    with pytest.raises(FloatingPointError, match=r"attack/pgd, batch 0: boom; nothing was stored"):
        list(store.cached(p, "attack/pgd", k, [0], lambda i: (_ for _ in ()).throw(
            FloatingPointError("boom"))))
    assert store.read(p, "attack/pgd", 0, k) is None


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _lock_file(p, k, batch, owner, age=0.0):
    lock = store._lock(store.path(p, "attack/pgd", batch, k))
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps(owner))
    os.utime(lock, (time.time() - age, time.time() - age))
    return lock


def test_claims_are_exclusive_and_dead_owners_are_taken_over(p):
    k = key_of(p, "attack/pgd")
    with store.claim(p, "attack/pgd", 0, k) as mine:
        assert mine
        with store.claim(p, "attack/pgd", 0, k) as again:  # held by a live process (this one)
            assert not again
    assert not store._lock(store.path(p, "attack/pgd", 0, k)).exists()  # released
    _lock_file(p, k, 1, {"host": store.HOST, "pid": _dead_pid(), "time": 0})  # killed owner
    _lock_file(p, k, 2, {"host": "elsewhere", "pid": 1, "time": 0})  # fresh, other host
    _lock_file(p, k, 3, {"host": "elsewhere", "pid": 1, "time": 0}, age=store.STALE_S + 1)
    _lock_file(p, k, 4, {"host": store.HOST, "pid": os.getpid(), "time": 0},
               age=store.STALE_S + 1)  # not refreshed for too long: a hung or reused pid
    got = {}
    for i in (1, 2, 3, 4):
        with store.claim(p, "attack/pgd", i, k) as mine:
            got[i] = mine
    assert got == {1: True, 2: False, 3: True, 4: True}


def test_a_batch_claimed_by_another_live_process_is_waited_for(p, monkeypatch):
    monkeypatch.setattr(store, "POLL_S", 0.05)
    k = key_of(p, "attack/pgd")
    lock = _lock_file(p, k, 1, {"host": "elsewhere", "pid": 1, "time": 0})
    theirs = torch.rand(2, 1, 8, 8)

    def other_process():
        time.sleep(0.3)
        store.write(p, "attack/pgd", 1, theirs, k)
        lock.unlink()
    t = threading.Thread(target=other_process)
    t.start()
    computed = []
    got = (store.cached(p, "attack/pgd", k, [0, 1, 2],
                          lambda i: computed.append(i) or torch.full((2, 1, 8, 8), float(i))))
    t.join()
    assert computed == [0, 2] and torch.equal(got[1], theirs)


def test_orphan_temp_files_of_dead_writers_are_removed(p):
    k = key_of(p, "attack/pgd")
    target = store.path(p, "attack/pgd", 0, k)
    target.parent.mkdir(parents=True)
    dead = target.with_name(f".{target.name}.{store.HOST}.{_dead_pid()}.0123abcd.tmp")
    live = target.with_name(f".{target.name}.{store.HOST}.{os.getpid()}.0123abcd.tmp")
    far = target.with_name(f".{target.name}.elsewhere.7.0123abcd.tmp")
    old = target.with_name(f".{target.name}.elsewhere.8.0123abcd.tmp")
    for f in (dead, live, far, old):
        f.write_bytes(b"partial")
    os.utime(old, (time.time() - store.STALE_S - 1,) * 2)
    list(store.cached(p, "attack/pgd", k, [0], lambda i: torch.zeros(1)))
    assert sorted(f.name for f in target.parent.iterdir()) == sorted(
        [target.name, live.name, far.name])


def test_a_full_folder_fails_before_computing_and_names_the_path(p, monkeypatch):
    k = key_of(p, "attack/pgd")

    def compute(i):
        raise AssertionError("computed although the folder is full")
    monkeypatch.setattr(store.shutil, "disk_usage", lambda folder: SimpleNamespace(free=1000))
    with pytest.raises(OSError, match=r"No space left.*1000 bytes free.*" +
                       str(p.store_dir).replace("/", ".")):
        list(store.cached(p, "attack/pgd", k, [0], compute, lambda i: 10**6))


def test_io_errors_name_the_file(p, monkeypatch):
    k = key_of(p, "attack/pgd")

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device while writing .*batch_00000"):
        store.write(p, "attack/pgd", 0, torch.zeros(1), k)
    assert not any(store.path(p, "attack/pgd", 0, k).parent.iterdir())  # no temp file left


def test_the_journal_lists_each_computed_batch_once_and_no_read(p):
    k = store.key("stage/x", "m", "d", n=1)
    calls = []
    compute = lambda i: calls.append(i) or torch.full((2,), float(i))
    store.cached(p, "stage/x", k, [0, 1], compute, progress=False)
    store.cached(p, "stage/x", k, [0, 1, 2], compute, progress=False)  # 0, 1 read
    journal = store.computed(p)
    assert calls == [0, 1, 2] and [e["batch"] for e in journal] == [0, 1, 2]
    assert {e["stage"] for e in journal} == {"stage/x"}
    assert {e["key"] for e in journal} == {store.digest(k)[:12]}
    assert all(e["seconds"] >= 0 and e["pid"] == os.getpid() for e in journal)
