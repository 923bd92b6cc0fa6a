"""`diffrob attack | evaluate` for real: kill -9 and resume, shards, submitit's local executor."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from diffrob import params
from diffrob.worlds import digits, mnist

# 8 batches of one image, small enough for seconds, slow enough to be killed mid-run
TINY = ["-p", "n_images", "8", "-p", "batch_size", "1", "-p", "t_star", "2",
        "-p", "attack_steps", "6", "-p", "eot", "2", "-p", "n_evals", "3"]


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


# --- the first hour of a newcomer: help texts, user errors, plan's advice -------

import argparse  # noqa: E402

import pandas as pd  # noqa: E402

from diffrob import cli, names  # noqa: E402


def subparsers():
    action = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_help_has_no_rest_markup_and_every_option_says_what_it_does_and_its_default():
    assert "``" not in cli.parser().format_help()
    for name, sub in subparsers().items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"diffrob {name} {action.option_strings}: no help"
            if action.default not in (None, [], "", False) and action.option_strings:
                assert "%(default)s" in action.help, f"diffrob {name} {action.dest}: default"
    assert "TrainConfig" not in subparsers()["train"].format_help()


def test_attack_and_evaluate_help_list_every_attack_of_the_registry():
    from diffrob import attacks

    for name in ("attack", "evaluate"):
        text = " ".join(subparsers()[name].format_help().split())
        assert all(a in text.split() for a in attacks.NAMES), (name, text)


def test_train_help_states_each_worlds_training_defaults():
    text = " ".join(subparsers()["train"].format_help().split())
    for name, module in (("digits", digits), ("mnist", mnist)):
        cfg = module.SPEC.train
        assert f"{cfg.ddpm_steps} {name}" in text and f"{cfg.classifier_epochs} {name}" in text
        assert cfg.seed == 0 and "(default: 0)" in text
    args = cli.parser().parse_args(["train", "mnist"])
    assert (args.world, args.ddpm_steps, args.classifier_epochs) == ("mnist", None, None)


@pytest.mark.parametrize("argv, says", [
    (["evaluate", "--params", "params/smoke.yaml", "-p", "eps", "3"], "did you mean 'eps_255'"),
    (["plan", "--params", "params/smoke.yaml", "-p", "n_image", "3"], "did you mean 'n_images'"),
    (["attack", "--params", "params/nope.yaml"], "params/nope.yaml not found"),
    (["attack", "--params", "params/smoke.yaml", "--shard", "2/2"], "--shard"),
    (["attack", "--params", "params/smoke.yaml", "--shard", "0/2", "--submitit", "local"],
     "exclude each other"),
    (["attack", "--params", "params/smoke.yaml", "-p", "model_dir", "/nonexistent"],
     "not found in /nonexistent"),
    (["attack", "--params", "params/smoke.yaml", "--attack", "pgd_eot"],
     "--attack: attack: unknown attack 'pgd_eot' (did you mean 'pgd-eot'"),
    (["evaluate", "--params", "params/smoke.yaml", "--source", "clean", "foo"],
     "--source: attack: unknown attack 'foo'"),
])
def test_a_user_error_is_one_line_and_exit_status_2(argv, says, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert says in err and "Traceback" not in err and err.count("\n") == 1
    assert err.startswith(f"diffrob {argv[0]}: error: ")


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_plan", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["plan", "--params", "params/smoke.yaml"])


def test_closest_names():
    known = ["eps_255", "uniform_eps_255", "n_images", "cap_images", "eot", "eot_batch"]
    assert names.closest("eps", known)[0] == "eps_255"
    assert names.closest("n_image", known)[0] == "n_images"
    assert names.closest("eot_bach", known) == ["eot_batch"]
    assert names.did_you_mean(["zzz"], known) == ""


def test_plan_advice_names_the_setting_and_the_largest_value_that_fits():
    p = params.load("params/smoke.yaml", batch_size=4, eot=15, eot_batch=0, jacobian_chunk=64)
    costs = pd.DataFrame({"rows per call": [60, 60, 64, 60],
                          "GB per call": [120.0, 30.0, 128.0, 6000.0],
                          "fits": ["no", "yes", "no", "no"]},
                         index=["attack/pgd-eot", "attack/pgd", "compression/jacobian", "attack/x"])
    advice = cli._memory_advice(p, costs, free_gb=40.0)
    assert len(advice) == 3
    # 2 GB a row: 20 rows fit in 40 GB, i.e. 5 EOT samples of 4 images
    assert advice[0].startswith("attack/pgd-eot does not fit: set -p eot_batch 5 ")
    assert advice[1].startswith("compression/jacobian does not fit: set -p jacobian_chunk 20 ")
    # 100 GB a row: not even one image with one EOT sample; the batch must shrink
    assert "-p eot_batch 1 -p batch_size 1" in advice[2]
