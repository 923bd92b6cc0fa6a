"""Purifier benchmarks: throughput, and the cost of one full gradient with and without checkpointing.

1. Throughput of each method on the digits DDPM and on the CIFAR-10 DDPM architecture
   (random weights), as images/s and as a ratio to the bare model calls it needs
   (reference: t* UNet forwards of the same batch, timed in the same run; 1.0 = no overhead).
2. Peak memory and time of one full gradient through t* = 10, 50, 100 reverse+forward
   steps, with and without per-step activation checkpointing. Each configuration runs in
   a fresh process; memory is its peak RSS (model and runtime included, as DiffAttack's
   memory table (Kang et al. 2023) counts GPU memory) and the growth of that peak during the gradient
   (the activations kept). Target: checkpointed peak at 100 steps within 1.5x of 10 steps.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from diffrob.purifiers import METHODS, Purifier  # noqa: E402
from diffrob.worlds import digits  # noqa: E402

OUT = Path(__file__).parent / "results" / "purifiers.json"

# google/ddpm-cifar10-32's UNet (its config.json on the hub), with random weights.
CIFAR_UNET = dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                  block_out_channels=(128, 256, 256, 256),
                  down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                  downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6,
                  attention_head_dim=None)


def _time(fn, repeat: int = 5) -> float:
    """Best of ``repeat`` runs after a warm-up (the least disturbed by other load)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def throughput(name: str, model, scheduler, shape, batch: int, t_star: int) -> list[dict]:
    x = torch.rand(batch, *shape)
    k = torch.full((batch,), t_star - 1)
    with torch.no_grad():
        model_call = _time(lambda: model(2 * x - 1, k))
    rows = []
    for method in METHODS:
        f = Purifier(model, scheduler, method, t_star)
        seconds = _time(lambda: f(x, 0, 0))
        calls = 1 if method == "onestep" else t_star
        rows.append(dict(world=name, method=method, t_star=t_star, batch=batch,
                         images_per_s=round(batch / seconds, 1),
                         ratio_to_model_calls=round(seconds / (calls * model_call), 2)))
    return rows


def gradient_cost(t_star: int, checkpointing: bool, batch: int = 32) -> dict:
    """Run in a fresh process: time, peak RSS and its growth for one full gradient."""
    torch.manual_seed(0)
    model = digits.build_unet().eval().requires_grad_(False)
    f = Purifier(model, digits.build_scheduler(), "ddpm", t_star, checkpointing=checkpointing)
    x = torch.rand(batch, 1, 8, 8)
    f(x, 0, 0)  # warm-up: the same batch without a graph
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    z = x.clone().requires_grad_(True)
    f(z, 0, 0, grad=True).sum().backward()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(t_star=t_star, checkpointing=checkpointing, batch=batch,
                seconds=round(seconds, 2), peak_mb=round(peak / 1024, 1),
                growth_mb=round((peak - base) / 1024, 1))


def main() -> None:
    torch.set_num_threads(2)
    rows = throughput("digits", digits.build_unet().eval(), digits.build_scheduler(),
                      (1, 8, 8), 64, 10)
    cifar = UNet2DModel(**CIFAR_UNET).eval()
    rows += throughput("cifar10 (random weights)", cifar,
                       DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear"),
                       (3, 32, 32), 4, 2)
    print(f"{'world':<26}{'method':<9}{'t*':>4}{'batch':>6}{'images/s':>10}{'x model calls':>15}")
    for r in rows:
        print(f"{r['world']:<26}{r['method']:<9}{r['t_star']:>4}{r['batch']:>6}"
              f"{r['images_per_s']:>10}{r['ratio_to_model_calls']:>15}")

    grads = []
    for t_star in (10, 50, 100):
        for ckpt in (True, False):
            out = subprocess.run([sys.executable, __file__, "--gradient", str(t_star), str(ckpt)],
                                 capture_output=True, text=True, check=True)
            grads.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\n{'t*':>4}{'checkpointing':>15}{'seconds':>10}{'peak MB':>10}{'growth MB':>11}")
    for g in grads:
        print(f"{g['t_star']:>4}{str(g['checkpointing']):>15}{g['seconds']:>10}{g['peak_mb']:>10}"
              f"{g['growth_mb']:>11}")
    mem = {(g["t_star"], g["checkpointing"]): g["peak_mb"] for g in grads}
    ratio = mem[(100, True)] / max(mem[(10, True)], 1e-9)
    print(f"\ncheckpointed memory, 100 vs 10 steps: {ratio:.2f}x (target <= 1.5x); "
          f"plain autograd: {mem[(100, False)] / max(mem[(10, False)], 1e-9):.2f}x")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(dict(throughput=rows, gradient=grads,
                                   checkpointed_memory_ratio_100_vs_10=round(ratio, 2)), indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--gradient":
        torch.set_num_threads(2)
        print(json.dumps(gradient_cost(int(sys.argv[2]), sys.argv[3] == "True")))
    else:
        main()
