"""Diffusion purifiers: DiffPure DDPM, reverse-only, DDIM and one-step denoising.

All purifiers map images in [0,1] to images in [0,1]; inside, the diffusion
model works on [-1,1] (Appendix B). With ``T`` the number of training steps,
``betas[k]`` is beta_{k+1} of the DDPM paper and the model is called with the
timestep index ``k = t - 1`` for the state x_t.

- ``ddpm`` (DiffPure, Nie et al. 2022): t* forward steps of eq. 1, then t*
  reverse steps of eq. 2.
- ``reverse`` (RevPure, appendix C.2): the input is taken as x_{t*} and only
  the reverse process of eq. 2 runs.
- ``ddim``: t* forward steps of eq. 1, then the deterministic reverse of eq. 10, as
  printed: x_{t-1} = sqrt(alpha_bar_{t-1}) x0_hat + sqrt(1 - alpha_bar_{t-1}) eps_theta with
  the model's eps (``ddim_eps="model"``, the default); ``ddim_eps="rederived"`` instead
  re-derives eps from the clipped x0_hat, as diffusers' ``DDIMScheduler`` does (the two
  agree exactly where x0_hat is not clipped).
- ``onestep`` (Carlini et al. 2022): jump to x_{t*} in one draw and predict x_0 once.

Randomness follows eq. 9: every Gaussian draw of step t for batch i under base
seed s comes from its own ``torch.Generator`` seeded with :func:`seed_for`, on
the CPU, and is then moved to the model's device: CPU and CUDA generators give
different streams, and a result must not depend on where it was computed (the
store's key leaves the device out). A batch may carry several base seeds (EOT samples and
re-evaluations folded into the batch dimension): the rows are split into
``len(base_seeds)`` equal chunks and chunk j draws with base seed ``base_seeds[j]``,
so each chunk gets exactly the noise it would get alone.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

METHODS = ("ddpm", "reverse", "ddim", "onestep")
DDIM_EPS = ("model", "rederived")
VARIANCES = ("fixed_large", "fixed_small", "learned_range")
# The attention kernel of the diffusion model on a CPU (None: PyTorch's choice, its flash
# kernel). The plain ("math") kernel's backward is the faster one at the 49 tokens of the
# mnist UNet's middle block (docs/benchmarks.md, "Speed-ups of the attack stage"); the
# outputs agree up to float rounding (tests/test_purifiers.py).
CPU_ATTENTION: SDPBackend | None = SDPBackend.MATH


def seed_for(base_seed: int, batch_index: int, step: int, forward: bool) -> int:
    """Eq. 9: 10^4 s + 2 (10^3 i + t) + 1 in the forward process, without the +1 in reverse.

    Kept exactly as the paper writes it, collisions included (for example
    (s, i) = (0, 5) and (1, 0) share seeds): reproducing the paper comes first.
    """
    return 10**4 * base_seed + 2 * (10**3 * batch_index + step) + int(forward)


def check_images(x: Tensor, shape: tuple[int, int, int] | None = None,
                 device: torch.device | None = None, name: str = "images",
                 in_range: bool = True) -> None:
    """Raise ``ValueError`` unless ``x`` is a floating NCHW batch in [0,1] (on ``device``);
    ``in_range=False`` accepts any finite values (unclipped noise, Tables S2-S4)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor in [0,1], got {x.dtype}")
    if x.ndim != 4 or (shape is not None and tuple(x.shape[1:]) != tuple(shape)):
        want = f"(N, {', '.join(map(str, shape))})" if shape else "(N, C, H, W)"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")
    if not len(x):
        raise ValueError(f"{name}: expected at least one image, got an empty batch")
    if device is not None and x.device != device:
        raise ValueError(f"{name}: expected a tensor on {device}, got one on {x.device}")
    if not in_range:
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
    elif x.numel() and not (x.min() >= 0 and x.max() <= 1):  # also catches NaN
        raise ValueError(f"{name}: expected values in [0,1], got range "
                         f"[{x.min().item():.4g}, {x.max().item():.4g}]")


