"""What chapter 02 shows (sec. 3.1): the distance curves of Fig. 1c/d and S1, Tables S2-S3,
the purifier's floor, the scrubber and Table S5 with SSIM, each beside the paper's numbers,
the claim rows and the glued numbers (chapter 03's are in :mod:`.report_randomness`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from .. import claims, verdicts
from ..figures import Table, figure_widget, show_image, slider_stack
from ..params import PURIFIERS, Params
from . import analysis, runs
from .analysis import Curves


def paper_numbers(p: Params, section: str) -> tuple[dict[str, Any], str]:
    """The paper's numbers of ``section`` for this world (CIFAR-10's where the paper has
    none for it) and their column label."""
    world = claims.paper_world(section, p.world)
    return claims.paper(section)[world], f"paper ({world})"


def _label(name: str) -> str:
    """An input's name as the figures and tables say it (``uniform_8`` -> ``uniform 8/255``)."""
    return f"uniform {name[8:]}/255" if name.startswith("uniform_") else name


@dataclass
class Distances:
    """Sec. 3.1 on a world at sec. 3.1's radius (:func:`runs.at_sec31_radius`): the measured
    curves (:func:`runs.measure`), the paper's numbers, each input's mean l2 at init (t = 0)
    and end (t = 2 t*), and the Gaussian toy model at every input's init l2
    (:func:`runs.gaussian_toy`); ``book`` are the book's parameters, its claims filed under them."""

    book: Params
    world: Any
    measured: runs.Measured
    paper: dict[str, Any]
    paper_label: str
    init: dict[str, float]
    end: dict[str, float]
    toy: runs.Toy

    @property
    def smallest(self) -> str:
        """The smallest uniform noise: its end distance is the purifier's floor."""
        return f"uniform_{self.measured.levels[0]:g}"


def distances(world) -> Distances:
    """Every input of sec. 3.1 through DiffPure (:func:`runs.measure`), and the toy model at
    each input's init l2."""
    at = runs.at_sec31_radius(world)
    m = runs.measure(at)
    paper, label = paper_numbers(world.params, "sec31")
    end = {n: c.mean_l2(-1) for n, c in m.curves.items()}
    init = {n: c.mean_l2(0) for n, c in m.curves.items()}
    return Distances(world.params, at, m, paper, label, init, end, runs.gaussian_toy(at, init))


def plot_curves(ax, curves: dict[str, Curves], metric: str = "l2", title: str = "") -> None:
    """Mean distance (band: ± std over images) to the clean image per purification step (Fig. 1c/d)."""
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


def distances_figure(d: Distances) -> Figure:
    """Fig. 1c/d and S1: l2 and l_inf along the purification, the attacks and uniform noise of
    their size (left), uniform noise of growing size (right)."""
    p, m = d.world.params, d.measured
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for row, metric in enumerate(("l2", "linf")):
        plot_curves(axes[row, 0], {_label(n): m.curves[n] for n in m.same_size}, metric,
                    f"{metric}: attacks and uniform noise of eps {p.eps_255:g}/255")
        plot_curves(axes[row, 1], {_label(f"uniform_{e:g}"): m.curves[f"uniform_{e:g}"]
                                   for e in m.levels}, metric,
                    f"{metric}: uniform noise of growing size")
    fig.tight_layout()
    return fig


def _init_max_end_frame(d: Distances, metric: str) -> pd.DataFrame:
    """Tables S2-S3's rows: init, max and end mean ± std per input, ours beside the paper's."""
    m = d.measured
    rows = {}
    for name, c in [*m.curves.items(), *((f"{n}, clipped", c) for n, c in m.clipped.items())]:
        ours = analysis.init_max_end(getattr(c, metric), m.t_star)
        ref = d.paper[metric].get(name, {})
        row = {f"ours {col}": f"{mean:.3f} ± {std:.3f}" for col, (mean, std) in ours.items()}
        row["ours end / init"] = f"{ours['end'][0] / ours['init'][0]:.2f}"
        row.update({f"{d.paper_label} {col}": f"{mean:.3f} ± {std:.3f}"
                    for col, (mean, std) in ref.items()})
        rows[name] = row
    return pd.DataFrame(rows).T.fillna("")


