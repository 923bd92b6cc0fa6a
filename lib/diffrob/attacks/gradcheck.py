"""Are the attack's gradients right and unmasked? (Carlini et al. 2019, sec. 5; DiffBreak)

The full gradient of sec. 4.2's PGD (through every diffusion step, eq. 1-2) is checked
as code, on the world's own models cast to float64:

- against central finite differences along random unit directions d, with the
  purifier's noise fixed (the same eq. 9 seeds on both sides): relative error
  ``|g.d - (L(x + h d) - L(x - h d)) / 2h| / max(|g.d|, |fd|)``;
- checkpointed (per diffusion step) against plain autograd: the same numbers (so the
  finite differences check the plain gradient too);
- EOT samples in one call against one call per sample (``eot_batch``): the same sum;
- no image with an all-zero gradient and no non-finite entry (masked or broken gradients);
- the gradient of the path that runs (the world's own float32 models, with the params'
  ``autocast`` of the diffusion model) against the float64 one at the same point and noise:
  per image, the cosine and the relative error ``|g_run - g_64| / |g_64|``, with tolerances
  from the run's precision (below), and the fraction of entries of the same sign
  (:func:`run_path`). The clamps and ReLUs make the map piecewise smooth: where rounding moves
  a value across a kink, one entry of the gradient jumps, so the error gathers in few pixels.
  And an image classified with a cross-entropy below the precision's resolution (1 - p_y
  under u) has a gradient of rounding noise in that precision: the check fails it, as an
  attack's first steps there follow noise;
- the cosine between the full and the BPDA (straight-through) gradient, per image:
  how far the approximation the paper's BPDA rows rely on is from the true gradient.

The loss is the summed cross-entropy of ``classifier(purifier(x))``; the check point
is the clean image clipped to [h, 1 - h], so that every difference stays in [0,1].
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from .system import straight_through

# Fixed before any result was seen: float64 central differences are exact to ~h^2 on a
# smooth map; larger errors mean a wrong gradient (or a kink of a ReLU / clip hit by +-h).
FD_TOLERANCE = 1e-4
SAME_TOLERANCE = 1e-9  # float64, the same operations in another order
# The path that runs, fixed from its precision before any result was seen: with p significant
# bits (unit roundoff u = 2^-p) at least half of them right, relative error <= sqrt(u) = 2^(-p/2):
# bf16 (p = 8: u = 3.9e-3) 0.0625, fp16 and TF32 (p = 11) 0.022, float32 (p = 24) 2.4e-4. And in
# every precision a cosine >= 0.99 (an angle under 8 degrees: sign-PGD's step keeps its direction).
SIGNIFICANT_BITS = {"bf16": 8, "fp16": 11, "tf32": 11, "float32": 24}
RUN_COSINE = 0.99


def double_world(world):
    """A copy of ``world`` with float64 images and models and no autocast (the check's
    precision)."""
    return dataclasses.replace(world, images=world.images.double(),
                               classifier=copy.deepcopy(world.classifier).double(),
                               diffusion=copy.deepcopy(world.diffusion).double(),
                               params=world.params.replace(autocast="none"))


def run_precision(world) -> str:
    """The lowest precision on the path that runs (a key of :data:`SIGNIFICANT_BITS`): the
    params' ``autocast`` of the diffusion model; else TF32 on CUDA where torch lets cuDNN
    convolutions or matmuls use it (cuDNN's default); else float32."""
    if world.params.autocast != "none":
        return world.params.autocast
    tf32 = torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
    return "tf32" if world.device.type == "cuda" and tf32 else "float32"


def run_tolerance(precision: str) -> float:
    """Largest relative error of the path that runs: sqrt(u) = 2^(-p/2) (comment above)."""
    return 2.0 ** (-SIGNIFICANT_BITS[precision] / 2)


def loss_fn(world, y: Tensor, seeds: list[int], batch_index: int = 0, straight: bool = False,
            checkpointing: bool | None = None):
    """x -> summed cross-entropy of the purified classifier over the EOT copies ``seeds``
    (noise fixed by eq. 9), one call with all copies folded into the batch."""
    purifier = world.purifier()
    if checkpointing is not None:
        purifier.checkpointing = checkpointing

    def f(x: Tensor) -> Tensor:
        rows = x.repeat(len(seeds), 1, 1, 1)
        purified = (straight_through(purifier, rows, seeds, batch_index) if straight
                    else purifier(rows, seeds, batch_index, grad=True))
        return F.cross_entropy(world.classifier(purified), y.repeat(len(seeds)), reduction="sum")

    return f


def gradient(f, x: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(f(x), x)[0]


def finite_difference_errors(f, x: Tensor, directions: int, h: float,
                             generator: torch.Generator, g: Tensor | None = None) -> np.ndarray:
    """Relative error of the autograd directional derivative (of ``g``, f's gradient at ``x``,
    computed here unless given) against central differences, one per random unit (l2)
    direction over the whole batch."""
    g = gradient(f, x) if g is None else g
    errors = []
    with torch.no_grad():
        for _ in range(directions):
            d = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            d /= d.norm()
            fd = ((f(x + h * d) - f(x - h * d)) / (2 * h)).item()
            exact = (g * d).sum().item()
            errors.append(abs(exact - fd) / max(abs(exact), abs(fd), 1e-300))
    return np.array(errors)


def per_image_cosine(a: Tensor, b: Tensor) -> np.ndarray:
    return F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).cpu().numpy()


def relative_difference(a: Tensor, b: Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def per_image_relative_error(a: Tensor, b: Tensor) -> np.ndarray:
    """``|a - b| / |b|`` per image (l2 over each image's entries)."""
    error = (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-300)
    return error.cpu().numpy()


def run_path(world, x: Tensor, y: Tensor, seeds: list[int], reference=None,
             g_64: Tensor | None = None) -> dict[str, np.ndarray]:
    """Per image, the gradient of the path that runs (``world`` as it is: its dtype, device,
    ``autocast`` and ``checkpointing``) against the float64 one (``reference``, default
    :func:`double_world`; or its gradient ``g_64`` at ``x``, already computed) at the same
    point ``x`` (a float32 value) and the same noise: its ``cosine``, its
    ``relative error`` and the fraction of entries whose ``sign`` agrees (the sign is what
    sec. 4.2's Linf PGD steps along)."""
    x_run = x.to(world.images.dtype)
    g_run = gradient(loss_fn(world, y, seeds), x_run).double()
    if g_64 is None:
        g_64 = gradient(loss_fn(reference or double_world(world), y, seeds), x_run.double())
    signs = (torch.sign(g_run) == torch.sign(g_64)).flatten(1).double().mean(1)
    return {"cosine": per_image_cosine(g_run, g_64),
            "relative error": per_image_relative_error(g_run, g_64), "sign": signs.cpu().numpy()}


def checks(world, n_images: int = 4, eot: int = 4, directions: int = 8, h: float = 1e-5,
           seed: int = 0) -> pd.DataFrame:
    """The table of checks on the first ``n_images`` test images (module docstring): one row
    per check with its value, what passes (fixed tolerances above) and whether it does."""
    if n_images < 1 or eot < 1 or directions < 1 or not 0 < h < 0.5:
        raise ValueError(f"gradient checks: expected n_images, eot, directions >= 1 and "
                         f"0 < h < 0.5, got {n_images}, {eot}, {directions}, {h}")
    w = double_world(world)
    x = w.images[:n_images].clamp(h, 1 - h).float().double()  # a float32 point: the run's too
    y = w.labels[:n_images]
    seeds = [world.params.attack_seed + j for j in range(eot)]
    gen = torch.Generator().manual_seed(seed)
    full, plain = loss_fn(w, y, seeds, checkpointing=True), loss_fn(w, y, seeds, checkpointing=False)
    g_full, g_plain = gradient(full, x), gradient(plain, x)
    g_split = sum(gradient(loss_fn(w, y, [s]), x) for s in seeds)
    g_bpda = gradient(loss_fn(w, y, seeds, straight=True), x)
    fd_check = finite_difference_errors(full, x, directions, h, gen, g=g_full)
    zero = (g_full.flatten(1).abs().amax(1) == 0).float().mean().item()
    precision = run_precision(world)
    run = run_path(world, x, y, seeds, g_64=g_full)  # g_full: the float64 gradient at x
    cosine, rel = run["cosine"].min(), run["relative error"].max()
    name = f"the run's gradient ({precision}) vs float64"
    # The same in float32 without autocast: whether a failure above is the run's precision or
    # the check point's (a kink crossed, or a loss below float32's resolution: module docstring)
    float32 = [] if precision == "float32" else [
        ("float32, no autocast, vs float64 (cosine, min over images)", run_path(
            dataclasses.replace(world, params=world.params.replace(autocast="none")), x, y,
            seeds, g_64=g_full)["cosine"].min(), "(reported)", None)]
    rows = [
        ("full gradient vs central differences (max rel. error)",
         fd_check.max(), f"<= {FD_TOLERANCE:g}", fd_check.max() <= FD_TOLERANCE),
        ("checkpointed vs plain autograd (rel. difference)", relative_difference(g_full, g_plain),
         f"<= {SAME_TOLERANCE:g}", relative_difference(g_full, g_plain) <= SAME_TOLERANCE),
        ("EOT in one call vs one call per sample (rel. difference)",
         relative_difference(g_full, g_split), f"<= {SAME_TOLERANCE:g}",
         relative_difference(g_full, g_split) <= SAME_TOLERANCE),
        ("images with an all-zero gradient (fraction)", zero, "0", zero == 0),
        ("non-finite gradient entries", float((~torch.isfinite(g_full)).sum()), "0",
         bool(torch.isfinite(g_full).all())),
        (f"{name} (cosine, min over images)", cosine, f">= {RUN_COSINE:g}",
         cosine >= RUN_COSINE),
        (f"{name} (rel. error, max over images)", rel, f"<= {run_tolerance(precision):.2g}",
         rel <= run_tolerance(precision)),
        (f"{name} (entries of the same sign, min over images)", run["sign"].min(),
         "(reported)", None),
        *float32,
        ("cosine(full, BPDA gradient), mean over images", per_image_cosine(g_full, g_bpda).mean(),
         "(reported)", None),
    ]
    return pd.DataFrame(rows, columns=["check", "value", "passes if", "passes"]).set_index("check")
