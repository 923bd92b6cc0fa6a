"""One PGD-EOT step of the paper's CIFAR-10 setting on a GPU: time, peak memory, speed-ups.

CUDA only: on any other machine it prints ``skipped: <reason>`` and exits 0.

1. Time and peak memory (``torch.cuda.max_memory_allocated``) of one PGD-EOT step with the
   paper's real CIFAR-10 architectures at random weights (RobustBench's WideResNet-28-10,
   ``google/ddpm-cifar10-32``'s 36M-parameter UNet in diffusers form): Table S1's batch of 50
   images, 15 EOT samples folded into one call, t* = 100 diffusion steps differentiated,
   through the world's purifier and :func:`diffrob.attacks.attack_batch` (what the attack
   stage runs). One row per setting: float32 or bf16 autocast of the diffusion model,
   activation checkpointing on or off, ``torch.compile`` on or off. Each setting first runs a
   warm-up step at t* = 2 (the same shapes and kernels, and the compilation, at 2 % of the
   cost), twice: the first call's extra time is reported as the compile time. A setting whose
   activations ``diffrob plan`` counts beyond the GPU's memory is skipped with that number.
2. The same step extrapolated to the paper's PGD-EOT on 1000 images (Table 1) with
   ``params/cifar10.yaml``'s ``attack_steps``: the measured seconds times the ratio of the
   two FLOP counts of :func:`diffrob.plan.table`, beside ``diffrob plan``'s GPU hours at its
   default throughput, and the sustained TFLOP/s measured (the ``--tflops`` that makes
   ``diffrob plan`` agree with this GPU).
3. The store across devices: one BPDA batch of the digits world at smoke parameters computed
   on the CPU and on CUDA into two results stores (:func:`diffrob.stages.adversarial`); the
   stored files compared byte for byte (the key leaves the device out: the purifier's noise
   is drawn on the CPU, sec. 2 and eq. 9), and the largest pixel difference.

    .venv/bin/python bench/bench_gpu.py [--steps 1] [--batch 50] [--eot 15] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch

from diffrob import attacks, params, plan, stages, store, worlds

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "params" / "cifar10.yaml"
SMOKE = ROOT / "params" / "smoke.yaml"
WARMUP_T_STAR = 2
ATTACK = "pgd-eot"


def _name(autocast: str, checkpointing: bool, compile: bool) -> str:
    return (f"{'bf16' if autocast == 'bf16' else 'float32'}, checkpointing "
            f"{'on' if checkpointing else 'off'}, compile {'on' if compile else 'off'}")


SETTINGS: dict[str, dict] = {  # row name -> params overrides
    _name(a, c, k): {"autocast": a, "checkpointing": c, "compile": k}
    for k in (False, True) for c in (True, False) for a in ("none", "bf16")}
COLUMNS = ["autocast", "checkpointing", "compile", "rows per call", "status", "step s",
           "image-samples/s", "peak GB", "plan GB", "compile s"]


def cuda_missing() -> str:
    """Why this machine cannot run the benchmark ('' where it can)."""
    if torch.cuda.is_available():
        return ""
    return (f"no CUDA device (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda or 'none'}; torch.cuda.is_available() is False)")


def bench_params(device: str, batch: int, eot: int, steps: int, t_star: int | None = None):
    """``params/cifar10.yaml`` (Table S1) with one batch of ``batch`` images, ``eot`` samples
    in one call and ``steps`` PGD steps; ``t_star`` overrides its t* = 100."""
    return params.load(PAPER, device=device, n_images=batch, batch_size=batch, eot=eot,
                       eot_batch=0, attack_steps=steps, attacks=[ATTACK],
                       **({"t_star": t_star} if t_star else {}))


def paper_architecture():
    """The cifar10 world's real architectures (:func:`diffrob.worlds.cifar10.architecture`),
    randomly initialised on the current default device."""
    from diffrob.worlds import cifar10  # diffusers: seconds to import, so only where used

    return cifar10.architecture()


def random_world(p, arch):
    """A cifar10 :class:`~diffrob.worlds.World` of ``arch``'s models (prepared as the world's
    loader prepares them: frozen, compiled where ``p.compile``) and ``p.n_images`` random
    images in [0,1] with random labels; the scheduler is ``google/ddpm-cifar10-32``'s (linear
    betas 1e-4..0.02 over 1000 steps, clipped x_0, fixed-large variance; Appendix B)."""
    from diffusers import DDPMScheduler

    from diffrob.worlds import cifar10

    device = worlds.resolve_device(p.device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(p.n_images, *arch.image_shape, generator=g)
    y = torch.randint(0, len(cifar10.CLASSES), (p.n_images,), generator=g)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                              beta_schedule="linear", clip_sample=True,
                              variance_type="fixed_large")
    return worlds.World("cifar10", x.to(device), y.to(device),
                        worlds.prepare(arch.classifier, device, p),
                        worlds.prepare(arch.diffusion, device, p), scheduler, p,
                        class_names=list(cifar10.CLASSES))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def attack_seconds(world) -> float:
    """Wall time of one batch of the attack stage's PGD-EOT (``world.params.attack_steps``
    steps), the device synchronised before and after."""
    _sync(world.device)
    t = time.perf_counter()
    attacks.attack_batch(world, ATTACK, world.images, world.labels, 0)
    _sync(world.device)
    return time.perf_counter() - t


def plan_row(p, units, gpu_gb: float = math.inf) -> pd.Series:
    """``diffrob plan``'s row of the attack of ``p`` (one PGD step of its batch)."""
    return plan.table(p.replace(attack_steps=1), gpu_gb=gpu_gb, units=units).loc[
        f"attack/{ATTACK}"]