def l2_table(d: Distances) -> Table:
    """Table S2 (S4 on ImageNet): l2 at init, max and end."""
    return Table(_init_max_end_frame(d, "l2"), "tbl-distances-l2", "l2 distance to the clean "
                 "image at init, max and end of DiffPure's purification, mean ± std over the test "
                 "images; reproduces the paper's Table S2 (Table S4 on ImageNet).")


def linf_table(d: Distances) -> Table:
    """Table S3 (S4 on ImageNet): l_inf at init, max and end."""
    return Table(_init_max_end_frame(d, "linf"), "tbl-distances-linf", "l_inf distance to the "
                 "clean image at init, max and end, mean ± std over the test images; reproduces "
                 "the paper's Table S3 (Table S4 on ImageNet).")


def distance_claims(d: Distances) -> Table:
    """Sec. 3.1's claims on distances, judged with paired bootstraps over the test images
    (criteria and sources in paper_data/sec31.yaml); prints each input's end / init l2."""
    p, m, book = d.world.params, d.measured, d.book
    c = m.curves
    u = f"uniform_{p.eps_255:g}"
    largest = f"uniform_{m.levels[-1]:g}"
    rows = [
        claims.record(book, "sec31", "l2_grows",
                      {n: verdicts.ratio_of_means(c[n].l2[-1], c[n].l2[0]) for n in m.same_size}),
        claims.record(book, "sec31", "linf_grows",
                      {n: verdicts.ratio_of_means(c[n].linf[-1], c[n].linf[0])
                       for n in m.same_size}),
        claims.record(book, "sec31", "attacks_like_uniform",
                      {a: verdicts.ratio_of_means(c[a].l2[-1], c[u].l2[-1]) for a in p.attacks}
                      if p.attacks else None),
        claims.record(book, "sec31", "large_noise_shrinks",
                      {largest: verdicts.ratio_of_means(c[largest].l2[-1], c[largest].l2[0])}),
        claims.record(book, "sec31", "gaussian_toy_model",
                      verdicts.ratio_of_means(d.toy.sampled[u],
                                              np.full(len(d.toy.sampled[u]), d.init[u]))),
    ]
    print("end/init l2:", {n: round(d.end[n] / d.init[n], 2) for n in c})
    print(f"toy model at {_label(u)}: end/init {d.toy.closed_form(d.init[u]) / d.init[u]:.2f} "
          f"(eq. 3 closed form), measured {d.end[u] / d.init[u]:.2f}")
    return Table(claims.frame(rows), "tbl-distances-claims", "Sec. 3.1's claims on distances "
                 "judged (criteria from the paper's sec. 3.1 and Tables S2-S3, in "
                 "paper_data/sec31.yaml).")


