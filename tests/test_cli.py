"""`diffrob attack | evaluate` for real: kill -9 and resume, shards, submitit's local executor."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

from diffrob.worlds import digits

# 8 batches of one image, small enough for seconds, slow enough to be killed mid-run
TINY = ["-p", "n_images", "8", "-p", "batch_size", "1", "-p", "t_star", "2",
        "-p", "attack_steps", "6", "-p", "eot", "2", "-p", "n_evals", "3"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """Randomly initialised (seeded) digits models saved where `digits.load` looks."""
    root = tmp_path_factory.mktemp("models")
    (root / "digits").mkdir()
    torch.manual_seed(0)
    save_file(digits.DigitsCNN().state_dict(), root / "digits" / digits.CLASSIFIER_FILE)
    save_file(digits.build_unet().state_dict(), root / "digits" / digits.UNET_FILE)
    return root


def command(stage, results, model_dir, *extra):
    return [sys.executable, "-m", "diffrob.cli", stage, "--params", "params/smoke.yaml",
            "-p", "results_dir", str(results), "-p", "model_dir", str(model_dir), *TINY, *extra]


# one thread per process: tiny batches gain nothing from more, and on a shared machine
# spinning OpenMP threads of several processes slow each other down by orders of magnitude
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args, **kw):
    done = subprocess.run(command(*args, **kw), capture_output=True, text=True, timeout=300,
                          env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def stored(root):
    return {f.relative_to(root): f.read_bytes() for f in sorted(root.rglob("*.safetensors"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model_dir):
    """One uninterrupted, unsharded run of `diffrob attack --attack pgd-eot`."""
    root = tmp_path_factory.mktemp("reference")
    run("attack", root, model_dir, "--attack", "pgd-eot")
    files = stored(root)
    assert len(files) == 8
    return files


def test_kill_9_mid_run_then_rerun_gives_the_uninterrupted_result(tmp_path, model_dir, reference):
    folder = tmp_path / "digits" / "attack" / "pgd-eot"
    proc = subprocess.Popen(command("attack", tmp_path, model_dir, "--attack", "pgd-eot"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline = time.time() + 240
        while not list(folder.glob("*/batch_*.safetensors")) and time.time() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    finished = len(list(folder.glob("*/batch_*.safetensors")))
    assert proc.returncode == -signal.SIGKILL and 1 <= finished < 8
    run("attack", tmp_path, model_dir, "--attack", "pgd-eot")
    assert stored(tmp_path) == reference


def test_submitit_local_executor_runs_the_shards(tmp_path, model_dir, reference):
    """`--submitit local --jobs 2` runs `--shard 0/2` and `--shard 1/2` as two processes:
    the files equal those of the single process (in-process shards: test_stages.py)."""
    out = run("attack", tmp_path / "res", model_dir, "--attack", "pgd-eot",
              "--submitit", "local", "--jobs", "2", "--folder", str(tmp_path / "logs"))
    assert "submitted 2 jobs" in out.stdout
    assert stored(tmp_path / "res") == reference


def test_evaluate_prints_table_1_and_keeps_other_parameters_apart(tmp_path, model_dir):
    out = run("evaluate", tmp_path, model_dir, "--source", "clean", "bpda")
    lines = out.stdout.splitlines()
    assert "alpha=0.5" in out.stdout and lines[-2].startswith("clean")
    assert lines[-1].startswith("bpda")
    assert len(list((tmp_path / "digits" / "evaluate" / "bpda").glob("*/*.safetensors"))) == 8
    run("evaluate", tmp_path, model_dir, "--source", "clean", "-p", "t_star", "1")
    assert len(list((tmp_path / "digits" / "evaluate" / "clean").iterdir())) == 2