def measure(p, arch, units, memory_gb: float | None = None, skip: str = "") -> dict:
    """One row of :data:`COLUMNS` for the setting ``p``: skipped (``skip`` gives the reason,
    or plan's activations exceed ``memory_gb``), else warm-up and timed step."""
    device = worlds.resolve_device(p.device)
    counted = plan_row(p, units, memory_gb or math.inf)
    row = {"autocast": p.autocast, "checkpointing": p.checkpointing, "compile": p.compile,
           "rows per call": int(counted["rows per call"]), "status": "ok",
           "step s": math.nan, "image-samples/s": math.nan, "peak GB": math.nan,
           "plan GB": counted["GB per call"] + units.weights / 1e9, "compile s": math.nan}
    if skip or counted["fits"] == "no":
        row["status"] = f"skipped: {skip}" if skip else (
            f"skipped: plan counts {row['plan GB']:,.1f} GB, the GPU has {memory_gb:,.1f} GB")
        return row
    world = warm = None
    try:
        world = random_world(p, arch)
        warm = dataclasses.replace(world, params=p.replace(t_star=WARMUP_T_STAR, attack_steps=1))
        first, second = attack_seconds(warm), attack_seconds(warm)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = attack_seconds(world) / p.attack_steps
        if device.type == "cuda":
            row["peak GB"] = torch.cuda.max_memory_allocated(device) / 1e9
        row.update({"step s": seconds, "image-samples/s": row["rows per call"] / seconds,
                    "compile s": first - second if p.compile else math.nan})
    except torch.cuda.OutOfMemoryError:
        row["status"] = "out of memory"
    except Exception as e:  # noqa: BLE001 -- a setting that fails (compile, say) is reported
        row["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    finally:
        world = warm = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def settings_table(p, arch_fn: Callable, units=None, settings: Sequence[str] = tuple(SETTINGS),
                   memory_gb: float | None = None, skip_compile: str = "") -> pd.DataFrame:
    """One row per name of :data:`SETTINGS` (those not in ``settings`` skipped), all with the
    same random weights (``arch_fn()`` under seed 0); ``units``: plan's costs of
    ``arch_fn``'s architecture (counted on the meta device when not given)."""
    if units is None:
        with torch.device("meta"):
            units = plan.unit_costs(arch_fn())
    torch.manual_seed(0)
    arch = arch_fn()
    rows = {}
    for name, changes in SETTINGS.items():
        skip = ("not chosen" if name not in settings else
                skip_compile if changes["compile"] else "")
        rows[name] = measure(p.replace(**changes), arch, units, memory_gb, skip)
        r = rows[name]
        print(f"{name:<40} {r['step s']:9.3f} s/step {r['peak GB']:8.2f} GB peak  {r['status']}",
              flush=True)
    return pd.DataFrame.from_dict(rows, orient="index")[COLUMNS]


def extrapolate(table: pd.DataFrame, p, paper, units, paper_units=None,
                tflops: float = 100.0) -> pd.DataFrame:
    """For each timed row: the sustained TFLOP/s (plan's FLOPs of one step of ``p`` over the
    measured seconds), the hours of ``paper``'s attack at that throughput (the measured step
    times the ratio of the two FLOP counts of :func:`diffrob.plan.table`), and ``diffrob
    plan``'s hours for ``paper`` at ``tflops``."""
    hours = plan.hours_column(tflops)
    paper_units = paper_units or units
    out = {}
    for name, row in table.dropna(subset=["step s"]).iterrows():
        changes = SETTINGS[name]
        step = plan_row(p.replace(**changes), units)
        full = plan.table(paper.replace(**changes), tflops, units=paper_units).loc[
            f"attack/{ATTACK}"]
        out[name] = {"measured TFLOP/s": step["PFLOP"] * 1e3 / row["step s"],
                     "extrapolated h": row["step s"] * full["PFLOP"] / step["PFLOP"] / 3600,
                     f"plan h at {tflops:g} TFLOP/s": full[hours]}
    return pd.DataFrame.from_dict(out, orient="index")


def store_determinism(devices: Sequence[str] = ("cpu", "cuda")) -> dict:
    """Batch 0 of the BPDA attack stage on the digits world at ``params/smoke.yaml``, computed
    on each of ``devices`` into its own results store; whether the two stored files are equal
    byte for byte, under the same key, and the largest pixel difference."""
    with tempfile.TemporaryDirectory() as tmp:
        files, tensors, keys = [], [], []
        for j, device in enumerate(devices):
            p = params.load(SMOKE, device=device, model_dir=str(ROOT / "models"),
                            results_dir=str(Path(tmp) / f"store_{j}_{device}"))
            world = worlds.from_params(p)
            stages.adversarial(world, "bpda", shard="0/2", progress=False)
            k = stages.attack_key(world, "bpda")
            files.append(store.path(p, "attack/bpda", 0, k).read_bytes())
            tensors.append(store.read(p, "attack/bpda", 0, k))
            keys.append(store.digest(k))
        diff = (tensors[0] - tensors[1]).abs()
        return {"devices": list(devices), "same key": keys[0] == keys[1],
                "bytes equal": files[0] == files[1], "max abs difference": diff.max().item(),
                "pixels differing": (diff > 0).float().mean().item()}


def header() -> dict:
    """The GPU and the float32 precision settings that decide its speed."""
    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "memory GB": props.total_memory / 1e9, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn tf32": torch.backends.cudnn.allow_tf32,
            "matmul tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32 matmul precision": torch.get_float32_matmul_precision()}


