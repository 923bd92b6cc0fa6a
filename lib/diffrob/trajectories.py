"""What purification does to distances (sec. 3.1) and how randomness decides it (sec. 3.2).

- :func:`purify`: the purified images of a world's test set under one base seed,
  batch by batch with the batch indices of eq. 9.
- :func:`distance_curves`: the l2 / linf distance to the clean image at every
  state of the purification (Fig. 1c/d, S1, Tables S2-S3), and
  :func:`init_max_end` for the tables' three columns.
- :func:`before_after`: l2, linf and SSIM before and after purification (Table S5).
- :func:`randomness`: a fixed input under many seeds against many inputs of the
  eps ball under one seed: correlations of the purified directions and
  distances to the centroid (sec. 3.2, Fig. 2).

All images are in [0,1] pixel units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import attacks, metrics
from .purifiers import check_images


def _check_inputs(world, x: Tensor, unclipped: bool = False) -> None:
    check_images(x, world.image_shape, world.device, name="inputs", in_range=not unclipped)
    if len(x) != len(world.images):
        raise ValueError(f"inputs: expected one per test image ({len(world.images)}), "
                         f"got {len(x)}")


def uniform_inputs(world, eps: float, seed: int = 0, clip: bool = True) -> Tensor:
    """The test images plus uniform noise U(-eps, eps) per pixel, seeded; clipped to [0,1],
    or with ``clip=False`` not: the paper's convention in Tables S2-S4, whose init values
    are those of unclipped noise (uniform 128/255 on CIFAR-10: 16.051 ± 0.129 =
    eps sqrt(3072 / 3) ± 0.13). The same draw either way."""
    return attacks.uniform(world.images, eps, torch.Generator().manual_seed(seed), clip=clip)


@torch.no_grad()
def purify(world, x: Tensor, method: str | None = None, base_seed: int | None = None) -> Tensor:
    """f(x) for inputs aligned with the test images, batch i with eq. 9's batch index i."""
    _check_inputs(world, x)
    purifier = world.purifier(method)
    seed = world.params.base_seed if base_seed is None else base_seed
    return torch.cat([purifier(x[rows], seed, i) for i, rows in
                      tqdm(world.batches(), desc=f"purify ({purifier.method})", unit="batch",
                           leave=False)])


@dataclass
class Curves:
    """Distances to the clean images along the purification: (S, N) each.

    ``states`` keeps the first few images' trajectories (S, k, C, H, W) for the
    scrubber widget; state 0 is the input, state ``t_star`` the end of the
    forward process (``ddpm``/``ddim``), the last state the purified image.
    """

    method: str
    t_star: int
    l2: Tensor
    linf: Tensor
    states: Tensor


@torch.no_grad()
def distance_curves(world, x: Tensor, method: str | None = None, keep: int = 4,
                    base_seed: int | None = None, unclipped: bool = False) -> Curves:
    """l2 and linf distance between every purification state and the clean image (sec. 3.1).

    ``keep`` (>= 1) first images keep their states for :func:`scrubber`; ``unclipped=True``
    accepts inputs outside [0,1] (:func:`uniform_inputs` with ``clip=False``).
    """
    _check_inputs(world, x, unclipped)
    if keep < 1:
        raise ValueError(f"keep: expected >= 1 images, got {keep}")
    purifier = world.purifier(method)
    seed = world.params.base_seed if base_seed is None else base_seed
    d2, dinf, kept = [], [], []
    for i, rows in tqdm(world.batches(), desc=f"trajectories ({purifier.method})",
                        unit="batch", leave=False):
        traj = purifier.trajectory(x[rows], seed, i, unclipped)
        clean = world.images[rows]
        d2.append(metrics.l2(traj, clean).cpu())
        dinf.append(metrics.linf(traj, clean).cpu())
        if sum(k.shape[1] for k in kept) < keep:
            kept.append(traj[:, :keep].cpu())
    return Curves(purifier.method, purifier.t_star, torch.cat(d2, 1), torch.cat(dinf, 1),
                  torch.cat(kept, 1)[:, :keep])


def init_max_end(d: Tensor, t_star: int) -> dict[str, tuple[float, float]]:
    """Mean and std over images at t = 0, t = t* and t = 2 t* (Tables S2-S4's columns)."""
    if d.ndim != 2 or d.shape[0] != 2 * t_star + 1:
        raise ValueError(f"distances: expected (2 t* + 1 = {2 * t_star + 1}, N), got "
                         f"{tuple(d.shape)}")
    return {"init": metrics.mean_std(d[0]), "max": metrics.mean_std(d[t_star]),
            "end": metrics.mean_std(d[-1])}


def before_after(world, x: Tensor,
                 purified: dict[str, Tensor]) -> dict[str, dict[str, tuple[float, float]]]:
    """Table S5: mean l2, linf and SSIM to the clean images of ``x`` and of each method's
    purified ``x`` (``purified``: method -> f(x), from :func:`purify`).

    Returns ``{"before": {...}, method: {...}}`` with (mean, std) per metric.
    """
    def measure(y: Tensor) -> dict[str, tuple[float, float]]:
        c = world.images
        return {"l2": metrics.mean_std(metrics.l2(y, c)),
                "linf": metrics.mean_std(metrics.linf(y, c)),
                "ssim": metrics.mean_std(metrics.ssim(y, c))}

    return {"before": measure(x), **{m: measure(y) for m, y in purified.items()}}


CONDITIONS = ("fixed seed", "fixed input", "both vary")


