"""Fault injection: the store never serves a wrong answer and loses no finished work.

Fast faults run by default. The long kill -9 / concurrency matrix is marked ``faults``
and runs with ``DIFFROB_FAULTS=1`` (``DIFFROB_FAULTS=1 pytest -m faults tests/test_faults.py``).
Read-only and full folders are small tmpfs mounts where the machine allows them
(root in a container), else the tests skip saying why.
"""

import contextlib
import copy
import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from diffrob import attacks, purifiers, stages, store
from diffrob.fuzzy import analysis as fuzzy
from conftest import stage_world

ROOT = Path(__file__).resolve().parents[1]
long_run = pytest.mark.skipif(
    os.environ.get("DIFFROB_FAULTS") != "1",
    reason="the long kill -9 / concurrency matrix: DIFFROB_FAULTS=1 pytest -m faults")


# --- changed device kind: the noise is drawn on the CPU, whatever the device -------------

def test_purifier_noise_is_drawn_on_the_cpu_whatever_the_device(monkeypatch):
    """The eq. 9 generators are CPU generators for any device (here 'meta', which holds no
    values): so CUDA, MPS and CPU runs get the same noise and may share one store key."""
    seen, randn = [], torch.randn

    def spy(*args, generator=None, **kw):
        seen.append((generator.device.type, kw.get("device")))
        return randn(*args, generator=generator, **kw)
    monkeypatch.setattr(torch, "randn", spy)
    like = torch.empty(4, 1, 8, 8, device="meta")
    z = purifiers._NoisePlan([0, 1], 3, like)(2, forward=True)
    assert z.device.type == "meta" and z.shape == like.shape
    assert seen == [("cpu", None), ("cpu", None)]
    cpu = purifiers._NoisePlan([0, 1], 3, torch.empty(4, 1, 8, 8))(2, forward=True)
    g = torch.Generator().manual_seed(purifiers.seed_for(1, 3, 2, True))
    assert torch.equal(cpu[2:], randn((2, 1, 8, 8), generator=g))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_purified_images_agree_on_cpu_and_cuda():
    w = stage_world("unused")
    x, i = w.images[:2], 1
    cpu = w.purifier()(x, [0, 5], i)
    w.diffusion = copy.deepcopy(w.diffusion).to("cuda")  # the cached model stays on the CPU
    gpu = w.purifier()(x.cuda(), [0, 5], i)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)  # float rounding only


# --- bad arguments: a ValueError naming the argument -------------------------------------

@pytest.mark.parametrize("change,match", [
    (lambda x: x.double(), r"images: expected torch.float32"),
    (lambda x: x.half(), r"images: expected torch.float32"),
    (lambda x: x[:0], r"images: expected at least one image"),
])
def test_purifier_inputs(change, match):
    w = stage_world("unused")
    with pytest.raises(ValueError, match=match):
        w.purifier()(change(w.images[:2]), 0, 0)


@pytest.mark.parametrize("seeds,match", [(1.5, "base_seeds"), ([0, 2.0], "base_seeds"),
                                         (True, "base_seeds"), (-1, "base_seeds")])
def test_purifier_seeds_must_be_integers(seeds, match):
    w = stage_world("unused")
    with pytest.raises(ValueError, match=match):
        w.purifier()(w.images[:2], seeds, 0)
    with pytest.raises(ValueError, match="batch_index"):
        w.purifier()(w.images[:2], 0, 0.5)


def test_world_predict_and_pgd_refuse_wrong_dtypes_and_empty_batches():
    w = stage_world("unused")
    with pytest.raises(ValueError, match=r"images: expected torch.float32"):
        w.predict(w.images.double())
    from diffrob.attacks import pgd
    with pytest.raises(ValueError, match=r"x: expected at least one image"):
        pgd(w.classifier, w.images[:0], w.labels[:0], 0.1, 1, 0.01)


def test_fuzzy_refuses_negative_class_predictions():
    preds, labels = np.array([[-1, 1], [-1, 1]]), np.array([9, 1])
    with pytest.raises(ValueError, match=r"preds: expected class indices >= 0, got -1"):
        fuzzy.majority_vote_accuracy(preds, labels, 2)
    with pytest.raises(ValueError, match=r"labels: expected class indices >= 0"):
        fuzzy.grades(np.array([[0, 1]]), np.array([0, -3]))


# --- read-only and full results folders (tmpfs) ------------------------------------------

@contextlib.contextmanager
def tmpfs(folder: Path, options: str):
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _never(*a, **k):
    raise AssertionError("computed although the results folder is unusable")