def run(p, arch_fn: Callable, devices: Sequence[str], out: Path, info: dict | None = None,
        settings: Sequence[str] = tuple(SETTINGS), memory_gb: float | None = None,
        skip_compile: str = "") -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The three parts of the module docstring for the bench params ``p`` and the
    architecture ``arch_fn``, printed and saved (as JSON, with ``info``) to ``out``."""
    paper = params.load(PAPER)
    with torch.device("meta"):
        units = plan.unit_costs(arch_fn())
    table = settings_table(p, arch_fn, units, settings, memory_gb, skip_compile)
    extra = extrapolate(table, p, paper, units)
    print(f"\nOne PGD-EOT step: {p.batch_size} images x {p.eot} EOT samples, t* = {p.t_star}, "
          f"PGD steps timed: {p.attack_steps}, after a warm-up at t* = {WARMUP_T_STAR}")
    with pd.option_context("display.width", 250, "display.max_columns", 20,
                           "display.max_colwidth", 70):
        print(table.to_string(float_format="{:,.3f}".format))
        print(f"\nPGD-EOT on {paper.n_images} images, {paper.attack_steps} steps, "
              f"{paper.eot} EOT samples, t* = {paper.t_star} ({PAPER.relative_to(ROOT)}):")
        print(extra.to_string(float_format="{:,.2f}".format))
    check = store_determinism(devices)
    print(f"\nstore, {' vs '.join(devices)} (digits, smoke, BPDA batch 0): same key "
          f"{check['same key']}, bytes equal {check['bytes equal']}, max abs difference "
          f"{check['max abs difference']:.3g}, pixels differing {check['pixels differing']:.3g}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**(info or {}), "batch": p.batch_size, "eot": p.eot,
                               "steps": p.attack_steps, "t_star": p.t_star,
                               "settings": table.to_dict(orient="index"),
                               "extrapolation": extra.to_dict(orient="index"),
                               "store": check}, indent=1, default=str))
    return table, extra, check


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1,
                    help="PGD steps timed per setting (one step at Table S1's sizes is 100 "
                         "forward, 100 recomputed and 100 backward UNet calls on 750 rows)")
    ap.add_argument("--batch", type=int, default=50, help="images per batch (Table S1: 50)")
    ap.add_argument("--eot", type=int, default=15, help="EOT samples per gradient (Table S1: 15)")
    ap.add_argument("--quick", action="store_true",
                    help="a check that it runs: batch 2, 2 EOT samples, t* = 4, one step, "
                         "no torch.compile")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu.json"))
    args = ap.parse_args(argv)
    reason = cuda_missing()
    if reason:
        print(f"skipped: {reason}")
        return 0
    if args.quick:
        args.steps, args.batch, args.eot = 1, 2, 2
    info = header()
    print("  ".join(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}"
                    for k, v in info.items()), flush=True)
    p = bench_params("cuda", args.batch, args.eot, args.steps, 4 if args.quick else None)
    run(p, paper_architecture, ("cpu", "cuda"), Path(args.out), info,
        memory_gb=info["memory GB"], skip_compile="--quick" if args.quick else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