@dataclass
class Randomness:
    """Sec. 3.2 for ``n`` clean images x0 and K draws per condition.

    Directions are measured from the clean image: f(x) - x0 (sec. 6 calls
    f(x0) - x0 "the shift of the entire image neighborhood as analyzed in
    Sec. 3.2"; measured from f_s(x0) instead, the fixed-seed directions would be
    the compressed perturbations J eta, nearly uncorrelated, not 0.9954):

    - ``fixed seed``: f_s(x0 + eta_k), K inputs of the eps ball, one base seed s;
    - ``fixed input``: f_{s_k}(x0), the clean image under K base seeds 0..K-1;
    - ``both vary``: f_{s_k}(x0 + eta_k);
    - ``perturbation``: the inputs x0 + eta_k themselves (no purification).

    ``correlation[c]`` (n,) is the mean off-diagonal ``np.corrcoef`` of the K
    directions of each image; ``centroid[c]`` (K, n) the l2 distance of each
    output to the mean of its image's K outputs (Fig. 2f); ``example[c]`` the
    K x K correlation matrix of the first image (Fig. 2a/b).
    """

    correlation: dict[str, np.ndarray]
    centroid: dict[str, np.ndarray]
    example: dict[str, np.ndarray]


@torch.no_grad()
def randomness(world, eps: float, n_images: int, n_seeds: int, n_neighbours: int,
               noise_seed: int = 0, chunk: int | None = None,
               conditions: tuple[str, ...] = CONDITIONS) -> Randomness:
    """Sec. 3.2 on the first ``n_images`` test images (see :class:`Randomness`).

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
    clean = world.images[:n_images].cpu()
    out = Randomness({}, {}, {})
    for name, parts in per_batch.items():
        y = torch.cat(parts, 1)                                   # (K, n, C, H, W)
        directions = (y - clean).flatten(2).double()              # (K, n, D)
        out.correlation[name] = np.array([metrics.mean_correlation(directions[:, j])
                                          for j in range(n_images)])
        out.centroid[name] = metrics.l2(y, y.mean(0)).numpy()
        out.example[name] = np.corrcoef(directions[:, 0].numpy())
    return out


# --- figures of sec. 3 ---------------------------------------------------------------

def _show(ax, image: Tensor) -> None:
    """One [0,1] image (C, H, W) on ``ax``, clipped for display, without axes."""
    img = image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(rows: dict[str, Tensor], scale: float = 1.3):
    """A figure with one row per entry: its label and its images (k, C, H, W) (Fig. S3)."""
    import matplotlib.pyplot as plt

    k = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), k, figsize=(scale * k, scale * len(rows)),
                             squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(k):
            if c < len(images):
                _show(axes[r, c], images[c])
            else:
                axes[r, c].axis("off")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


def plot_curves(ax, curves: dict[str, Curves], metric: str = "l2", title: str = "") -> None:
    """Mean distance (band: ± std over images) to the clean image per purification step (Fig. 1c/d)."""
    from matplotlib.ticker import MaxNLocator

    for name, c in curves.items():
        d = getattr(c, metric).double()
        m, s = d.mean(1).numpy(), d.std(1, unbiased=False).numpy()
        steps = np.arange(len(m))
        ax.plot(steps, m, label=name)
        ax.fill_between(steps, m - s, m + s, alpha=0.2)
    t_star = next(iter(curves.values())).t_star
    ax.axvline(t_star, color="grey", lw=0.8, ls=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("purification step (forward 0..t*, reverse t*..2t*)")
    ax.set_ylabel(f"{metric} distance to clean image")
    ax.set_title(title)
    ax.legend(fontsize="small")


def scrubber(curves: Curves, clean: Tensor, max_views: int = 21):
    """A slider over purification steps: the states of the kept images and their distances.

    ``clean`` (k, C, H, W) are the kept images' clean versions. At most
    ``max_views`` steps (evenly spaced, first and last included) are precomputed,
    so the widget works in the static book (``figures.slider_stack``).
    """
    import matplotlib.pyplot as plt

    from .figures import figure_widget, slider_stack

    n_states, k = curves.states.shape[:2]
    steps = sorted({int(round(s)) for s in np.linspace(0, n_states - 1, min(max_views, n_states))})
    m2 = curves.l2.double().mean(1).numpy()
    views, labels = [], []
    for s in steps:
        fig = plt.figure(figsize=(1.2 * k + 3.6, 2.4))
        grid = fig.add_gridspec(2, k + 1, width_ratios=[1] * k + [3])
        for j in range(k):
            _show(fig.add_subplot(grid[0, j]), clean[j])
            ax = fig.add_subplot(grid[1, j])
            _show(ax, curves.states[s, j])
            ax.set_xlabel(f"l2 {curves.l2[s, j]:.2f}\nlinf {curves.linf[s, j]:.2f}",
                          fontsize="x-small")
        fig.axes[0].set_ylabel("clean", fontsize="small")
        fig.axes[1].set_ylabel(f"step {s}", fontsize="small")
        ax = fig.add_subplot(grid[:, k])
        ax.plot(m2, color="C0")
        ax.plot([s], [m2[s]], "o", color="C3")
        ax.axvline(curves.t_star, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("step")
        ax.set_ylabel("mean l2 to clean")
        fig.tight_layout()
        views.append(figure_widget(fig))  # closes the figure
        phase = "forward" if curves.method in ("ddpm", "ddim") and s <= curves.t_star \
            else "reverse"
        labels.append(f"step {s} ({'input' if s == 0 else phase}): mean l2 {m2[s]:.3f}")
    return slider_stack(views, "step", labels)
