"""What the expensive stages cost, before they run (sec. 4, Table S1; docs/cluster.md).

For the attack, evaluation and sec. 6 Jacobian stages of a params file: the diffusion-model
evaluations (one image through the model once) and FLOPs they take, the GPU
hours at a sustained throughput you name, and, for the full gradients, the
activation memory of one forward/backward with ``batch_size x eot_per_call`` rows
(``jacobian_chunk`` for the Jacobian's VJPs), so the ``eot_batch`` that fits a GPU
can be chosen before anything is downloaded. Everything is counted on PyTorch's meta
device with the world's real architectures (:func:`diffrob.worlds.architecture`):
FLOPs with the formulas of ``torch.utils.flop_counter`` (matrix products and
convolutions, the backward included; :class:`FlopCount`), memory as the bytes
autograd saves, in float32.

Costs per image and per gradient, with C diffusion-model calls per purification
(t* for ddpm, reverse and ddim, 1 for onestep) and frozen weights:

- purification: C forward calls, then the classifier;
- BPDA gradient: a purification without gradient, the classifier forward and backward;
- full gradient, checkpointed: C forward calls, then C recomputed forward calls
  with their backward, and the classifier forward and backward (without
  checkpointing the first C forward calls are the ones kept);
- attack: ``attack_steps`` gradients of ``eot`` samples (1 without EOT) per restart
  (``attack_restarts``), plus what :meth:`diffrob.attacks.Attack.work` adds for best
  iterates, restarts' scores, the checked attack's ``attack_checks`` evaluations of each
  iterate and APGD; the transfer attack differentiates the bare classifier only;
- evaluation: ``n_evals`` purifications of every clean or attacked image;
- sec. 6, per Jacobian image: the exact Jacobian is D vector-Jacobian products
  (VJPs: a full gradient of the purifier alone), one purification and one more for its
  clamped pixels, made only where D <= 3072 as in the book; its top singular values are
  ``(singular_top_k + singular_oversample) x (subspace_iterations + 1)`` VJPs and as
  many Jacobian-vector products (C forward calls with a forward-mode tangent).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor
from torch.autograd import forward_ad
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from . import attacks
from .autodiff import EXACT_JACOBIAN_MAX_DIM, forward_mode
from .params import Params
from .worlds import Architecture, architecture


@dataclass(frozen=True)
class UnitCosts:
    """FLOPs and saved activation bytes of one image through each model."""

    diffusion: int            # one forward call
    diffusion_backward: int   # one forward call and its backward to the input
    diffusion_jvp: int        # one forward call with a forward-mode tangent
    classifier: int
    classifier_backward: int
    diffusion_saved: int      # bytes autograd keeps for one call's backward
    classifier_saved: int
    image_bytes: int          # one image at the diffusion model's size (a stored step input)
    image_dim: int            # values of one image as the classifier sees it (D of sec. 6)
    weights: int              # bytes of both models' weights


def model_calls(p: Params) -> int:
    """Diffusion-model calls of one purification."""
    return 1 if p.purifier == "onestep" else p.t_star


class FlopCount(TorchDispatchMode):
    """``with FlopCount() as c: ...`` adds up in ``c.total`` the FLOPs of every operator that
    ``torch.utils.flop_counter`` has a formula for (matrix products, convolutions, attention),
    forward and backward alike. Unlike ``FlopCounterMode`` it tracks no modules, so it also
    counts inside ``torch.autograd.grad`` (which PGD calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def flops(fn: Callable[[Tensor], Tensor], x: Tensor, backward: bool = False) -> int:
    """FLOPs of ``fn(x)``, with its backward to ``x`` if ``backward``."""
    x = x.detach().requires_grad_(backward)
    with FlopCount() as counter:
        out = fn(x)
        if backward:
            torch.autograd.grad(out.float().sum(), x)
    return counter.total


def saved_bytes(fn: Callable[[Tensor], Tensor], x: Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward of ``fn(x)`` to ``x``."""
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x.detach().requires_grad_(True))
    return sum(seen.values())


def per_image(measure: Callable[[Tensor], int], shape: tuple[int, ...],
              device: torch.device | str) -> int:
    """``measure`` of a batch of 2 minus a batch of 1: what one more image adds. Weights (and
    views of them) and per-call work such as a shared timestep embedding cancel out."""
    one, two = (measure(torch.empty(n, *shape, device=device)) for n in (1, 2))
    return two - one


def unit_costs(arch: Architecture) -> UnitCosts:
    """:class:`UnitCosts` of one image, counted on ``arch``'s device (meta: nothing computed)."""
    diffusion = arch.diffusion.eval().requires_grad_(False)
    classifier = arch.classifier.eval().requires_grad_(False)
    device = next(diffusion.parameters()).device
    c, size = arch.image_shape[0], arch.model_size or arch.image_shape[1]
    model_shape, image_shape = (c, size, size), arch.image_shape

    def step(h: Tensor) -> Tensor:
        out = diffusion(h, torch.zeros(len(h), device=h.device))
        return getattr(out, "sample", out)

    def tangent_step(h: Tensor) -> Tensor:
        with forward_mode():
            return step(forward_ad.make_dual(h, torch.ones_like(h)))

    return UnitCosts(
        diffusion=per_image(lambda z: flops(step, z), model_shape, device),
        diffusion_backward=per_image(lambda z: flops(step, z, True), model_shape, device),
        diffusion_jvp=per_image(lambda z: flops(tangent_step, z), model_shape, device),
        classifier=per_image(lambda x: flops(classifier, x), image_shape, device),
        classifier_backward=per_image(lambda x: flops(classifier, x, True), image_shape, device),
        diffusion_saved=per_image(lambda z: saved_bytes(step, z), model_shape, device),
        classifier_saved=per_image(lambda x: saved_bytes(classifier, x), image_shape, device),
        image_bytes=4 * c * size * size,
        image_dim=math.prod(image_shape),
        weights=sum(4 * w.numel() for m in (diffusion, classifier) for w in m.parameters()))


def purification_flops(p: Params, u: UnitCosts) -> int:
    return model_calls(p) * u.diffusion + u.classifier


def purifier_vjp_flops(p: Params, u: UnitCosts) -> int:
    """One full gradient through the purifier alone (the first C calls are recomputed when
    checkpointing, kept otherwise)."""
    calls = model_calls(p)
    return (calls * u.diffusion if p.checkpointing else 0) + calls * u.diffusion_backward


def gradient_flops(p: Params, u: UnitCosts, full: bool) -> int:
    """One gradient of one image and one EOT sample (see the module docstring)."""
    if not full:
        return model_calls(p) * u.diffusion + u.classifier_backward
    return purifier_vjp_flops(p, u) + u.classifier_backward


def full_gradient_bytes(p: Params, u: UnitCosts) -> int:
    """Activation memory of one image in a full-gradient forward/backward."""
    if p.checkpointing:  # one step's graph at a time, plus every step's stored input
        return max(u.diffusion_saved, u.classifier_saved) + model_calls(p) * u.image_bytes
    return model_calls(p) * u.diffusion_saved + u.classifier_saved


def compression_rows(p: Params, u: UnitCosts, gpu_gb: float) -> dict[str, dict]:
    """Sec. 6's Jacobian stages (module docstring); a VJP batch holds ``jacobian_chunk`` rows."""
    calls, forwards = model_calls(p), 2 if p.checkpointing else 1
    images = p.jacobian_images
    gb = p.jacobian_chunk * full_gradient_bytes(p, u) / 1e9
    memory = {"rows per call": p.jacobian_chunk, "GB per call": gb,
              "fits": "yes" if gb + u.weights / 1e9 <= gpu_gb else "no"}
    rows = {}
    if u.image_dim <= EXACT_JACOBIAN_MAX_DIM:
        rows["compression/jacobian"] = {
            "images": images, "diffusion evaluations": images * calls * (u.image_dim * forwards + 2),
            "flops": images * (u.image_dim * purifier_vjp_flops(p, u) + 2 * calls * u.diffusion),
            **memory}
    products = min(p.singular_top_k + p.singular_oversample, u.image_dim) * (
        p.subspace_iterations + 1)
    images = min(p.singular_images, images)
    rows["compression/top_singular"] = {
        "images": images, "diffusion evaluations": images * products * calls * (1 + forwards),
        "flops": images * products * (calls * u.diffusion_jvp + purifier_vjp_flops(p, u)),
        **memory}
    return rows


def hours_column(tflops: float) -> str:
    return f"GPU hours at {tflops:g} TFLOP/s"


def table(p: Params, tflops: float = 100.0, gpu_gb: float = 80.0,
          units: UnitCosts | None = None) -> pd.DataFrame:
    """One row per stage of ``p`` (``attack/<name>``, ``evaluate/<source>`` and
    ``compression/<jacobian|top_singular>``): images, diffusion-model evaluations, PFLOP, GPU
    hours at ``tflops`` sustained TFLOP/s, and for full gradients (PGD attacks, Jacobian VJPs)
    the rows and activation GB of one forward/backward, and whether they fit ``gpu_gb``
    beside the weights."""
    u = units or unit_costs(architecture(p.world, p))
    n, calls, rows = p.n_images, model_calls(p), {}
    for name in p.attacks:
        attack = attacks.get(name)
        full, eot = attack.full_gradient, attack.eot_samples(p.eot)
        per_image_grads, per_image_purifications = attack.work_under(p)
        grads, purifications = n * per_image_grads, n * per_image_purifications
        forwards = 2 if full and p.checkpointing else 1  # checkpointing recomputes each step
        per_call = p.batch_size * (min(eot, p.eot_per_call) if attack.folded else 1)
        gb = per_call * full_gradient_bytes(p, u) / 1e9 if full else float("nan")
        fits = ("yes" if gb + u.weights / 1e9 <= gpu_gb else "no") if full else ""
        if attack.gradient == "classifier":  # the bare classifier only
            evals, spent = 0, grads * u.classifier_backward + purifications * u.classifier
        else:
            evals = (grads * forwards + purifications) * calls
            spent = grads * gradient_flops(p, u, full) + purifications * purification_flops(p, u)
        rows[f"attack/{name}"] = {
            "images": n, "diffusion evaluations": evals, "flops": spent,
            "rows per call": per_call, "GB per call": gb, "fits": fits}
    for source in ["clean", *p.attacks]:
        evals = n * p.n_evals
        rows[f"evaluate/{source}"] = {
            "images": n, "diffusion evaluations": evals * calls,
            "flops": evals * purification_flops(p, u),
            "rows per call": p.batch_size * p.eot_per_call, "GB per call": float("nan"),
            "fits": ""}
    rows.update(compression_rows(p, u, gpu_gb))
    out = pd.DataFrame(rows).T.astype({"images": int, "diffusion evaluations": int,
                                       "flops": float, "rows per call": int,
                                       "GB per call": float})
    out.insert(2, "PFLOP", out.pop("flops") / 1e15)
    out.insert(3, hours_column(tflops), out["PFLOP"] * 1e3 / tflops / 3600)
    return out
