"""CPU speed-ups of the attack stage, as ratios in one run, and whether they keep its strength.

What it measures, on one world (default ``params/mnist.yaml``, the 784-d embedded world):

1. Time of one PGD-EOT step (a forward/backward of ``eot`` x batch rows through every
   checkpointed diffusion step and the classifier) under each setting below, as a ratio to
   the float32 reference (torch's default threads, batch ``batch_size``, every EOT sample
   folded into one call) timed in the same process: bf16 autocast of the diffusion model
   (this CPU has AMX-BF16 / AVX-512 BF16), channels_last, both, no activation checkpointing
   (``checkpointing: false``: the reverse steps' activations are kept instead of recomputed),
   ``torch.compile`` of the UNet,
   fewer EOT samples per call (``eot_batch``), a smaller or larger batch, one thread.
2. Attack strength with and without bf16: a short PGD-EOT (10 steps of eps / 4, 5 EOT samples)
   from the same seeds in float32 and
   in bf16, both sets re-evaluated by the same float32 system under base seeds 0..r-1; the
   robust accuracy of each (mean over images of the per-image accuracy) and their paired
   difference, with 95 % bootstrap intervals over images. A speed-up is kept only where the
   difference's interval contains 0.

    .venv/bin/python bench/bench_speedups.py [--params params/mnist.yaml] [--compile]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffrob import attacks, params, stages, verdicts, worlds

SETTINGS = {  # name -> (params overrides, torch threads or 0 for the default)
    "float32 (reference)": ({}, 0),
    "bf16 autocast": ({"autocast": "bf16"}, 0),
    "channels_last": ({"channels_last": True}, 0),
    "bf16 + channels_last": ({"autocast": "bf16", "channels_last": True}, 0),
    "no checkpointing": ({"checkpointing": False}, 0),
    "bf16, no checkpointing": ({"autocast": "bf16", "checkpointing": False}, 0),
    "eot_batch 5": ({"eot_batch": 5}, 0),
    "bf16, eot_batch 5": ({"autocast": "bf16", "eot_batch": 5}, 0),
    "no checkpointing, eot_batch 5": ({"checkpointing": False, "eot_batch": 5}, 0),
    "bf16, no checkpointing, eot_batch 5": ({"autocast": "bf16", "checkpointing": False,
                                             "eot_batch": 5}, 0),
    "bf16, no checkpointing, eot_batch 3": ({"autocast": "bf16", "checkpointing": False,
                                             "eot_batch": 3}, 0),
    "batch 32": ({"batch_size": 32}, 0),
    "no checkpointing, batch 128": ({"checkpointing": False, "batch_size": 128}, 0),
    "one thread": ({}, 1),
    "one thread, no checkpointing": ({"checkpointing": False}, 1),
}


def step_seconds(p: params.Params, images: int, steps: int, threads: int) -> float:
    """Seconds per PGD-EOT step per image (``steps`` steps after one warm-up step)."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        world = worlds.from_params(p.replace(n_images=images, attack_steps=1))
        x, y = world.images[:p.batch_size], world.labels[:p.batch_size]
        attacks.attack_batch(world, "pgd-eot", x, y, 0)  # warm-up (and compilation)
        world = worlds.from_params(p.replace(n_images=images, attack_steps=steps))
        t = time.perf_counter()
        attacks.attack_batch(world, "pgd-eot", x, y, 0)
        return (time.perf_counter() - t) / steps / len(x)
    finally:
        torch.set_num_threads(default)


def strength(p: params.Params, images: int, steps: int, eot: int, evals: int) -> dict:
    """Robust accuracy after PGD-EOT made in float32 and in bf16 (same seeds), both judged by
    the float32 system; their paired difference with a bootstrap interval over images."""
    # Steps of eps / 4 (chapter 4b's strongest relative step on digits), so that these few
    # steps cross the whole ball: Table S1's eps / 30 would reach only a third of it.
    base = p.replace(n_images=images, batch_size=images, attack_steps=steps, eot=eot,
                     n_evals=evals, autocast="none", rel_stepsize=0.25)
    judge = worlds.from_params(base)
    per_image = {}
    for name, autocast in (("float32", "none"), ("bf16", "bf16")):
        world = worlds.from_params(base.replace(autocast=autocast))
        x = attacks.attack_batch(world, "pgd-eot", world.images, world.labels, 0)
        preds = stages.predict_purified(judge, x, 0, list(range(evals)))
        per_image[name] = (preds == judge.labels.cpu().numpy()[None]).mean(axis=0)
    diff = per_image["bf16"] - per_image["float32"]
    out = {}
    for k, v in {**per_image, "difference": diff}.items():
        e = verdicts.mean(v)
        name = k if k == "difference" else f"robust_{k}"
        out.update({name: e.value, f"{name}_ci": (e.lo, e.hi)})
    out.update(images=images, steps=steps, eot=eot, evals=evals)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params/mnist.yaml")
    ap.add_argument("--steps", type=int, default=2, help="PGD steps timed per setting")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile of the UNet (compilation takes minutes)")
    ap.add_argument("--strength-images", type=int, default=64)
    ap.add_argument("--setting", action="append", default=[],
                    help="a name of SETTINGS to time (repeatable; default: all); the "
                         "reference is always timed")
    ap.add_argument("--no-strength", action="store_true", help="time only")
    ap.add_argument("--out", default="bench/results/speedups.json")
    args = ap.parse_args()

    p = params.load(args.params, device="cpu")
    chosen = args.setting
    unknown = [n for n in chosen if n not in SETTINGS]
    if unknown:
        ap.error(f"--setting: unknown {unknown}; choose from {list(SETTINGS)}")
    settings = {n: v for n, v in SETTINGS.items()
                if not chosen or n in chosen or n == "float32 (reference)"}
    if args.compile:
        settings["torch.compile"] = ({"compile": True}, 0)
    seconds = {}
    for name, (changes, threads) in settings.items():
        q = p.replace(**changes)
        seconds[name] = step_seconds(q, max(q.batch_size, p.batch_size), args.steps, threads)
        print(f"{name:<22} {1e3 * seconds[name]:8.2f} ms per image-step  "
              f"{seconds['float32 (reference)'] / seconds[name]:5.2f}x", flush=True)
    check, kept = None, None
    if not args.no_strength:
        check = strength(p, args.strength_images, steps=10, eot=5, evals=20)
        kept = check["difference_ci"][0] <= 0 <= check["difference_ci"][1]
        print(f"robust accuracy float32 {check['robust_float32']:.3f} "
              f"{check['robust_float32_ci']}, bf16 {check['robust_bf16']:.3f} "
              f"{check['robust_bf16_ci']}; bf16 - float32 {check['difference']:+.3f} "
              f"{check['difference_ci']}: bf16 {'keeps' if kept else 'changes'} the attack's "
              "strength")
    result = {"world": p.world, "threads": torch.get_num_threads(),
              "seconds_per_image_step": seconds,
              "speedup": {k: seconds["float32 (reference)"] / v for k, v in seconds.items()},
              "strength": check, "bf16_keeps_strength": kept}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
