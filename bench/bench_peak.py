"""The machine's matmul peak in float32 and bf16, and the share of it one PGD-EOT step reaches.

1. Peak: GFLOP/s of ``torch.matmul`` of two n x n matrices (2 n^3 operations), float32 and
   bfloat16, the best of ``--repeats`` calls per size at torch's default threads.
2. The step: one PGD-EOT step of one batch on each world's params file as it stands (every
   diffusion step differentiated, ``eot_per_call`` samples per call), its operations counted
   by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products, forward
   and backward) and its seconds (the median of ``--repeats`` steps after one warm-up); its
   GFLOP/s and their share of the bf16 and float32 peaks (the step's convolutions run in
   bf16 under ``autocast: bf16``).

    .venv/bin/python bench/bench_peak.py [--params params/digits.yaml --params params/mnist.yaml]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffrob import attacks, params, worlds

DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}


def matmul_gflops(n: int, dtype: torch.dtype, repeats: int) -> float:
    """The best GFLOP/s of ``repeats`` n x n matmuls in ``dtype`` (after one warm-up)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def step(p: params.Params, repeats: int) -> dict:
    """Operations, seconds and GFLOP/s of one PGD-EOT step of one batch under ``p``."""
    world = worlds.from_params(p.replace(n_images=p.batch_size, attack_steps=1))

    def run() -> None:
        attacks.attack_batch(world, "pgd-eot", world.images, world.labels, 0)

    with FlopCounterMode(display=False) as counter:
        run()  # also the warm-up
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - t)
    flops, s = counter.get_total_flops(), statistics.median(seconds)
    return {"world": p.world, "rows": p.batch_size * p.eot, "gflop": flops / 1e9,
            "seconds": s, "seconds_range": (min(seconds), max(seconds)),
            "gflops": flops / s / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", action="append", default=[],
                    help="a world's params file (repeatable; default: digits and mnist)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="bench/results/peak.json")
    args = ap.parse_args()

    peak = {}
    for name, dtype in DTYPES.items():
        by_size = {n: matmul_gflops(n, dtype, args.repeats) for n in args.sizes}
        peak[name] = max(by_size.values())
        print(f"matmul {name:<8} " + "  ".join(f"n={n}: {g:6.1f}" for n, g in by_size.items())
              + f"  GFLOP/s; peak {peak[name]:.1f}", flush=True)
    steps = []
    for path in args.params or ["params/digits.yaml", "params/mnist.yaml"]:
        s = step(params.load(path, device="cpu"), args.repeats)
        s.update({f"share_of_{k}_peak": s["gflops"] / v for k, v in peak.items()})
        steps.append(s)
        print(f"{s['world']}: one PGD-EOT step ({s['rows']} rows) {s['gflop']:.1f} GFLOP in "
              f"{s['seconds']:.2f} s [{s['seconds_range'][0]:.2f}, {s['seconds_range'][1]:.2f}]"
              f" = {s['gflops']:.1f} GFLOP/s, {100 * s['share_of_bf16_peak']:.1f} % of the "
              f"bf16 peak, {100 * s['share_of_float32_peak']:.1f} % of the float32 peak",
              flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "matmul_peak_gflops": peak,
                               "steps": steps}, indent=1))


if __name__ == "__main__":
    main()
