"""CPU speed-ups of the attack stage, as ratios in one run, and whether they keep its strength.

What it measures, on one world (default ``params/mnist.yaml``, the 784-d embedded world):

1. Time of one PGD-EOT step (a forward/backward of ``eot`` x batch rows through every
   diffusion step and the classifier, ``eot_batch`` samples per call) under each setting
   below, as a ratio to the reference: the world's params file as it stands (its autocast,
   checkpointing and ``eot_batch``; PyTorch's own choice of attention kernel, the flash
   one), timed in the same process. The settings are timed interleaved, one step each per
   round (ABAB...), for ``--rounds`` rounds; each ratio is the median over rounds of the
   reference's time in that round over the setting's, with its range (the machine is
   shared). The reference's ``autocast: auto`` is bf16 where the CPU computes it natively,
   float32 elsewhere (:func:`diffrob.worlds.resolve_autocast`; the first line says which).
   Candidates: the attention of the UNets' middle block on PyTorch's plain ("math") kernel
   (:data:`diffrob.purifiers.CPU_ATTENTION`, the code's choice now), float32, bf16 autocast,
   activation checkpointing, other EOT samples per call, channels_last, one thread, and with
   ``--compile`` ``torch.compile`` of the UNet (its first call, the compilation, reported
   separately as ``first call s``).
2. Time of the forward-only re-evaluations (:func:`diffrob.stages.predict_purified`, r seeds
   folded ``eot_per_call`` at a time), per image-seed, against the reference: math attention,
   ``torch.inference_mode``, all seeds in one call; with the share of predictions equal to
   the reference's.
3. Attack strength of the kept candidate (math attention) against the reference: a short
   PGD-EOT (10 steps of eps / 4, 5 EOT samples) from the same seeds under each, both sets
   re-evaluated by the same float32 system (reference attention) under base seeds 0..r-1;
   the robust accuracy of each (mean over images of the per-image accuracy) and their paired
   difference, with 95 % bootstrap intervals over images. A speed-up is kept only where the
   difference's interval contains 0.

    .venv/bin/python bench/bench_speedups.py [--params params/mnist.yaml] [--compile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch.nn.attention import SDPBackend

from diffrob import attacks, params, purifiers, stages, verdicts, worlds

REFERENCE = "landed (reference)"
MATH = SDPBackend.MATH
SETTINGS = {  # name -> (params overrides, torch threads or 0 for the default, CPU attention)
    REFERENCE: ({}, 0, None),
    "math attention": ({}, 0, MATH),
    "float32": ({"autocast": "none"}, 0, None),
    "bf16 autocast": ({"autocast": "bf16"}, 0, None),
    "checkpointing": ({"checkpointing": True}, 0, None),
    "all EOT samples in one call": ({"eot_batch": 0}, 0, None),
    "eot_batch 3": ({"eot_batch": 3}, 0, None),
    "eot_batch 5": ({"eot_batch": 5}, 0, None),
    "channels_last": ({"channels_last": True}, 0, None),
    "one thread": ({}, 1, None),
    "one thread, math attention": ({}, 1, MATH),
}
COMPILED = {"torch.compile UNet": ({"compile": True}, 0, None),
            "torch.compile UNet, math attention": ({"compile": True}, 0, MATH)}


def setting(threads: int, attention: SDPBackend | None) -> ExitStack:
    """A context with ``threads`` torch threads (0: unchanged) and the CPU attention kernel."""
    stack = ExitStack()
    stack.enter_context(mock.patch.object(purifiers, "CPU_ATTENTION", attention))
    if threads:
        default = torch.get_num_threads()
        torch.set_num_threads(threads)
        stack.callback(torch.set_num_threads, default)
    return stack


def time_steps(p: params.Params, settings: dict, rounds: int) -> dict:
    """Per setting: the first call's seconds (compilation included) and each round's seconds
    of one PGD-EOT step of one batch, the settings interleaved within a round."""
    runs = {}
    for name, (changes, threads, attention) in settings.items():
        world = worlds.from_params(p.replace(**changes, n_images=p.batch_size, attack_steps=1))
        runs[name] = (world, threads, attention)
    out = {name: {"first call s": 0.0, "seconds": []} for name in settings}
    for r in range(rounds + 1):
        for name, (world, threads, attention) in runs.items():
            with setting(threads, attention):
                t = time.perf_counter()
                attacks.attack_batch(world, "pgd-eot", world.images, world.labels, 0)
                seconds = time.perf_counter() - t
            if r:
                out[name]["seconds"].append(seconds)
            else:
                out[name]["first call s"] = seconds
    return out


def time_evaluations(p: params.Params, seeds: int, rounds: int) -> dict:
    """Seconds per image-seed of :func:`stages.predict_purified` under each evaluation setting
    (interleaved rounds) and the share of its predictions equal to the reference's."""
    world = worlds.from_params(p.replace(n_images=p.batch_size))
    cases = {REFERENCE: (None, None, nullcontext),
             "math attention": (None, MATH, nullcontext),
             "math attention, inference_mode": (None, MATH, torch.inference_mode),
             f"math attention, {seeds} seeds per call": (seeds, MATH, nullcontext)}
    out = {name: {"seconds": []} for name in cases}
    for r in range(rounds + 1):
        for name, (chunk, attention, mode) in cases.items():
            with setting(0, attention), mode():
                t = time.perf_counter()
                preds = stages.predict_purified(world, world.images, 0, list(range(seeds)),
                                                chunk)
                seconds = (time.perf_counter() - t) / seeds / len(world.images)
            if r:
                out[name]["seconds"].append(seconds)
            else:
                out[name]["preds"] = preds
    for name in cases:
        out[name]["equal predictions"] = float(
            (out[name].pop("preds") == out[REFERENCE]["preds"]).mean()) if name != REFERENCE \
            else 1.0
    out[REFERENCE].pop("preds")
    return out


