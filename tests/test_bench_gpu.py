"""bench/bench_gpu.py on the CPU at tiny scale: its table, its extrapolation (through
``diffrob plan``'s FLOP counts), its store comparison, and the skip of the script without CUDA.

The GPU run itself (the real CIFAR-10 architectures at Table S1's sizes) needs CUDA and is
skipped here with that reason."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel
from torch import nn

from conftest import SMALL_DDPM
from diffrob import plan, worlds

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "bench_gpu.py"
spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (the GPU benchmark itself)")
TIMED = [n for n, s in bench.SETTINGS.items() if not s["compile"]]


def tiny_architecture() -> worlds.Architecture:
    """The CIFAR-10 DDPM's blocks at width 32 (conftest.SMALL_DDPM) and a one-layer CNN."""
    classifier = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    return worlds.Architecture(UNet2DModel(**SMALL_DDPM), classifier, (3, 32, 32))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """bench_gpu.run on the CPU: 2 images, 2 EOT samples, t* = 2, one step, the settings
    without torch.compile, the store compared between two CPU runs; (params, plan's units of
    the tiny architecture, the settings table, the extrapolation, the store check, the JSON)."""
    p = bench.bench_params("cpu", batch=2, eot=2, steps=1, t_star=2)
    out = tmp_path_factory.mktemp("bench") / "gpu.json"
    table, extra, check = bench.run(p, tiny_architecture, ("cpu", "cpu"), out, settings=TIMED)
    with torch.device("meta"):
        units = plan.unit_costs(tiny_architecture())
    return p, units, table, extra, check, json.loads(out.read_text())


def test_the_settings_are_every_combination_of_precision_checkpointing_and_compile():
    combos = {(s["autocast"], s["checkpointing"], s["compile"]) for s in bench.SETTINGS.values()}
    assert combos == {(a, c, k) for a in ("none", "bf16") for c in (True, False)
                      for k in (True, False)}


def test_the_table_has_a_row_per_setting_and_times_the_chosen_ones(small):
    p, units, table, _, _, saved = small
    assert list(table.index) == list(bench.SETTINGS) and list(table.columns) == bench.COLUMNS
    timed, skipped = table.loc[TIMED], table.drop(index=TIMED)
    assert (timed["status"] == "ok").all(), timed["status"].to_dict()
    assert (timed["step s"] > 0).all() and (timed["image-samples/s"] > 0).all()
    assert (timed["rows per call"] == p.batch_size * p.eot).all()
    assert timed["peak GB"].isna().all()  # torch.cuda's peak memory: on CUDA only
    assert timed["compile s"].isna().all()
    assert skipped["status"].str.startswith("skipped: not chosen").all()
    assert skipped["step s"].isna().all()
    # plan counts more activation memory without checkpointing (every step's graph kept)
    off = table[~table["checkpointing"]]["plan GB"].min()
    assert off > table[table["checkpointing"]]["plan GB"].max()
    assert list(saved["settings"]) == list(bench.SETTINGS)
    assert (saved["batch"], saved["eot"], saved["steps"], saved["t_star"]) == (2, 2, 1, 2)


def test_a_setting_that_plan_says_does_not_fit_is_skipped_with_its_size():
    p = bench.bench_params("cpu", batch=2, eot=2, steps=1, t_star=2)
    with torch.device("meta"):
        units = plan.unit_costs(tiny_architecture())
    row = bench.measure(p, tiny_architecture(), units, memory_gb=1e-6)
    assert row["status"].startswith("skipped: plan counts") and "GB" in row["status"]
    assert math.isnan(row["step s"])


def test_the_extrapolation_scales_the_step_by_plans_flop_ratio(small):
    """At the same t* and architecture, plan's FLOPs are linear in images, steps and EOT
    samples: 10 batches of 40 steps with 3 times the samples take 1200 measured steps."""
    p, units, table, *_ = small
    paper = p.replace(n_images=10 * p.batch_size, attack_steps=40, eot=3 * p.eot)
    extra = bench.extrapolate(table, p, paper, units, tflops=50.0)
    assert list(extra.index) == TIMED
    assert list(extra.columns) == ["measured TFLOP/s", "extrapolated h", "plan h at 50 TFLOP/s"]
    for name in TIMED:
        assert extra.loc[name, "extrapolated h"] == pytest.approx(
            table.loc[name, "step s"] * 1200 / 3600, rel=1e-9)
    # plan's hours at the measured throughput are the extrapolation
    scale = extra["measured TFLOP/s"] / 50.0
    assert (extra["plan h at 50 TFLOP/s"] / scale).values == pytest.approx(
        extra["extrapolated h"].values, rel=1e-9)


def test_the_store_holds_the_same_bytes_from_two_runs_on_the_cpu(small):
    check, saved = small[4:]
    assert saved["store"] == check
    assert check["same key"] and check["bytes equal"]
    assert check["max abs difference"] == 0.0


@NEEDS_CUDA
def test_the_store_on_cpu_and_cuda():
    check = bench.store_determinism(("cpu", "cuda"))
    assert check["same key"]
    assert check["bytes equal"] == (check["max abs difference"] == 0.0)


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **env}, timeout=600)


def test_without_cuda_the_script_says_why_and_exits_0():
    out = run_script(CUDA_VISIBLE_DEVICES="")  # no GPU visible, even on a machine with one
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("skipped: no CUDA device"), out.stdout


@NEEDS_CUDA
def test_quick_run_on_cuda(tmp_path):
    out = run_script("--quick", "--out", str(tmp_path / "gpu.json"))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert list(result["settings"]) == list(bench.SETTINGS)
    assert result["settings"][TIMED[0]]["status"] == "ok"
    assert result["store"]["same key"]
