"""The cap model's runs on a world (sec. 5, appendix A): the 2-D slices of Fig. 4b, c
(stored), the orthogonal adversarial directions of A.2 and the logit ranges of Definition 3.

Every function reads ``world.params`` once and passes its knobs to :mod:`.analysis`.
Only the bare classifier is sliced (sec. 5 is about the classifier's adversarial regions),
around the correctly classified test images (appendix A.1 starts from such an x0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .. import attacks, stages, store
from . import analysis

SECOND = ("random", "adversarial")
SLICE_FIELDS = ("world", "n_images", "batch_size", "eps_255", "attack_steps", "rel_stepsize")


@dataclass
class Slices:
    """2-D slices around clean images (Fig. 4b, c).

    ``points`` (N, 2): plane coordinates (projection onto u, onto v) in l2 units;
    ``predictions`` (B, N): decisions there; ``labels`` (B,); ``index`` (B,):
    rows of the world's images; ``attack_length`` (B,): l2 length of the
    adversarial perturbation that defined u; ``attack_success`` (B,): whether
    it fooled the classifier; ``second``: what v is ("random" / "adversarial").
    """

    points: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    attack_length: np.ndarray
    attack_success: np.ndarray
    radius: float
    second: str

    @property
    def adversarial(self) -> np.ndarray:
        """(B, N) booleans: the decision differs from the label."""
        return self.predictions != self.labels[:, None]

    @property
    def projection(self) -> np.ndarray:
        """(N,) projection of every point onto the adversarial direction."""
        return self.points[:, 0]


def pgd_directions(classifier, x: Tensor, y: Tensor, eps: float, steps: int, step_size: float,
                   generator: torch.Generator | None = None) -> Tensor:
    """Adversarial directions x_adv - x0 of untargeted Linf PGD on the classifier (sec. 5)."""
    return attacks.pgd(classifier, x, y, eps, steps, step_size, random_start=True,
                       generator=generator) - x


def correct(world) -> Tensor:
    """Rows of the world's test images that the bare classifier classifies correctly."""
    return (world.predict(world.images) == world.labels).nonzero().flatten()


def slice_world(world, second: str = "random", n_images: int | None = None,
                n_points: int | None = None, radius: float | None = None,
                seed: int | None = None) -> Slices:
    """Slice the bare classifier of ``world`` around its first correctly classified images.

    Sizes default to ``world.params`` (``cap_images``, ``cap_points``, ``cap_radius``,
    seed ``base_seed``); the adversarial direction is untargeted PGD at ``eps``,
    ``attack_steps``, ``step_size``. ``second="adversarial"`` takes v from a second
    PGD run with another random start (Fig. 4c); ``"random"`` a Gaussian direction
    (Fig. 4b). Batch j (``batch_size`` sliced images) draws on the CPU (the same numbers
    on every device) with its own generator seeded ``10^4 seed + j``, and is stored
    (``<store_dir>/cap/<second>-<hash of the settings>``, one file per batch), so a rerun
    computes only the batches that are missing.
    """
    if second not in SECOND:
        raise ValueError(f"second: expected one of {SECOND}, got {second!r}")
    p = world.params
    n_images, n_points = n_images or p.cap_images, n_points or p.cap_points
    radius, seed = float(radius or p.cap_radius), p.base_seed if seed is None else seed
    rows = correct(world)
    if not len(rows):
        raise ValueError(f"{world.name}: none of the {len(world.images)} test images is classified "
                         f"correctly, so there is no clean image to slice around (raise n_images)")
    index = rows[:n_images]
    points = analysis.disc_points(n_points, radius, torch.Generator().manual_seed(seed))
    stage = f"cap/{second}"  # the store keeps each setting in its own folder
    key = stages.key(world, stage, SLICE_FIELDS, modules=(world.classifier,),
                     cap_images=n_images, cap_points=n_points, cap_radius=radius, seed=seed)
    bs = p.batch_size
    n_batches = (len(index) + bs - 1) // bs

    def compute(j: int) -> Tensor:
        """(B, N + 2) float64: decisions, attack length, attack success."""
        batch = index[j * bs:(j + 1) * bs]
        return _slice_batch(world, world.images[batch], world.labels[batch], points, second,
                            p.eps, p.attack_steps, p.step_size,
                            torch.Generator().manual_seed(10**4 * seed + j))

    data = store.cached(p, stage, key, list(range(n_batches)), compute,
                        desc=f"cap slices ({second}, R = {radius:g})")
    data = torch.cat([t.cpu() for t in data.values()]).numpy()
    return Slices(points.numpy(), data[:, :n_points].astype(np.int64),
                  world.labels[index].cpu().numpy(), index.cpu().numpy(), data[:, n_points],
                  data[:, n_points + 1].astype(bool), radius, second)


def _slice_batch(world, x: Tensor, y: Tensor, points: Tensor, second: str, eps: float,
                 steps: int, step_size: float, gen: torch.Generator) -> Tensor:
    with torch.enable_grad():
        adv = pgd_directions(world.classifier, x, y, eps, steps, step_size, gen)
        if second == "adversarial":
            other = pgd_directions(world.classifier, x, y, eps, steps, step_size, gen)
    if second == "random":
        other = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    u, v = analysis.plane(adv, other)
    pred = analysis.decisions(world.classifier, x, u, v, points, analysis.POINT_BATCH)
    length = adv.flatten(1).norm(dim=1, keepdim=True)
    success = (world.predict((x + adv).clamp(0, 1)) != y)[:, None]   # clamp: rounding only
    return torch.cat([pred.double(), length.double(), success.double()], 1)


def orthogonal_counts(world, slices: Slices, eps_l2: float, linf: float | None = None
                      ) -> np.ndarray:
    """App. A.2 measured at every sliced image: the orthogonal adversarial directions of
    l2 length ``eps_l2``, clipped to the Linf ball of radius ``linf`` where given
    (:func:`.analysis.orthogonal_adversarial_count`, k up to ``gaas_max_k``, generator
    seeded ``base_seed``), (B,) ints."""
    p = world.params
    return analysis.orthogonal_adversarial_count(
        world.classifier, world.images[slices.index], world.labels[slices.index], eps_l2,
        p.gaas_max_k, torch.Generator().manual_seed(p.base_seed), linf)


def logit_ranges(world, slices: Slices, eps_l2: float, n_images: int = 16,
                 n_random: int = 16) -> tuple[Tensor, Tensor]:
    """Definition 3 on the first ``n_images`` sliced images: the range of every logit over
    [0, ``eps_l2``) along a PGD direction and its mean over ``n_random`` Gaussian directions,
    both (B, classes); one generator on the world's device, seeded ``base_seed``, draws
    the PGD start and then the Gaussian directions."""
    p = world.params
    rows = slices.index[:n_images]
    x, y = world.images[rows], world.labels[rows]
    gen = torch.Generator(device=world.device).manual_seed(p.base_seed)
    with torch.enable_grad():
        adv = pgd_directions(world.classifier, x, y, p.eps, p.attack_steps, p.step_size, gen)
    r_adv = analysis.logit_ranges(world.classifier, x, adv, eps_l2)
    r_rand = torch.stack([analysis.logit_ranges(world.classifier, x,
                                                torch.randn(x.shape, generator=gen,
                                                            device=x.device), eps_l2)
                          for _ in range(n_random)]).mean(0)
    return r_adv, r_rand
