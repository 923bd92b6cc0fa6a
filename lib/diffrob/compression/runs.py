"""Sec. 6's runs on a world: the neighbourhood (Fig. 5b), the compression rates (stored), the
Jacobian spectra (Fig. 5c, stored), their matrix-free top (stored), the adversarial
examples of Fig. 6 (stored) and what decides robust from non-robust examples.

Every function reads ``world.params`` once and passes its knobs to :mod:`.analysis` and
:mod:`.analysis_boundary`. Image i is purified with the fixed randomness of eq. 9 with base
seed ``base_seed`` and batch index i (:func:`.analysis.fixed_purifier`), so each image has
its own fixed randomness. Stored stages go through :func:`diffrob.store.cached`, one file
per image (or per batch), read back on reruns.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import attacks, stages, store, worlds
from ..purifiers import seed_for
from .analysis import (ImageMap, Neighbourhood, Response, Spectrum, fixed_purifier, jacobian,
                       jacobian_spectrum, pca_spectra, perturbation_response, saturated_pixels,
                       stack, top_singular_values)
from .analysis_boundary import RobustFactors, gamma_direction, robust_factors

# What determines each stage's result (the store refuses files made with other values).
MODEL_FIELDS = ("world", "diffusion_model", "autocast", "purifier", "t_star", "base_seed")
BATCH_FIELDS = ("n_images", "batch_size")  # eq. 9's batch index and the noise per row
SINGULAR_FIELDS = ("singular_top_k", "subspace_iterations", "singular_oversample")
RATE_FIELDS = ("eps_255", "rate_samples")
# A stored image's rows of :class:`.analysis.Response`, then its saturated count (repeated).
RATE_ROWS = ("rate", "rate_unsaturated", "rate_small", "linear_error", "linear_error_eps")
# A stored image's rows of its Jacobian: the two spectra, then its saturated count (repeated).
JACOBIAN_ROWS = ("eigenvalues", "singular_values", "saturated")


def counting(f: ImageMap, bar: tqdm) -> ImageMap:
    """``f`` advancing ``bar`` by one at every call (one chunk of rows)."""
    def counted(x: Tensor) -> Tensor:
        y = f(x)
        bar.update()
        return y
    return counted


def neighbourhood(world, progress: bool = True) -> Neighbourhood:
    """Fig. 5b at the first test image: :func:`.analysis.pca_spectra` of ``pca_samples`` points
    of its Linf ball of radius ``eps`` (generator seeded ``base_seed``), purified with the fixed
    randomness of batch index 0, ``batch_size`` points at a time; top ``pca_components``."""
    p = world.params
    x0 = world.images[:1]
    calls = 1 + math.ceil(p.pca_samples / p.batch_size)
    with tqdm(total=calls, desc="PCA samples", disable=not progress, leave=False) as bar:
        f = counting(fixed_purifier(world.purifier(), p.base_seed, 0), bar)
        return pca_spectra(f, x0, p.eps, p.pca_samples, p.pca_components, chunk=p.batch_size,
                           generator=torch.Generator().manual_seed(p.base_seed))


def jacobian_world(world):
    """``world`` with its first ``jacobian_images`` test images where they are more than its own
    ``n_images``, else ``world``: Fig. 5c's spectra need no attack, so they may average over
    more images than Table 1's (the paper: 50). The first ``n_images`` are the same images;
    the rates and the analyses that need an image's attack (:func:`jacobian_robustness`) keep
    to them."""
    p = world.params
    if p.jacobian_images <= len(world.images):
        return world
    try:
        more = worlds.from_params(p.replace(n_images=p.jacobian_images))
    except ValueError as e:
        raise ValueError(f"parameter 'jacobian_images' ({p.jacobian_images}): {e}") from None
    return dataclasses.replace(world, images=more.images, labels=more.labels)


def compression_rates(world, progress: bool = True) -> Response:
    """Sec. 6's compression rate and eq. 4's error at each of the first ``jacobian_images`` test
    images (at most Table 1's): a :class:`.analysis.Response` of (n, ``rate_samples``) per
    measurement.

    Image i is purified with the fixed randomness of :func:`jacobian_spectra` at
    ``rate_samples`` uniform points of its Linf ball of radius ``eps`` and as many of eq. 4's
    small radius (:func:`.analysis.perturbation_response`, generator seeded i). The paper's
    "~0.25" is one number over images: report the per-image means' mean and spread, not one
    image's. ``saturated`` counts the output pixels clamped at f(x_i), the zeros they add to
    image i's Jacobian spectrum (:func:`.analysis.drop_saturated`). Stored
    (``compression/rates``, one file per image: :data:`RATE_ROWS` and the saturated count).
    """
    p = world.params
    stage = "compression/rates"
    purifier = world.purifier()
    n = min(p.jacobian_images, len(world.images))

    def compute(i: int) -> Tensor:
        r = perturbation_response(fixed_purifier(purifier, p.base_seed, i), world.images[i:i + 1],
                                  p.eps, p.rate_samples, p.batch_size,
                                  torch.Generator().manual_seed(i))
        return torch.cat([getattr(r, name).double() for name in RATE_ROWS]
                         + [r.saturated.double().expand(1, p.rate_samples)])

    rows = store.cached(p, stage, stages.key(world, stage, MODEL_FIELDS + RATE_FIELDS),
                        list(range(n)), compute, desc="compression rates", unit="image",
                        progress=progress).values()
    return stack([Response(*(r[k:k + 1] for k in range(len(RATE_ROWS))),
                           saturated=r[-1, :1].long()) for r in rows])


def jacobian_spectra(world, progress: bool = True) -> tuple[Spectrum, Tensor]:
    """Fig. 5c for the first ``jacobian_images`` test images (:func:`jacobian_world`): spectra
    stacked as (n, D), and each image's count of output pixels clamped at f(x0) (n,), the
    exact zeros they add to its spectrum (:func:`.analysis.drop_saturated`).

    The exact Jacobian of image i (:func:`.analysis.jacobian`, ``jacobian_chunk`` rows at a
    time) and its spectrum are computed under image i's fixed randomness; both spectra and the
    count are stored (``compression/jacobian``, one file per image: :data:`JACOBIAN_ROWS`).
    """
    p, world = world.params, jacobian_world(world)
    stage = "compression/jacobian"
    purifier = world.purifier()
    n = min(p.jacobian_images, len(world.images))
    calls = 2 + math.ceil(world.images[0].numel() / p.jacobian_chunk)

    def compute(i: int) -> Tensor:
        x = world.images[i:i + 1]
        with tqdm(total=calls, desc="vector-Jacobian products", disable=not progress,
                  leave=False) as bar:
            f = counting(fixed_purifier(purifier, p.base_seed, i), bar)
            s = jacobian_spectrum(jacobian(f, x, p.jacobian_chunk))
            with torch.no_grad():
                held = saturated_pixels(f(x)).sum().to(s.eigenvalues.dtype)
        return torch.stack([s.eigenvalues, s.singular_values, held.expand_as(s.eigenvalues)])

    key = stages.key(world, stage, MODEL_FIELDS, rows=JACOBIAN_ROWS)
    rows = store.cached(p, stage, key, list(range(n)), compute, desc="Jacobians", unit="image",
                        progress=progress).values()
    return (Spectrum(torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])),
            torch.stack([r[2, 0] for r in rows]).long())


def top_singular_spectra(world, progress: bool = True) -> Tensor:
    """The ``singular_top_k`` largest singular values of J_f at the first ``singular_images``
    of the ``jacobian_images`` test images (:func:`.analysis.top_singular_values`), stacked
    as (n, k), largest first.

    Each image has the fixed randomness of :func:`jacobian_spectra`, and its random start
    block the seed of its index, so the values are reproducible; they are stored
    (``compression/top_singular``, one file per image).
    """
    p = world.params
    stage = "compression/top_singular"
    purifier = world.purifier()
    n = min(p.singular_images, p.jacobian_images, len(world.images))
    d = int(world.images[0].numel())
    k = min(p.singular_top_k, d)
    calls = 2 * (p.subspace_iterations + 1) * math.ceil(min(k + p.singular_oversample, d)
                                                         / p.jacobian_chunk)

    def compute(i: int) -> Tensor:
        with tqdm(total=calls, desc="J and J^T", disable=not progress, leave=False) as bar:
            f = counting(fixed_purifier(purifier, p.base_seed, i), bar)
            return top_singular_values(f, world.images[i:i + 1], k, p.subspace_iterations,
                                       p.singular_oversample, p.jacobian_chunk,
                                       torch.Generator().manual_seed(i))

    key = stages.key(world, stage, MODEL_FIELDS + SINGULAR_FIELDS)
    top = store.cached(p, stage, key, list(range(n)), compute, desc="top singular values",
                       unit="image", progress=progress)
    return torch.stack(list(top.values()))


@torch.no_grad()
def jacobian_robustness(world, x_adv: Tensor) -> tuple[Tensor, Tensor]:
    """(clean correct, robust) of the first ``jacobian_images`` images that ``x_adv`` (Table 1's
    images) has examples of, each judged by the purifier with the fixed randomness its Jacobian
    was computed with (:func:`jacobian_spectra`)."""
    p = world.params
    purifier = world.purifier()
    n = min(p.jacobian_images, len(world.images), len(x_adv))
    clean, robust = [], []
    for i in range(n):
        f = fixed_purifier(purifier, p.base_seed, i)
        y = world.labels[i:i + 1]
        clean.append((world.classifier(f(world.images[i:i + 1])).argmax(1) == y).cpu())
        robust.append((world.classifier(f(x_adv[i:i + 1])).argmax(1) == y).cpu())
    return torch.cat(clean), torch.cat(robust)


def adversarial_fixed(world, progress: bool = True) -> Tensor:
    """PGD with the full gradient through the purifier with fixed randomness (sec. 6).

    Batch i is attacked through ``classifier(purifier(x, base_seed, i, grad=True))``,
    the same deterministic system every step (no EOT: there is no randomness to
    average), with :func:`diffrob.attacks.pgd` at the world's eps, steps and step
    size; the random start uses the seed of :mod:`diffrob.attacks`. Batches are
    stored (``compression/pgd-fixed``).
    """
    p = world.params
    stage = "compression/pgd-fixed"
    purifier = world.purifier()
    rows = dict(world.batches())

    def compute(i: int) -> Tensor:
        def logits(z: Tensor) -> Tensor:
            return world.classifier(purifier(z, p.base_seed, i, grad=True))
        g = torch.Generator().manual_seed(seed_for(p.attack_seed, i, 0, forward=False))
        return attacks.pgd(logits, world.images[rows[i]], world.labels[rows[i]], p.eps,
                           p.attack_steps, p.step_size, p.random_start, g, progress=progress)

    key = stages.key(world, stage, MODEL_FIELDS + BATCH_FIELDS + stages.ATTACK_FIELDS)
    out = store.cached(p, stage, key, list(rows), compute, desc="PGD (fixed randomness)",
                       progress=progress)
    return torch.cat([x.to(world.device) for x in out.values()])


def adversarial_examples(world, progress: bool = True) -> Tensor:
    """The adversarial examples of Fig. 6, as ``compression_attack`` names them.

    A system attack (``bpda`` .. ``pgd-eot``) is read from the store of
    :func:`diffrob.stages.adversarial` (computed there if missing; the book's
    chapter on distances has made it already); ``fixed-pgd`` is
    :func:`adversarial_fixed`. The default ``pgd-eot`` matches the paper's
    attack lengths (1.16 and 1.23, as PGD-EOT's 1.19 in Table S2).
    """
    attack = world.params.compression_attack
    if attack == "fixed-pgd":
        return adversarial_fixed(world, progress)
    return stages.adversarial(world, attack, progress=progress)


@torch.no_grad()
def world_robust_factors(world, x_adv: Tensor) -> RobustFactors:
    """:func:`.analysis_boundary.robust_factors` of every test image, purified batch by batch
    with fixed randomness.

    Batch i goes through ``purifier(x, base_seed, i)`` (eq. 9), for the clean and the
    adversarial images alike: the randomness that :func:`adversarial_fixed` attacks,
    and for a stored system attack one of the evaluation runs it never saw. Distances to
    the boundary are searched up to ``critical_max`` (``critical_grid`` steps), along sec.
    5's PGD on the classifier at f(x0) (the attack's steps and relative step at eps, random
    start seeded by the base seed; :func:`.analysis_boundary.gamma_direction`).
    """
    p = world.params
    purifier = world.purifier()
    clean, adv = [], []
    for i, rows in world.batches():
        clean.append(purifier(world.images[rows], p.base_seed, i))
        adv.append(purifier(x_adv[rows], p.base_seed, i))
    clean = torch.cat(clean)
    direction = gamma_direction(world.classifier, clean, world.labels, p.eps, p.attack_steps,
                                p.step_size, torch.Generator().manual_seed(p.base_seed))
    return robust_factors(world.classifier, world.images, x_adv, clean, torch.cat(adv),
                          world.labels, direction, p.critical_max, p.critical_grid)
