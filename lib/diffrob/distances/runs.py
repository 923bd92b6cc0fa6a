"""The runs of sec. 3.1-3.2 on a world: the perturbed inputs, their distances along
DiffPure's purification, each sampler's purified images, and the seeds-against-inputs draws.

The adversarial examples come from the results store (:func:`diffrob.stages.adversarial`,
computed there only if missing); everything else here is recomputed, seeded, in seconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import attacks, purifiers, stages
from ..params import PURIFIERS
from . import analysis
from .analysis import CONDITIONS, Curves, Randomness


def uniform_inputs(world, eps: float, seed: int = 0, clip: bool = True) -> Tensor:
    """The test images plus uniform noise U(-eps, eps) per pixel, seeded; clipped to [0,1],
    or with ``clip=False`` not: the paper's convention in Tables S2-S4, whose init values
    are those of unclipped noise (uniform 128/255 on CIFAR-10: 16.051 ± 0.129 =
    eps sqrt(3072 / 3) ± 0.13). The same draw either way."""
    return attacks.uniform(world.images, eps, torch.Generator().manual_seed(seed), clip=clip)


@torch.no_grad()
def distance_curves(world, x: Tensor, method: str | None = None, keep: int = 4,
                    base_seed: int | None = None, unclipped: bool = False) -> Curves:
    """l2 and linf distance between every purification state and the clean image (sec. 3.1).

    ``keep`` (>= 1) first images keep their states for the scrubber; ``unclipped=True``
    accepts inputs outside [0,1] (:func:`uniform_inputs` with ``clip=False``).
    """
    if keep < 1:
        raise ValueError(f"keep: expected >= 1 images, got {keep}")
    purifier = world.purifier(method)
    d2, dinf, kept = [], [], []
    for rows, traj in purifiers.trajectories(world, x, method, base_seed, unclipped):
        clean = world.images[rows]
        d2.append(analysis.l2(traj, clean).cpu())
        dinf.append(analysis.linf(traj, clean).cpu())
        if sum(k.shape[1] for k in kept) < keep:
            kept.append(traj[:, :keep].cpu())
    return Curves(purifier.method, purifier.t_star, torch.cat(d2, 1), torch.cat(dinf, 1),
                  torch.cat(kept, 1)[:, :keep])


@dataclass
class Measured:
    """Sec. 3.1's inputs and their DiffPure distance curves: the attacks' examples and uniform
    noise of each ``levels`` size (1/255 units), unclipped (``curves``, the paper's convention)
    and clipped to [0,1] (``clipped``); ``same_size`` the inputs of the attack's eps."""

    inputs: dict[str, Tensor]
    curves: dict[str, Curves]
    clipped: dict[str, Curves]
    levels: list[float]
    same_size: list[str]

    @property
    def t_star(self) -> int:
        return next(iter(self.curves.values())).t_star


def at_sec31_radius(world):
    """The world with sec. 3.1's attack radius as its eps: ``distances_eps_255`` where given
    (the regime rule of ``paper_data/setup.yaml``: the purifier's own distance about 3x the
    attack's, as in Table S2), else the world itself."""
    p = world.params
    eps_255 = p.sec31_eps_255
    if eps_255 == p.eps_255:
        return world
    return dataclasses.replace(world, params=p.replace(eps_255=eps_255, distances_eps_255=0.0))


def measure(world) -> Measured:
    """Every input of sec. 3.1 (Fig. 1c/d, S1, Tables S2-S3) through DiffPure (``ddpm``) with the
    base seed and eq. 9's batch indices: the adversarial examples of each attack in
    ``attacks`` and uniform noise of each ``uniform_eps_255`` and the attack's eps."""
    p = world.params
    inputs = {a: stages.adversarial(world, a) for a in p.attacks}
    levels = sorted(set(p.uniform_eps_255) | {p.eps_255})
    if not p.attacks:
        print("No attacks in `attacks` for this world: only uniform noise is measured.")
    curves = {name: distance_curves(world, x, "ddpm") for name, x in inputs.items()}
    clipped = {}  # uniform noise clipped to [0,1], our other convention
    for e in levels:
        name = f"uniform_{e:g}"
        inputs[name] = uniform_inputs(world, e / 255, seed=p.base_seed, clip=False)
        curves[name] = distance_curves(world, inputs[name], "ddpm", unclipped=True)
        clipped[name] = distance_curves(world, inputs[name].clamp(0, 1), "ddpm")
    return Measured(inputs, curves, clipped, levels, [*p.attacks, f"uniform_{p.eps_255:g}"])


def by_samplers(world, x: Tensor) -> dict[str, Tensor]:
    """``x`` purified by each sampler of Table S5 (DDPM, reverse-only, DDIM, one-step)."""
    p = world.params
    return {m: purifiers.purify(world, x, m, p.base_seed) for m in PURIFIERS}


@torch.no_grad()
def randomness(world, eps: float, n_images: int, n_seeds: int, n_neighbours: int,
               noise_seed: int = 0, chunk: int | None = None,
               conditions: tuple[str, ...] = CONDITIONS) -> Randomness:
    """Sec. 3.2 on the first ``n_images`` test images (see :class:`~.analysis.Randomness`).

    Only the ``conditions`` asked for are run (``perturbation`` always comes along).

    The eps-ball inputs are ``attacks.uniform`` draws (seeded by ``noise_seed``
    and the batch index); the fixed seed is ``params.base_seed``. Each image keeps
    its batch index of eq. 9; ``chunk`` draws are folded into one purifier call
    (default: as many as fill ``batch_size x eot_per_call`` rows, which the attack stage
    already fits in memory with a full gradient).
    """
    if not 1 <= n_images <= len(world.images):
        raise ValueError(f"n_images: expected 1..{len(world.images)}, got {n_images}")
    if not conditions or not set(conditions) <= set(CONDITIONS):
        raise ValueError(f"conditions: expected some of {list(CONDITIONS)}, got {conditions!r}")
    if n_seeds < 2 or n_neighbours < 2:
        raise ValueError(f"n_seeds and n_neighbours: expected >= 2, got {n_seeds}, "
                         f"{n_neighbours}")
    p = world.params
    purifier = world.purifier()
    per_batch: dict[str, list[Tensor]] = {c: [] for c in (*conditions, "perturbation")}
    todo = [(i, rows) for i, rows in world.batches() if rows.start < n_images]
    draws = sum(n_seeds if c == "fixed input" else n_neighbours for c in conditions)
    with tqdm(total=len(todo) * draws, desc="sec. 3.2 draws") as bar:
        for i, rows in todo:
            x0 = world.images[rows.start:min(rows.stop, n_images)]
            per_call = chunk or max(1, p.batch_size * p.eot_per_call // len(x0))
            gen = torch.Generator().manual_seed(10**4 * noise_seed + i)
            inputs = attacks.uniform(x0.repeat(n_neighbours, 1, 1, 1), eps, gen)
            inputs = inputs.view(n_neighbours, *x0.shape)
            runs = {"fixed seed": (inputs, [p.base_seed] * n_neighbours),
                    "fixed input": (x0.expand(n_seeds, *x0.shape), list(range(n_seeds))),
                    "both vary": (inputs, list(range(n_neighbours)))}
            for name in conditions:
                xs, seeds = runs[name]
                outs = []
                for c in range(0, len(seeds), per_call):
                    group = seeds[c:c + per_call]
                    y = purifier(xs[c:c + len(group)].reshape(-1, *x0.shape[1:]), group, i)
                    outs.append(y.view(len(group), *x0.shape).cpu())
                    bar.update(len(group))
                per_batch[name].append(torch.cat(outs))
            per_batch["perturbation"].append(inputs.cpu())
    outputs = {name: torch.cat(parts, 1) for name, parts in per_batch.items()}
    return analysis.randomness_statistics(outputs, world.images[:n_images].cpu())


def seeds_against_inputs(world) -> tuple[Randomness, Randomness | None]:
    """Sec. 3.2 on the first ``randomness_images`` test images: the three conditions in the
    ball of ``randomness_eps_255`` (the paper's 8/255) with ``n_seeds`` seeds and
    ``n_neighbours`` inputs, and, where the attack's radius ``eps_255`` differs from the ball,
    the fixed-seed condition again in a ball of that radius (else ``None``)."""
    p = world.params
    n = min(p.randomness_images, len(world.images))
    ball = p.randomness_eps_255
    r = randomness(world, ball / 255, n, p.n_seeds, p.n_neighbours, noise_seed=p.base_seed)
    if p.eps_255 == ball:
        return r, None
    return r, randomness(world, p.eps, n, p.n_seeds, p.n_neighbours, noise_seed=p.base_seed,
                         conditions=("fixed seed",))


TOY_SAMPLES = 2000   # Monte-Carlo draws of the toy model per input size, at most
TOY_NUMBERS = 2 * 10**7  # ... and at most this many draws x dimensions (ImageNet: 132 draws;
#                          the distance concentrates as d grows, so few draws suffice there)


@dataclass
class Toy:
    """The Gaussian toy model (:func:`.analysis.toy_end_distance2`) at a world's setting:
    ``data_var`` the eigenvalues of its test images' covariance, ``noise_var`` eq. 3's
    sigma^2 of its forward process at t*, and per input size (name -> init l2 ``init``) the
    Monte-Carlo distances ``sampled`` (``TOY_SAMPLES`` each, or fewer: :func:`gaussian_toy`)."""

    data_var: np.ndarray
    noise_var: float
    t_star: int
    init: dict[str, float]
    sampled: dict[str, Tensor]

    def closed_form(self, delta_l2: float | np.ndarray) -> np.ndarray:
        """The toy's root-mean-square end distance at init l2 ``delta_l2``."""
        return np.sqrt(analysis.toy_end_distance2(self.data_var, self.noise_var, delta_l2))


def gaussian_toy(world, init: dict[str, float]) -> Toy:
    """The toy model on ``world``: its test images' covariance, DiffPure's alpha_bar at
    ``t_star`` (eq. 1) as eq. 3's noise, and ``TOY_SAMPLES`` draws for each input of ``init``
    (name -> init l2; fewer where the dimension times ``TOY_SAMPLES`` exceeds ``TOY_NUMBERS``),
    generator seeded ``base_seed`` and drawn in the order of ``init``."""
    p = world.params
    schedule = world.purifier("ddpm").schedule
    noise_var = analysis.toy_noise_var(schedule.alphas_cumprod[p.t_star - 1].item())
    data_var = analysis.data_variances(world.images)
    gen = torch.Generator().manual_seed(p.base_seed)
    draws = max(1, min(TOY_SAMPLES, TOY_NUMBERS // len(data_var)))
    sampled = {n: analysis.toy_monte_carlo(data_var, noise_var, length, draws, gen)
               for n, length in init.items()}
    return Toy(data_var, noise_var, p.t_star, dict(init), sampled)
