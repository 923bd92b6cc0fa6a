"""Benchmark: activation memory of one full-gradient step, per image, for every world.

A checkpointed full gradient (``checkpointing: true``) holds, besides the weights
and the input of every reverse step, the autograd graph of one diffusion step at
a time (or of the classifier, whose backward runs first). This counts the bytes that graph saves for one image of each
world's real architectures, built on PyTorch's meta device (no weights, no
compute, no download), and turns them into the largest ``eot_batch`` that fits a
GPU: ``batch_size x eot_batch`` rows per forward/backward (params/*.yaml).

Prints a table and writes ``bench/results/memory.json``.

    .venv/bin/python bench/bench_memory.py [--gpu-gb 80] [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from diffrob import params
from diffrob.worlds import adm, cifar10, digits, imagenet


def architectures() -> dict[str, tuple[nn.Module, nn.Module, int, int]]:
    """world -> (diffusion model, classifier, image size, diffusion model size), uninitialised
    (call it under ``torch.device("meta")``)."""
    from diffusers import UNet2DModel
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    return {
        "digits": (digits.build_unet(), digits.DigitsCNN(), 8, 8),
        "cifar10": (UNet2DModel(**cifar10.UNET_CONFIG), WideResNet(depth=28, widen_factor=10),
                    32, 32),
        "imagenet": (adm.ADMUNet(adm.UNCOND_256), imagenet.build_classifier(),
                     imagenet.IMAGE_SIZE, imagenet.MODEL_SIZE),
    }


def saved_bytes(fn, module: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the activations autograd saves for the backward of ``fn(x)``, weights excluded."""
    weights = {id(p) for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in weights:
            seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x.requires_grad_(True))
    return sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-gb", type=float, default=80.0, help="GPU memory to plan for")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    import_robustbench()
    dtype = getattr(torch, args.dtype)
    rows = []
    with torch.device("meta"):
        worlds = architectures()
    for world, (unet, classifier, size, model_size) in worlds.items():
        p = params.load(f"params/{world}.yaml")
        with torch.device("meta"):
            if dtype != torch.float32:
                unet, classifier = unet.to(dtype), classifier.to(dtype)
            channels = 1 if world == "digits" else 3
            z = torch.empty(1, channels, model_size, model_size, dtype=dtype)
            step = saved_bytes(lambda v: unet(v, torch.zeros(1)), unet, z)
            cls = saved_bytes(classifier, classifier,
                              torch.empty(1, channels, size, size, dtype=dtype))
        weights = sum(q.numel() * q.element_size() for q in [*unet.parameters(),
                                                              *classifier.parameters()])
        inputs = p.t_star * z.numel() * z.element_size()  # each reverse step's stored input
        per_image = max(step, cls) + inputs
        fit = int((args.gpu_gb * 1e9 - weights) // per_image)
        rows.append({"world": world, "dtype": args.dtype, "step GB/image": step / 1e9,
                     "classifier GB/image": cls / 1e9, "weights GB": weights / 1e9,
                     "rows that fit": fit, "batch_size": p.batch_size, "eot": p.eot,
                     "eot_batch that fits": min(p.eot, fit // p.batch_size),
                     "eot_batch in params": p.eot_per_call})
    width = max(len(k) for k in rows[0])
    print(f"one full-gradient step, {args.dtype}, planning for {args.gpu_gb:g} GB:")
    for key in rows[0]:
        cells = [f"{r[key]:.3f}" if isinstance(r[key], float) else str(r[key]) for r in rows]
        print(f"{key:>{width}}  " + "  ".join(f"{c:>12}" for c in cells))
    out = Path("bench/results/memory.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


def import_robustbench() -> None:
    from diffrob.worlds.checkpoints import import_robustbench as load

    load()


if __name__ == "__main__":
    main()