@dataclass(frozen=True)
class Schedule:
    """The DDPM quantities of a scheduler, in float64 (cast on use).

    alpha_bar_t = prod_{s <= t} (1 - beta_s) (eq. 1's closed form) is accumulated in
    float64, as the official DDPM and guided-diffusion code do: diffusers' float32
    product is off by ~1e-7, which 1 / (1 - alpha_bar_t) amplifies near t = 1.
    """

    betas: Tensor
    alphas_cumprod: Tensor
    clip_sample: bool
    variance_type: str

    @classmethod
    def from_scheduler(cls, scheduler) -> "Schedule":
        cfg = scheduler.config
        betas = scheduler.betas.double()
        return cls(betas, torch.cumprod(1 - betas, 0), bool(cfg.get("clip_sample", True)),
                   cfg.get("variance_type", "fixed_large"))

    def at(self, k: int) -> tuple[float, float, float]:
        """(beta_{k+1}, alpha_bar_{k+1}, alpha_bar_k) for timestep index k (alpha_bar_0 = 1)."""
        prev = self.alphas_cumprod[k - 1].item() if k > 0 else 1.0
        return self.betas[k].item(), self.alphas_cumprod[k].item(), prev


class Purifier:
    """A diffusion purifier f(x) of one method and t*, differentiable on request: t* forward
    steps of eq. 1, then t* reverse steps of eq. 2 (DDPM) or eq. 10 (DDIM), or the reverse
    process alone, or one-step denoising (module docstring); noise seeded by eq. 9.

    ``model(x_t, k)`` returns eps (C channels) or eps and the learned-variance
    interpolation v (2C channels, guided diffusion's learned range); objects
    with a ``.sample`` field (diffusers ``UNet2DModel``) are unwrapped.
    ``model_size`` resizes the input for the model and back (ImageNet's 224 <-> 256).
    ``ddim_eps`` picks the eps of the DDIM step (module docstring): eq. 10's model eps
    (``"model"``) or the one re-derived from the clipped x0_hat (``"rederived"``).
    """

    def __init__(self, model: nn.Module, scheduler, method: str = "ddpm", t_star: int = 100,
                 image_shape: tuple[int, int, int] | None = None, model_size: int | None = None,
                 checkpointing: bool = True, autocast: str = "none", ddim_eps: str = "model"):
        if method not in METHODS:
            raise ValueError(f"purifier method: expected one of {list(METHODS)}, got {method!r}")
        if ddim_eps not in DDIM_EPS:
            raise ValueError(f"ddim_eps: expected one of {list(DDIM_EPS)}, got {ddim_eps!r}")
        self.schedule = Schedule.from_scheduler(scheduler)
        n_train = len(self.schedule.betas)
        if not 1 <= t_star <= n_train:
            raise ValueError(f"t_star: expected 1..{n_train} (the model's training steps), "
                             f"got {t_star}")
        if self.schedule.variance_type not in VARIANCES:
            raise ValueError(f"scheduler variance_type: expected one of {list(VARIANCES)}, "
                             f"got {self.schedule.variance_type!r}")
        if autocast not in ("none", "bf16", "fp16"):
            raise ValueError(f"autocast: expected 'none', 'bf16' or 'fp16', got {autocast!r}")
        self.model, self.method, self.t_star = model, method, t_star
        self.image_shape, self.model_size = image_shape, model_size
        self.checkpointing, self.autocast, self.ddim_eps = checkpointing, autocast, ddim_eps

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        return f"Purifier({self.method}, t*={self.t_star})"

    # -- public API -----------------------------------------------------------------
    def __call__(self, x: Tensor, base_seeds: int | Sequence[int] = 0, batch_index: int = 0,
                 grad: bool = False, shared_noise: bool = False) -> Tensor:
        """Purify ``x`` (N, C, H, W) in [0,1]; ``grad=True`` keeps the full autograd graph.

        ``shared_noise=True`` gives every row of a seed's chunk the noise of a one-image
        batch, so f is the same deterministic map for every row: many points of one
        image's neighbourhood (sec. 6: PCA, Jacobian) then go through one batch.
        """
        return self._run(x, base_seeds, batch_index, grad, False, shared_noise)[-1]

    def trajectory(self, x: Tensor, base_seeds: int | Sequence[int] = 0,
                   batch_index: int = 0, unclipped: bool = False) -> Tensor:
        """Every state from the input to the output, mapped to [0,1] units (not clipped).

        Shape (S, N, C, H, W): S = 2 t* + 1 for ``ddpm`` and ``ddim``, t* + 1 for
        ``reverse``, 3 for ``onestep``. State 0 is the input ``x`` itself (not its round
        trip through ``model_size``, which alone shrinks a perturbation), the last state
        the purified image. ``unclipped=True`` accepts inputs outside [0,1] (the paper's
        unclipped uniform noise, Tables S2-S4), mapped by the same 2x - 1.
        """
        states = self._run(x, base_seeds, batch_index, False, True, False, unclipped)
        states[0] = x
        return torch.stack(states)

    @torch.no_grad()
    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """Generate from pure noise x_{t*} ~ N(0, I) through the reverse steps (checks a model)."""
        h = torch.randn(shape, generator=generator).to(self.device)
        for t in range(self.t_star, 0, -1):
            z = torch.randn(shape, generator=generator).to(self.device) if t > 1 else None
            h = self._reverse_step(h, t, z)
        return ((h + 1) / 2).clamp(0, 1)

    # -- the processes --------------------------------------------------------------
    def _run(self, x: Tensor, base_seeds, batch_index: int, grad: bool, keep_states: bool,
             shared_noise: bool, unclipped: bool = False) -> list[Tensor]:
        check_images(x, self.image_shape, self.device, in_range=not unclipped)
        dtype = next(self.model.parameters()).dtype
        if x.dtype != dtype:
            raise ValueError(f"images: expected {dtype} like the diffusion model's weights "
                             f"(autocast is a parameter), got {x.dtype}")
        seeds = list(base_seeds) if isinstance(base_seeds, Sequence) else [base_seeds]
        if not all(_is_int(s) and s >= 0 for s in seeds):
            raise ValueError(f"base_seeds: expected ints >= 0 (eq. 9), got {base_seeds!r}")
        if not (_is_int(batch_index) and batch_index >= 0):
            raise ValueError(f"batch_index: expected an int >= 0 (eq. 9), got {batch_index!r}")
        if not seeds or x.shape[0] % len(seeds):
            raise ValueError(f"batch of {x.shape[0]} images cannot be split into "
                             f"{len(seeds)} equal chunks, one per base seed")
        size = x.shape[-1]
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            h = x if self.model_size in (None, size) else _resize(x, self.model_size)
            h = 2 * h - 1
            states = [h] if keep_states else []
            noise = _NoisePlan(seeds, batch_index, h, shared_noise)
            if self.method in ("ddpm", "ddim", "onestep"):
                h = self._forward(h, noise, states, keep_states)
            if self.method in ("ddpm", "reverse", "ddim"):
                for t in range(self.t_star, 0, -1):
                    z = noise(t, forward=False) if self.method != "ddim" and t > 1 else None
                    h = self._step(self._reverse_step, h, t, z, grad)
                    if keep_states:
                        states.append(h)
            else:
                h = self._step(self._onestep_x0, h, self.t_star, None, grad)
                if keep_states:
                    states.append(h)
            out = [(s + 1) / 2 for s in (states or [h])]
            out[-1] = out[-1].clamp(0, 1)
            if self.model_size not in (None, size):
                out = [_resize(s, size) for s in out[:-1]] + [_resize(out[-1], size).clamp(0, 1)]
        return out

    def _forward(self, h: Tensor, noise: "_NoisePlan", states: list, keep: bool) -> Tensor:
        """Eq. 1 step by step (or, for one-step denoising, its closed form at t*)."""
        if self.method == "onestep":
            _, ab, _ = self.schedule.at(self.t_star - 1)
            h = ab**0.5 * h + (1 - ab) ** 0.5 * noise(self.t_star, forward=True)
            if keep:
                states.append(h)
            return h
        for t in range(1, self.t_star + 1):
            beta, _, _ = self.schedule.at(t - 1)
            h = (1 - beta) ** 0.5 * h + beta**0.5 * noise(t, forward=True)
            if keep:
                states.append(h)
        return h

    def _step(self, fn, h: Tensor, t: int, z: Tensor | None, grad: bool) -> Tensor:
        if grad and self.checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, h, t, z, use_reentrant=False)
        return fn(h, t, z)

    def _model(self, h: Tensor, k: int) -> tuple[Tensor, Tensor | None]:
        steps = torch.full((h.shape[0],), k, device=h.device, dtype=torch.long)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.autocast)
        ctx = (torch.autocast(h.device.type, dtype=dtype) if dtype is not None
               else contextlib.nullcontext())
        kernel = (sdpa_kernel(CPU_ATTENTION) if h.device.type == "cpu" and CPU_ATTENTION is not None
                  else contextlib.nullcontext())
        with ctx, kernel:
            out = self.model(h, steps)
        out = getattr(out, "sample", out).to(h.dtype)
        c = h.shape[1]
        return (out, None) if out.shape[1] == c else (out[:, :c], out[:, c:])

    def _x0(self, h: Tensor, eps: Tensor, ab: float) -> Tensor:
        x0 = (h - (1 - ab) ** 0.5 * eps) / ab**0.5
        return x0.clamp(-1, 1) if self.schedule.clip_sample else x0

    def _reverse_step(self, h: Tensor, t: int, z: Tensor | None) -> Tensor:
        """x_t -> x_{t-1}: eq. 2 (``ddpm``/``reverse``) or eq. 10 (``ddim``).

        Eq. 2 is computed in its posterior-mean form (DDPM eq. 7) through the
        predicted x_0, as the official checkpoints do. Without x_0 clipping
        (``clip_sample`` false) the two forms are algebraically equal; with it (the
        schedulers of all three worlds), the step differs from eq. 2 as printed
        wherever the predicted x_0 leaves [-1, 1]. DDIM: see ``ddim_eps``.
        """
        beta, ab, ab_prev = self.schedule.at(t - 1)
        eps, v = self._model(h, t - 1)
        x0 = self._x0(h, eps, ab)
        if self.method == "ddim":
            if self.ddim_eps == "rederived":
                eps = (h - ab**0.5 * x0) / (1 - ab) ** 0.5
            return ab_prev**0.5 * x0 + (1 - ab_prev) ** 0.5 * eps
        mean = (ab_prev**0.5 * beta / (1 - ab)) * x0 + ((1 - beta) ** 0.5 * (1 - ab_prev) / (1 - ab)) * h
        if z is None:
            return mean
        return mean + self._sigma(t, v) * z

    def _sigma(self, t: int, v: Tensor | None) -> Tensor | float:
        """sigma_t of eq. 2: fixed (beta_t or the posterior variance) or learned.

        Learned range (guided diffusion, Nichol & Dhariwal 2021): the model's v in
        [-1, 1] interpolates log sigma^2 between log beta_t and the log posterior
        variance (whose first entry is replaced by the second, as in their code).
        """
        beta, ab, ab_prev = self.schedule.at(t - 1)
        if self.schedule.variance_type == "fixed_large":
            return beta**0.5
        if self.schedule.variance_type == "fixed_small":
            return (beta * (1 - ab_prev) / (1 - ab)) ** 0.5
        b1, ab1, ab1_prev = self.schedule.at(max(t - 1, 1))
        min_log = math.log(b1 * (1 - ab1_prev) / (1 - ab1))
        frac = (v + 1) / 2
        return torch.exp(0.5 * (frac * math.log(beta) + (1 - frac) * min_log))

    def _onestep_x0(self, h: Tensor, t: int, z: Tensor | None) -> Tensor:
        _, ab, _ = self.schedule.at(t - 1)
        eps, _ = self._model(h, t - 1)
        return self._x0(h, eps, ab)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _NoisePlan:
    """Gaussian draws of eq. 9, one generator per (base seed, batch, step, direction).

    Drawn on the CPU in float32 and moved to ``like``'s device and dtype, so the noise is
    the same on every device and in every precision (torch's CPU ``randn`` draws other
    numbers in float64: the float64 gradient check of sec. 4.2's attacks must see the
    noise of the float32 run)."""

    def __init__(self, seeds: list[int], batch_index: int, like: Tensor, shared: bool = False):
        self.seeds, self.batch_index = seeds, batch_index
        self.chunk = (like.shape[0] // len(seeds), *like.shape[1:])
        self.draw = (1, *like.shape[1:]) if shared else self.chunk
        self.device, self.dtype = like.device, like.dtype

    def __call__(self, t: int, forward: bool) -> Tensor:
        draws = []
        for s in self.seeds:
            g = torch.Generator().manual_seed(seed_for(s, self.batch_index, t, forward))
            z = torch.randn(self.draw, generator=g, dtype=torch.float32).to(self.dtype)
            draws.append(z.expand(self.chunk))
        return torch.cat(draws).to(self.device)


def _resize(x: Tensor, size: int) -> Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


# --- a world's test images through a purifier, batch by batch (sec. 2, sec. 3.1) ----------

def check_inputs(world, x: Tensor, unclipped: bool = False) -> None:
    """Raise ``ValueError`` unless ``x`` holds one input per test image of ``world``, in [0,1]
    (any finite values with ``unclipped=True``: the paper's unclipped noise, Tables S2-S4)."""
    check_images(x, world.image_shape, world.device, name="inputs", in_range=not unclipped)
    if len(x) != len(world.images):
        raise ValueError(f"inputs: expected one per test image ({len(world.images)}), "
                         f"got {len(x)}")


@torch.no_grad()
def purify(world, x: Tensor, method: str | None = None, base_seed: int | None = None) -> Tensor:
    """f(x) for inputs aligned with the test images, batch i with eq. 9's batch index i
    (``method`` and ``base_seed`` default to the world's parameters)."""
    check_inputs(world, x)
    purifier = world.purifier(method)
    seed = world.params.base_seed if base_seed is None else base_seed
    return torch.cat([purifier(x[rows], seed, i) for i, rows in
                      tqdm(world.batches(), desc=f"purify ({purifier.method})", unit="batch",
                           leave=False)])


@torch.no_grad()
def trajectories(world, x: Tensor, method: str | None = None, base_seed: int | None = None,
                 unclipped: bool = False) -> Iterator[tuple[slice, Tensor]]:
    """Each batch's rows and its states (S, B, C, H, W) from the input to the purified image
    (:meth:`Purifier.trajectory`), batch i with eq. 9's batch index i; state t* ends the
    forward process of eq. 1 (``ddpm``, ``ddim``)."""
    check_inputs(world, x, unclipped)
    purifier = world.purifier(method)
    seed = world.params.base_seed if base_seed is None else base_seed
    for i, rows in tqdm(world.batches(), desc=f"trajectories ({purifier.method})",
                        unit="batch", leave=False):
        yield rows, purifier.trajectory(x[rows], seed, i, unclipped)


def first_states(world, x: Tensor, keep: int, method: str | None = None,
                 base_seed: int | None = None) -> Tensor:
    """The states (S, keep, C, H, W) of the first ``keep`` inputs along the purification
    (eqs. 1 and 2 for ``ddpm``; Fig. S3), from the batches that hold them."""
    if keep < 1:
        raise ValueError(f"keep: expected >= 1 images, got {keep}")
    kept: list[Tensor] = []
    for _, states in trajectories(world, x, method, base_seed):
        kept.append(states[:, :keep].cpu())
        if sum(k.shape[1] for k in kept) >= keep:
            break
    return torch.cat(kept, 1)[:, :keep]
