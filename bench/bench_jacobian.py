"""Benchmark: the exact Jacobian of the purifier (sec. 6, Fig. 5c) by batched VJPs vs a row loop.

Both compute J_f(x0) of the fixed-randomness DiffPure purifier at one clean
image: ``diffrob.compression.analysis.jacobian`` folds ``jacobian_chunk`` vector-Jacobian
products into one batch, the reference makes one forward pass and then calls
``torch.autograd.grad`` once per output pixel. Then eq. 4's J eta for the 2 x ``rate_samples``
perturbations of one image's compression rates: ``jacobian_products`` (its choice of route)
against forward-mode JVPs (``jvp_rows``, the route for every world before). Prints a table
and writes ``bench/results/jacobian.json``: times, their ratios, and the largest differences
(must be below 1e-5).

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
    eta = torch.cat([compression.linf_neighbours(x0, r * P.eps, P.rate_samples,
                                                 torch.Generator().manual_seed(0)) - x0
                     for r in (compression.SMALL_ETA_FRACTION, 1.0)]).flatten(1)
    t_products, products = timed(lambda: compression.jacobian_products(f, x0, eta,
                                                                       P.batch_size))
    t_jvps, jvps = timed(lambda: compression.jvp_rows(f, x0, eta, P.batch_size))
    diff_products = (products - jvps).abs().max().item()
    result = {"world": P.world, "purifier": P.purifier, "t_star": P.t_star,
              "dim": jac.shape[0], "chunk": P.jacobian_chunk, "device": str(world.device),
              "threads": torch.get_num_threads(), "machine": platform.machine(),
              "batched_s": round(t_batched, 3), "rowwise_s": round(t_rows, 3),
              "speedup": round(t_rows / t_batched, 2), "max_abs_diff": diff,
              "equal_to_1e-5": diff < 1e-5, "tangents": len(eta),
              "jacobian_products_s": round(t_products, 3), "jvp_rows_s": round(t_jvps, 3),
              "products_speedup": round(t_jvps / t_products, 2),
              "products_max_abs_diff": diff_products}
    print(f"{'method':<28}{'seconds':>10}")
    print(f"{'batched VJPs (chunk ' + str(P.jacobian_chunk) + ')':<28}{t_batched:>10.2f}")
    print(f"{'row-by-row autograd.grad':<28}{t_rows:>10.2f}")
    print(f"speed-up {result['speedup']}x, Jacobian {tuple(jac.shape)}, max |difference| {diff:.2e}")
    print(f"{'J eta, jacobian_products':<28}{t_products:>10.2f}")
    print(f"{'J eta, forward-mode JVPs':<28}{t_jvps:>10.2f}")
    print(f"speed-up {result['products_speedup']}x for {len(eta)} tangents, max |difference| "
          f"{diff_products:.2e}")
    out = Path(__file__).parent / "results" / "jacobian.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for what, d in (("the two Jacobians", diff), ("the two J eta", diff_products)):
        if d >= 1e-5:
            raise SystemExit(f"{what} differ by {d:.2e} (>= 1e-5)")


if __name__ == "__main__":
    main()