def toy_figure(d: Distances) -> Figure:
    """Eq. 3 drawn twice. Left, Fig. 3a's shape: the probability that a linear classifier
    errs on x + eta against x's signed distance past its boundary
    (:func:`.analysis.fuzzy_grade`), a step without noise and a ramp with eq. 3's sigma at t*.
    Right, the toy model's end l2 against the init l2 (closed form
    :func:`.analysis.toy_end_distance2`, its Monte Carlo :func:`.analysis.toy_monte_carlo`
    and the floor), beside this world's measured DiffPure end l2 of every input."""
    toy = d.toy
    sigma = toy.noise_var**0.5
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    z = np.linspace(-4 * sigma, 4 * sigma, 201)
    a.plot(z, (z > 0).astype(float), "k--", lw=1, label="deterministic g (no noise)")
    a.plot(z, analysis.fuzzy_grade(z, sigma), "C3", label=f"g(x + eta), sigma = {sigma:.3g}")
    a.set_xlabel("signed l2 distance of x past g's boundary")
    a.set_ylabel("P(g(x + eta) != y0)")
    a.set_title("(a) eq. 3: noise makes the decision fuzzy (Fig. 3a)", fontsize=10)
    a.legend(fontsize=8)
    top = 1.1 * max(toy.init.values())
    grid = np.linspace(0, top, 200)
    b.plot(grid, toy.closed_form(grid), "C3", label="toy model, eq. 3 closed form")
    b.plot(grid, grid, color="grey", lw=0.8, ls=":", label="end = init")
    names = list(toy.init)
    b.plot([toy.init[n] for n in names],
           [float((toy.sampled[n] ** 2).mean().sqrt()) for n in names], "C3o", mfc="none",
           label=f"toy model, Monte Carlo ({runs.TOY_SAMPLES} draws)")
    b.plot([d.init[n] for n in names], [d.end[n] for n in names], "kx",
           label=f"{d.world.params.world}: DiffPure measured")
    b.set_xlabel("init l2 to the clean image")
    b.set_ylabel("end l2 to the clean image")
    b.set_title(f"(b) the Gaussian toy model, d = {len(toy.data_var)}, t* = {toy.t_star}",
                fontsize=10)
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def floor_table(d: Distances) -> Table:
    """The purifier's floor (the end l2 of the smallest uniform noise) over each attack's init
    l2, beside its end / init: ours, and the paper's from Table S2 where it has the rows."""
    attacks = d.world.params.attacks
    ref_l2 = {n: {col: v[0] for col, v in cols.items()} for n, cols in d.paper["l2"].items()}
    paper_uniform = sorted((n for n in ref_l2 if n.startswith("uniform_")),
                           key=lambda n: float(n[8:]))
    ours = analysis.floor_ratios(d.init, d.end, d.smallest, attacks)
    parts = {f"ours (floor: {_label(d.smallest)}, l2 {d.end[d.smallest]:.3f})":
             pd.DataFrame(ours).T}
    if paper_uniform and all(a in ref_l2 for a in attacks):
        theirs = analysis.floor_ratios({n: r["init"] for n, r in ref_l2.items()},
                                       {n: r["end"] for n, r in ref_l2.items()},
                                       paper_uniform[0], attacks)
        parts[f"{d.paper_label} (floor: {_label(paper_uniform[0])}, l2 "
              f"{ref_l2[paper_uniform[0]]['end']})"] = pd.DataFrame(theirs).T
    return Table(pd.concat(parts, axis=1).round(3), "tbl-distances-floor", "The purifier's floor "
                 "against each attack's length: floor / init beside end / init, ours and from the "
                 "paper's Table S2.")


def _scrubber(curves: Curves, clean: Tensor, max_views: int = 21) -> widgets.VBox:
    """A slider over purification steps: the states of the kept images and their distances.

    ``clean`` (k, C, H, W) are the kept images' clean versions. At most
    ``max_views`` steps (evenly spaced, first and last included) are precomputed,
    so the widget works in the static book (``figures.slider_stack``).
    """
    n_states, k = curves.states.shape[:2]
    steps = sorted({int(round(s)) for s in np.linspace(0, n_states - 1, min(max_views, n_states))})
    m2 = curves.l2.double().mean(1).numpy()
    views, labels = [], []
    for s in steps:
        fig = plt.figure(figsize=(1.2 * k + 3.6, 2.4))
        grid = fig.add_gridspec(2, k + 1, width_ratios=[1] * k + [3])
        for j in range(k):
            show_image(fig.add_subplot(grid[0, j]), clean[j])
            ax = fig.add_subplot(grid[1, j])
            show_image(ax, curves.states[s, j])
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


def scrubber(d: Distances) -> widgets.VBox:
    """DiffPure's states for the first test images of the strongest attack (the last in
    ``attacks``; uniform noise of the attack's size when none), step by step."""
    p = d.world.params
    show = p.attacks[-1] if p.attacks else f"uniform_{p.eps_255:g}"
    curves = d.measured.curves[show]
    return _scrubber(curves, d.world.images[:curves.states.shape[1]])


@dataclass
class Samplers:
    """Table S5 on ``attack``'s examples: each sampler's purified images (``after``), the
    before -> after means of l2, l_inf and SSIM, the paper's, and uniform noise's SSIM."""

    distances: Distances
    attack: str
    after: dict[str, Tensor]
    before_after: dict[str, dict[str, tuple[float, float]]]
    paper: dict[str, Any]
    uniform_ssim: float


