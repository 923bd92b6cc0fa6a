"""A world's card before any expensive run (``diffrob check``; docs/custom.md): the data, the
two models' outputs on the first images, clean and purified accuracy there, and the noise
level alpha_bar at t* (the paper's t* = 0.1 is alpha_bar = 0.897 on CIFAR-10, sec. 2).

Made for the custom world, it reads any :class:`~diffrob.worlds.World`. Outputs that do not
fit (wrong shape, non-finite, probabilities instead of logits) raise
:class:`~.custom.MismatchError` naming the model's parameter.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .custom import MismatchError, check_logits

FIRST = 8  # the images the card runs the models on


def _range(t: Tensor) -> str:
    return f"[{t.min().item():.4g}, {t.max().item():.4g}]"


@torch.no_grad()
def card(world) -> list[str]:
    """The card's lines; the models run on the first :data:`FIRST` test images only."""
    p = world.params
    x, y = world.images[:FIRST], world.labels[:FIRST]
    n = len(x)
    logits = world.classifier(x)
    check_logits(logits, n, 0, f"parameter 'classifier' ({p.classifier or world.name})")
    purifier = world.purifier()
    purified = purifier(x, base_seeds=p.base_seed, batch_index=0)
    logits_purified = world.classifier(purified)
    check_logits(logits_purified, n, logits.shape[1],
                 f"parameter 'classifier' ({p.classifier or world.name}) on purified images")
    size = world.model_size or world.image_shape[-1]
    z = torch.randn((n, world.image_shape[0], size, size), device=world.device,
                    generator=torch.Generator(world.device).manual_seed(0))
    k = torch.full((n,), purifier.t_star - 1, device=world.device)
    eps = world.diffusion(z, k)
    eps = getattr(eps, "sample", eps)
    if not bool(torch.isfinite(eps).all()):
        raise MismatchError(f"parameter 'diffusion_model' ({p.diffusion_model or world.name}): "
                            f"non-finite outputs (NaN or infinite) at t* = {purifier.t_star}")
    steps = len(world.scheduler.alphas_cumprod)
    alpha_bar = world.scheduler.alphas_cumprod[purifier.t_star - 1].item()
    labels = world.labels
    return [
        f"world {world.name}: {len(world.images)} test images "
        f"{'x'.join(map(str, world.image_shape))} {str(world.images.dtype).removeprefix('torch.')}"
        f", values in {_range(world.images)}, labels in {_range(labels)} "
        f"({len(labels.unique())} classes present of {logits.shape[1]})",
        f"classifier: outputs {tuple(logits.shape)} on the first {n}, logits in {_range(logits)};"
        f" clean accuracy {int((logits.argmax(1) == y).sum())}/{n}",
        f"diffusion model: {type(world.diffusion).__name__}, eps {tuple(eps.shape)} in "
        f"{_range(eps)}; {steps} training steps, alpha_bar at t* = {purifier.t_star}: "
        f"{alpha_bar:.4f}" + (f"; images resized to {size} for it" if world.model_size else ""),
        f"purified ({purifier.method}, t* = {purifier.t_star}, seed {p.base_seed}): values in "
        f"{_range(purified)}; accuracy {int((logits_purified.argmax(1) == y).sum())}/{n}",
    ]