def ratios(timed: dict) -> dict:
    """Per setting: median (and range) over rounds of the reference's seconds over its own."""
    ref = timed[REFERENCE]["seconds"]
    out = {}
    for name, t in timed.items():
        r = [a / b for a, b in zip(ref, t["seconds"])]
        out[name] = {**t, "speedup": statistics.median(r), "speedup_range": (min(r), max(r))}
    return out


def strength(p: params.Params, images: int, steps: int, eot: int, evals: int,
             candidate: SDPBackend | None) -> dict:
    """Robust accuracy after PGD-EOT made under the reference and under the ``candidate``
    attention (same seeds), both judged by the float32 system with the reference attention;
    their paired difference with a bootstrap interval over images."""
    # Steps of eps / 4 (chapter 4b's strongest relative step on digits), so that these few
    # steps cross the whole ball: Table S1's eps / 30 would reach only a third of it.
    base = p.replace(n_images=images, batch_size=images, attack_steps=steps, eot=eot,
                     n_evals=evals, rel_stepsize=0.25)
    judge = worlds.from_params(base.replace(autocast="none"))
    world = worlds.from_params(base)
    per_image = {}
    for name, attention in (("reference", None), ("candidate", candidate)):
        with setting(0, attention):
            x = attacks.attack_batch(world, "pgd-eot", world.images, world.labels, 0)
        with setting(0, None):
            preds = stages.predict_purified(judge, x, 0, list(range(evals)))
        per_image[name] = (preds == judge.labels.cpu().numpy()[None]).mean(axis=0)
    diff = per_image["candidate"] - per_image["reference"]
    out = {}
    for k, v in {**per_image, "difference": diff}.items():
        e = verdicts.mean(v)
        name = k if k == "difference" else f"robust_{k}"
        out.update({name: e.value, f"{name}_ci": (e.lo, e.hi)})
    out.update(images=images, steps=steps, eot=eot, evals=evals,
               changed_images=int(np.sum(diff != 0)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params/mnist.yaml")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of one step each")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile of the UNet (compilation takes minutes)")
    ap.add_argument("--strength-images", type=int, default=64)
    ap.add_argument("--setting", action="append", default=[],
                    help="a name of SETTINGS to time (repeatable; default: all); the "
                         "reference is always timed")
    ap.add_argument("--eval-seeds", type=int, default=15,
                    help="seeds of the timed re-evaluations (0: skip them)")
    ap.add_argument("--no-strength", action="store_true", help="time only")
    ap.add_argument("--out", default="bench/results/speedups.json")
    args = ap.parse_args()

    p = params.load(args.params, device="cpu")
    unknown = [n for n in args.setting if n not in SETTINGS]
    if unknown:
        ap.error(f"--setting: unknown {unknown}; choose from {list(SETTINGS)}")
    settings = {n: v for n, v in SETTINGS.items()
                if (not args.setting or n in args.setting or n == REFERENCE)
                and (n == REFERENCE or v[1:] != (0, None) or p.replace(**v[0]) != p)}
    if args.compile:
        settings.update(COMPILED)
    here = worlds.resolve_autocast(p.autocast, worlds.resolve_device(p.device))
    print(f"{p.world}: autocast {p.autocast} ({here} here), checkpointing {p.checkpointing}, "
          f"{p.eot_per_call} of {p.eot} EOT samples per call, batch {p.batch_size}, "
          f"{torch.get_num_threads()} threads; {args.rounds} rounds", flush=True)
    steps = ratios(time_steps(p, settings, args.rounds))
    for name, t in steps.items():
        lo, hi = t["speedup_range"]
        print(f"{name:<36} {1e3 * statistics.median(t['seconds']) / p.batch_size:8.2f} ms per "
              f"image-step  {t['speedup']:5.2f}x [{lo:.2f}, {hi:.2f}]  first call "
              f"{t['first call s']:.1f} s", flush=True)
    evals = None
    if args.eval_seeds:
        evals = ratios(time_evaluations(p, args.eval_seeds, args.rounds))
        for name, t in evals.items():
            lo, hi = t["speedup_range"]
            print(f"evaluation, {name:<36} {1e3 * statistics.median(t['seconds']):7.3f} ms "
                  f"per image-seed  {t['speedup']:5.2f}x [{lo:.2f}, {hi:.2f}]  equal "
                  f"predictions {t['equal predictions']:.4f}", flush=True)
    check, kept = None, None
    if not args.no_strength:
        check = strength(p, args.strength_images, steps=10, eot=5, evals=20, candidate=MATH)
        kept = check["difference_ci"][0] <= 0 <= check["difference_ci"][1]
        print(f"robust accuracy reference {check['robust_reference']:.3f} "
              f"{check['robust_reference_ci']}, math attention {check['robust_candidate']:.3f} "
              f"{check['robust_candidate_ci']}; difference {check['difference']:+.3f} "
              f"{check['difference_ci']} ({check['changed_images']} images differ): math "
              f"attention {'keeps' if kept else 'changes'} the attack's strength")
    result = {"world": p.world, "threads": torch.get_num_threads(), "rounds": args.rounds,
              "steps": steps, "evaluations": evals, "strength": check,
              "math_attention_keeps_strength": kept}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