def samplers(d: Distances) -> Samplers:
    """Every sampler on the PGD-EOT examples (or the last configured attack, or uniform noise
    of the attack's size), as in Table S5; prints which examples when not PGD-EOT."""
    p, world, inputs = d.world.params, d.world, d.measured.inputs
    u = f"uniform_{p.eps_255:g}"
    attack = "pgd-eot" if "pgd-eot" in p.attacks else (p.attacks[-1] if p.attacks else u)
    if attack != "pgd-eot":
        print(f"pgd-eot is not among this world's attacks: Table S5 uses {attack}.")
    after = runs.by_samplers(world, inputs[attack])
    s5 = analysis.before_after(world.images, inputs[attack], after)
    uniform_ssim = analysis.ssim(inputs[u], world.images).mean().item()
    return Samplers(d, attack, after, s5, d.paper.get("sampling", {}), uniform_ssim)


def samplers_table(s: Samplers) -> Table:
    """Table S5: l2, l_inf and SSIM before -> after each sampler, ours beside the paper's."""
    s5, ref, label = s.before_after, s.paper, s.distances.paper_label
    rows = {}
    for m in PURIFIERS:
        row = {f"ours {q}": f"{s5['before'][q][0]:.3f} -> {s5[m][q][0]:.3f}"
               for q in ("l2", "linf", "ssim")}
        if m in ref:
            row.update({f"{label} {q}": f"{ref['before'][q]:.3f} -> {ref[m][q]:.3f}"
                        for q in ("l2", "linf", "ssim")})
        rows[m] = row
    return Table(pd.DataFrame(rows).T, "tbl-distances-samplers", f"Distance and SSIM to the "
                 f"clean image before -> after each sampler, on the {s.attack} examples; "
                 f"reproduces the paper's Table S5.")


def sampler_claims(s: Samplers) -> Table:
    """Sec. 3.1's claims on the samplers and SSIM, judged per image on Table S5's purifications;
    prints the SSIM of the examples, of uniform noise and after DiffPure, with the paper's."""
    world = s.distances.world
    s5, ref, x = s.before_after, s.paper, s.distances.measured.inputs[s.attack]
    print(f"SSIM to the clean image: {s.attack} {s5['before']['ssim'][0]:.3f}, uniform noise "
          f"of the same size {s.uniform_ssim:.3f}, DiffPure-purified {s5['ddpm']['ssim'][0]:.3f}"
          + (f"  (paper: {ref['before']['ssim']}, {ref['uniform_ssim']}, {ref['ddpm']['ssim']})"
             if ref else ""))
    before_l2 = analysis.l2(x, world.images)
    before_ssim = analysis.ssim(x, world.images)
    rows = [
        claims.record(s.distances.book, "sec31", "samplers_push_away",
                      {m: verdicts.ratio_of_means(analysis.l2(s.after[m], world.images), before_l2)
                       for m in PURIFIERS}),
        claims.record(s.distances.book, "sec31", "ssim_falls",
                      {m: verdicts.paired_difference(before_ssim,
                                                     analysis.ssim(s.after[m], world.images))
                       for m in PURIFIERS}),
    ]
    return Table(claims.frame(rows), "tbl-distances-sampler-claims", "Sec. 3.1's claims on "
                 "samplers and SSIM judged (criteria from the paper's sec. 3.1 and Table S5, in "
                 "paper_data/sec31.yaml).")


def distances_said(d: Distances, s: Samplers) -> dict[str, str]:
    """The numbers of chapter 02's "What it says here": end / init l2 of the inputs of the
    attack's size, the purifier's floor and its input, and SSIM before -> after DiffPure."""
    s5 = s.before_after
    return {"dist_ratios": ", ".join(f"{_label(n)} {d.end[n] / d.init[n]:.2f}"
                                     for n in d.measured.same_size),
            "dist_floor": f"{d.end[d.smallest]:.3f}",
            "dist_floor_name": _label(d.smallest),
            "dist_ssim": f"{s5['before']['ssim'][0]:.3f} -> {s5['ddpm']['ssim'][0]:.3f}"}
