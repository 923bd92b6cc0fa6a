"""Benchmark: the exact Jacobian of the purifier (sec. 6, Fig. 5c) by batched VJPs vs a row loop.

Both compute J_f(x0) of the fixed-randomness DiffPure purifier at one clean
image: ``diffrob.compression.analysis.jacobian`` folds ``jacobian_chunk`` vector-Jacobian
products into one batch, the reference makes one forward pass and then calls
``torch.autograd.grad`` once per output pixel. Prints a table and writes
``bench/results/jacobian.json``: times, their ratio, and the largest difference
of the two Jacobians (must be below 1e-5).

    .venv/bin/python bench/bench_jacobian.py [--params params/digits.yaml]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from diffrob import params, worlds
from diffrob.compression import analysis as compression


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params/digits.yaml")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    P = params.load(args.params)
    world = worlds.from_params(P)
    f = compression.fixed_purifier(world.purifier(), P.base_seed, 0)
    x0 = world.images[:1]
    with torch.no_grad():
        f(x0.expand(P.jacobian_chunk, *x0.shape[1:]))  # warm-up: first-call overheads untimed

    def timed(fn):
        best, out = float("inf"), None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        return best, out

    t_batched, jac = timed(lambda: compression.jacobian(f, x0, chunk=P.jacobian_chunk))
    t_rows, ref = timed(lambda: compression.jacobian_rowwise(f, x0))
    diff = (jac - ref).abs().max().item()
    result = {"world": P.world, "purifier": P.purifier, "t_star": P.t_star,
              "dim": jac.shape[0], "chunk": P.jacobian_chunk, "device": str(world.device),
              "threads": torch.get_num_threads(), "machine": platform.machine(),
              "batched_s": round(t_batched, 3), "rowwise_s": round(t_rows, 3),
              "speedup": round(t_rows / t_batched, 2), "max_abs_diff": diff,
              "equal_to_1e-5": diff < 1e-5}
    print(f"{'method':<28}{'seconds':>10}")
    print(f"{'batched VJPs (chunk ' + str(P.jacobian_chunk) + ')':<28}{t_batched:>10.2f}")
    print(f"{'row-by-row autograd.grad':<28}{t_rows:>10.2f}")
    print(f"speed-up {result['speedup']}x, Jacobian {tuple(jac.shape)}, max |difference| {diff:.2e}")
    out = Path(__file__).parent / "results" / "jacobian.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    if diff >= 1e-5:
        raise SystemExit(f"the two Jacobians differ by {diff:.2e} (>= 1e-5)")


if __name__ == "__main__":
    main()