def test_a_read_only_results_folder_fails_before_computing(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "ro", "size=1m,ro") as folder:
        w = stage_world(folder)
        monkeypatch.setattr(attacks, "attack_batch", _never)
        with pytest.raises(OSError, match=rf"{folder}.*") as err:
            stages.adversarial(w, "pgd", progress=False)
        assert err.value.errno == errno.EROFS


def test_a_full_results_folder_fails_before_computing_and_names_it(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "full", "size=256k") as folder:
        w = stage_world(folder)
        monkeypatch.setattr(attacks, "attack_batch", _never)
        with pytest.raises(OSError, match=r"No space left for the next batch.*" + str(folder)):
            stages.adversarial(w, "pgd", progress=False)
        # a disk that fills during the write: the real Errno 28, with the file's name
        k = stages.attack_key(w, "pgd")
        with pytest.raises(OSError, match=r"No space left on device while writing .*batch_00000"):
            store.write(w.params, "attack/pgd", 0, torch.zeros(200_000), k)
        assert not list(folder.rglob("*.tmp"))


# --- kill -9 and concurrent runs of `diffrob attack` (long) ------------------------------

TINY = ["-p", "n_images", "8", "-p", "batch_size", "1", "-p", "t_star", "2",
        "-p", "attack_steps", "6", "-p", "eot", "2", "-p", "n_evals", "3"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Runs `diffrob attack` and appends every batch it computes to the file $COMPUTED.
RUN = ("import os, sys; from diffrob import attacks, cli; f = attacks.attack_batch\n"
       "def logged(world, attack, x, y, i, *a, **k):\n"
       "    out = f(world, attack, x, y, i, *a, **k)\n"
       "    open(os.environ['COMPUTED'], 'a').write(f'{i}\\n'); return out\n"
       "attacks.attack_batch = logged; cli.main(sys.argv[1:])")


def start(results, model_dir, computed, *extra):
    cmd = [sys.executable, "-c", RUN, "attack", "--params", "params/smoke.yaml",
           "-p", "results_dir", str(results), "-p", "model_dir", str(model_dir), *TINY,
           "--attack", "pgd-eot", *extra]
    env = {**ENV, "COMPUTED": str(computed), "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "lib"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def stored(root):
    return {f.relative_to(root): f.read_bytes() for f in sorted(root.rglob("*.safetensors"))}


def leftovers(root):
    return sorted(f.name for f in root.rglob("*") if f.name.endswith((".tmp", ".lock")))


def computed(log):
    return [int(line) for line in log.read_text().split()] if log.exists() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("reference")
    proc = start(root, model_dir, root / "computed")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    assert sorted(computed(root / "computed")) == list(range(8))
    return stored(root)


@pytest.mark.faults
@long_run
@pytest.mark.parametrize("seed", range(4))
def test_kill_9_at_random_points_then_rerun(tmp_path, model_dir, reference, seed):
    """kill -9 after a random delay (inside a batch, inside a write, before any file),
    twice; then a rerun gives exactly the uninterrupted files, with no temp or lock left."""
    rng = random.Random(seed)
    for _ in range(2):
        proc = start(tmp_path, model_dir, tmp_path / "computed")
        time.sleep(rng.uniform(0.5, 6.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    proc = start(tmp_path, model_dir, tmp_path / "computed")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    assert stored(tmp_path) == reference and leftovers(tmp_path) == []


@pytest.mark.faults
@long_run
def test_concurrent_runs_compute_each_batch_once(tmp_path, model_dir, reference):
    """Three runs on one store at once (a resubmitted job, shards with one index)."""
    log = tmp_path / "computed"
    procs = [start(tmp_path, model_dir, log) for _ in range(3)]
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    assert sorted(computed(log)) == list(range(8))  # every batch once, by one of them
    assert stored(tmp_path) == reference and leftovers(tmp_path) == []


@pytest.mark.faults
@long_run
def test_a_killed_concurrent_owner_is_taken_over(tmp_path, model_dir, reference):
    """Two runs; one is killed -9 while it holds a batch: the other takes it over."""
    log = tmp_path / "computed"
    victim = start(tmp_path, model_dir, log)
    time.sleep(3.0)
    survivor = start(tmp_path, model_dir, log)
    time.sleep(1.0)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert survivor.wait(timeout=600) == 0, survivor.stderr.read()[-3000:]
    assert set(computed(log)) == set(range(8))
    assert stored(tmp_path) == reference and leftovers(tmp_path) == []
