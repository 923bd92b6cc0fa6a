"""PGD-EOT: ours (EOT folded into the batch) against torchattacks' EOTPGD (one call per sample).

Both attack the same system, ``world.classifier(world.purifier()(x))`` with the
full, checkpointed gradient, from the same start, with the same eps, steps,
step size, EOT samples, base seeds, images and device. Reported: the wall-time
ratio, both robust accuracies (the purified system re-evaluated under base seeds
0..r-1), and the cost of one PGD-EOT step as images/s and as a fraction of the
machine's measured float32 matmul throughput. Then every system attack of
:mod:`diffrob.attacks` on the same images: its seconds per gradient evaluation
(:meth:`diffrob.attacks.Attack.work`; Square's per query) as a ratio to PGD-EOT's, in the
same run. Last, the packages' gradient attacks (APGD-CE, APGD-T, torchattacks' EOTPGD) with
their EOT samples folded (:mod:`diffrob.attacks.fold`, the world's ``eot_batch``) against one
call per sample (``eot_batch`` = 1, the packages' own loop), timed interleaved over
``--rounds`` rounds, with the share of equal pixels of the two attacks' examples.

    .venv/bin/python bench/bench_attacks.py [--params params/digits.yaml] [--images 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
import torchattacks
from torch.utils.flop_counter import FlopCounterMode

from diffrob import attacks, params, plan, stages, worlds


def matmul_flops(n: int = 1024, repeats: int = 20) -> float:
    """Measured float32 matmul throughput of this machine, FLOP/s (best of 3)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * repeats / best


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def package_folding(world, rounds: int) -> dict:
    """Per package attack: the median over interleaved rounds of the unfolded run's seconds over
    the folded run's, and the share of pixels on which their examples agree."""
    out = {}
    for name in ("apgd-eot", "apgd-t-eot", "eotpgd"):
        runs = {fold: dataclasses.replace(world, params=world.params.replace(
            eot_batch=world.params.eot_batch if fold else 1, apgd_targets=1))
            for fold in (True, False)}
        seconds, examples = {True: [], False: []}, {}
        for _ in range(rounds):
            for fold, w in runs.items():
                examples[fold], t = timed(
                    lambda: attacks.attack_batch(w, name, w.images, w.labels, 0))
                seconds[fold].append(t)
        ratios = [b / a for a, b in zip(seconds[True], seconds[False])]
        out[f"fold_speedup/{name}"] = statistics.median(ratios)
        out[f"fold_speedup_range/{name}"] = f"{min(ratios):.2f}..{max(ratios):.2f}"
        out[f"fold_same_pixels/{name}"] = float(
            torch.isclose(examples[True], examples[False], atol=1e-5).float().mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params/digits.yaml")
    ap.add_argument("--images", type=int, default=16, help="images attacked (one batch)")
    ap.add_argument("--steps", type=int, default=5, help="PGD steps (the paper: 40)")
    ap.add_argument("--evals", type=int, default=20, help="re-evaluations r for the accuracies")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the fold")
    ap.add_argument("--out", default="bench/results/attacks.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    p = params.load(args.params, n_images=args.images, batch_size=args.images,
                    attack_steps=args.steps, n_evals=args.evals)
    world = worlds.from_params(p)
    x, y, purifier = world.images, world.labels, world.purifier()
    start = attacks.uniform(x, p.eps, torch.Generator().manual_seed(0))

    def ours():
        logits = attacks.SystemLogits(world.classifier, purifier, 0, p.attack_seed, len(x), False)
        return attacks.pgd(logits, start, y, p.eps, p.attack_steps, p.step_size,
                           random_start=False, eot=p.eot)

    def reference():
        model = attacks.SystemLogits(world.classifier, purifier, 0, p.attack_seed, len(x), False)
        return torchattacks.EOTPGD(model, eps=p.eps, alpha=p.step_size, steps=p.attack_steps,
                                   eot_iter=p.eot, random_start=False)(start, y)

    warm = attacks.SystemLogits(world.classifier, purifier, 0, p.attack_seed, 2, False)
    attacks.pgd(warm, start[:2], y[:2], p.eps, 1, p.step_size, random_start=False)  # warm-up
    x_ours, t_ours = timed(ours)
    x_ref, t_ref = timed(reference)

    def robust(x_adv):
        preds = stages.predict_purified(world, x_adv, 0, list(range(p.n_evals)))
        return float((preds == y.cpu().numpy()[None]).mean())

    # one PGD-EOT step: a forward/backward of eot x images through the checkpointed system
    logits = attacks.SystemLogits(world.classifier, purifier, 0, p.attack_seed, len(x), False)
    rows = start.clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        loss = torch.nn.functional.cross_entropy(logits(rows.repeat(p.eot, 1, 1, 1)),
                                                 y.repeat(p.eot))
        loss.backward()
    step_flops = counter.get_total_flops()
    step_s = t_ours / p.attack_steps
    peak = matmul_flops()
    result = {
        "world": p.world, "device": str(world.device), "threads": torch.get_num_threads(),
        "images": args.images, "t_star": p.t_star, "eps_255": p.eps_255,
        "steps": p.attack_steps, "eot": p.eot, "evals": p.n_evals,
        "ours_s": t_ours, "torchattacks_s": t_ref, "speedup": t_ref / t_ours,
        "robust_ours": robust(x_ours), "robust_torchattacks": robust(x_ref),
        "clean_purified": robust(x),
        "same_pixels": float(torch.isclose(x_ours, x_ref, atol=1e-5).float().mean()),
        "step_s": step_s, "images_per_s": args.images / step_s,
        "samples_per_s": args.images * p.eot / step_s,
        "step_gflop": step_flops / 1e9, "achieved_gflops": step_flops / step_s / 1e9,
        "matmul_gflops": peak / 1e9, "fraction_of_matmul": step_flops / step_s / peak,
    }
    per_unit = {}  # (unit, seconds per gradient evaluation or per query of Square)
    for name in attacks.NAMES:
        _, seconds = timed(lambda: attacks.attack_batch(world, name, x, y, 0, purifier))
        grads, queries = attacks.get(name).work_under(p)
        per_unit[name] = ("gradient" if grads else "query", seconds / (grads or queries))
    result.update({f"per_{unit}_vs_pgd-eot_gradient/{k}": v / per_unit["pgd-eot"][1]
                   for k, (unit, v) in per_unit.items()})
    result.update(package_folding(world, args.rounds))
    width = max(map(len, result))
    for k, v in result.items():
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
