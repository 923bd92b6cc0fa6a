"""What chapter 5 shows (sec. 5, appendix A): its tables, figures, glue text and claim rows.

:func:`slices` runs the slices of Fig. 4b, c and their psychometric fits (eq. 8) once; every
other function turns that into one table or figure of the chapter, ours beside the paper's
numbers (``paper_data/sec5.yaml``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from ipywidgets import VBox
from matplotlib.figure import Figure
from scipy.special import expit

from .. import claims, figures, verdicts
from ..figures import Table
from . import analysis, runs
from .analysis import Fits
from .runs import Slices

C_GRID = (0.1, 1.0, 10.0, 100.0)   # the regularisers of the sensitivity table
SWEEP_IMAGES = 16                   # sliced images of the radius sweep and the logit ranges
BROWSER_IMAGES = 24                 # views of the slice browser
MONTE_CARLO_POINTS = 200_000        # points of the Monte-Carlo check of eq. 7


@dataclass
class Sliced:
    """The chapter's slices on ``world``: adversarial + random (``random``, Fig. 4b) and two
    adversarial directions (``adversarial``, Fig. 4c), their fits (eq. 8) at ``cap_fit_c``,
    the ceiling of the first (:func:`.analysis.sharp_slope`), its fit-free 10-90 % transition
    widths over each slice's attack length (``width``, :func:`.analysis.transition_width`),
    the number of correctly classified test images, the dimension d and the paper's sec. 5
    numbers."""

    world: Any
    random: Slices
    adversarial: Slices
    fits: Fits
    fits2: Fits
    ceiling: np.ndarray
    width: np.ndarray
    n_correct: int
    d: int
    paper: dict[str, Any]

    @property
    def thresholds(self) -> np.ndarray:
        """The fitted thresholds x0 of the slices with a boundary (adversarial + random)."""
        return self.fits.threshold[self.fits.boundary]

    @property
    def width_bar(self) -> float:
        """Sec. 5's "slope larger than 6" as a 10-90 % width (eq. 8: 2 ln 9 / 6 = 0.732 l2
        units, i.e. attack lengths, the typical length being about 1 there)."""
        return analysis.logistic_width(self.paper["slope"]["most_above"])

    @property
    def radius_per_length(self) -> float:
        """Sec. 5's slice radius over the typical attack length (3.0 / 1.0)."""
        return self.paper["cap_radius"] / self.paper["typical_attack_l2"]

    @property
    def rule_radius(self) -> float:
        """Sec. 5's radius rule at this world: 3 x the median attack length."""
        return analysis.rule_radius(self.random.attack_length, self.radius_per_length)

    @property
    def example(self) -> int:
        """The slice the figures show: the first with a boundary (else the first)."""
        return int(np.flatnonzero(self.fits.boundary)[0]) if self.fits.boundary.any() else 0

    @property
    def eps_l2(self) -> float:
        """The l2 threat radius of the Linf ball (:func:`.analysis.linf_ball_l2_radius`)."""
        return analysis.linf_ball_l2_radius(self.world.params.eps, self.d)


def slices(world) -> Sliced:
    """Slice ``world``'s classifier both ways (:func:`.runs.slice_world`) and fit eq. 8."""
    p = world.params
    s, s2 = runs.slice_world(world, "random"), runs.slice_world(world, "adversarial")
    fits = analysis.fit_psychometric(s.projection, s.adversarial, C=p.cap_fit_c)
    fits2 = analysis.fit_psychometric(s2.projection, s2.adversarial, C=p.cap_fit_c)
    ceiling = analysis.sharp_slope(s.projection, fits.threshold, C=p.cap_fit_c)
    width = analysis.transition_width(s.projection, s.adversarial) / s.attack_length
    return Sliced(world, s, s2, fits, fits2, ceiling, width, len(runs.correct(world)),
                  math.prod(world.image_shape), claims.paper("sec5")["cifar10"])


def setting(r: Sliced) -> str:
    """One line: the world, d, the images sliced, the disc and the attack."""
    p = r.world.params
    return (f"{p.world}: d = {r.d}, {len(r.world.images)} test images, {r.n_correct} classified "
            f"correctly, {len(r.random.index)} sliced; {p.cap_points} points per slice within "
            f"l2 radius R = {p.cap_radius:g}; adversarial directions from PGD, Linf eps = "
            f"{p.eps_255:g}/255, {p.attack_steps} steps")


def _three_digits(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.map(lambda v: f"{v:.3g}" if isinstance(v, float) else v)


def radius_table(r: Sliced) -> Table:
    """The disc radius against the attack's length and the fitted thresholds, ours beside
    the paper's R = 3 and "typical length ... about 1" (sec. 5), and the radius by the
    paper's rule (3 x the attack length) beside the one used (``cap_radius``)."""
    p, paper, s, fits = r.world.params, r.paper, r.random, r.fits
    frame = pd.DataFrame({
        "paper (CIFAR-10)": [paper["cap_radius"], paper["cap_radius"],
                             paper["typical_attack_l2"], "-",
                             paper["cap_radius"] / paper["typical_attack_l2"], "-"],
        "ours": [p.cap_radius, r.rule_radius, np.median(s.attack_length),
                 np.median(r.thresholds), p.cap_radius / np.median(s.attack_length),
                 f"{fits.n_without_boundary} of {len(fits.slope)}"],
    }, index=["disc radius R (used: cap_radius)",
              f"R by sec. 5's rule ({r.radius_per_length:g} x the attack length)",
              "median l2 length of the PGD perturbation",
              "median threshold x0 (boundary along u)", "R / attack length",
              "slices without a boundary in the disc"])
    return Table(_three_digits(frame), "tbl-cap-radius", "The slice disc's radius against the "
                 "attack's length, ours beside the paper's (the slices of the paper's Fig. 4b/c; "
                 "its sec. 5).")


def _at_radius(world, radius: float) -> dict[str, float]:
    p = world.params
    s = runs.slice_world(world, "random", n_images=min(SWEEP_IMAGES, p.cap_images),
                         radius=radius)
    fits = analysis.fit_psychometric(s.projection, s.adversarial, C=p.cap_fit_c)
    summary = analysis.slope_summary(fits, analysis.sharp_slope(s.projection, fits.threshold,
                                                                C=p.cap_fit_c))
    width = analysis.transition_width(s.projection, s.adversarial) / s.attack_length
    return {"mean slope": summary["mean slope"], "median sharpness": summary["median sharpness"],
            "median 10-90 % width / attack length": np.nanmedian(width)
            if np.isfinite(width).any() else np.nan,
            "without boundary": summary["without boundary"],
            "adversarial share, far half (projection < 0)":
                s.adversarial[:, s.projection < 0].mean(),
            "adversarial share, near half": s.adversarial[:, s.projection >= 0].mean()}


def radius_sweep(r: Sliced) -> Table:
    """The slopes, widths and adversarial shares of the first sliced images at 0.75, 1 and 1.5
    times ``cap_radius`` and at sec. 5's rule radius (each its own stored slices)."""
    R, rule = r.world.params.cap_radius, round(r.rule_radius, 3)
    rows = {f"R = {radius:g}" + (" (sec. 5's rule)" if radius == rule else ""):
            _at_radius(r.world, radius) for radius in sorted({0.75 * R, R, 1.5 * R, rule})}
    return Table(pd.DataFrame(rows).T.round(3), "tbl-cap-radii", "How the disc's radius changes "
                 "the slopes and the adversarial shares (no table of the paper).")


def plot_slice(ax, slices: Slices, i: int, fits: Fits | None = None,
               class_names: list[str] | None = None) -> None:
    """Fig. 4b / 4c: slice ``i``, each point coloured by the classifier's decision.

    The clean image is the origin; the x axis is the adversarial direction; a
    dashed line marks the fitted threshold x0 (if ``fits``).
    """
    pts, pred = slices.points, slices.predictions[i]
    cmap = plt.get_cmap("tab10")
    for c in np.unique(pred):
        m = pred == c
        name = class_names[c] if class_names else str(c)
        tag = " (label)" if c == slices.labels[i] else ""
        ax.scatter(pts[m, 0], pts[m, 1], s=6, color=cmap(c % 10), label=f"{name}{tag}")
    if fits is not None and np.isfinite(fits.threshold[i]):
        ax.axvline(fits.threshold[i], color="k", ls="--", lw=1, label="threshold x0")
    ax.plot([0], [0], "k+", ms=12)
    ax.set_aspect("equal")
    ax.set_xlabel("adversarial direction (l2)")
    second = "second adversarial" if slices.second == "adversarial" else slices.second
    ax.set_ylabel(f"{second} direction (l2)")
    ax.legend(fontsize=7, loc="upper left", markerscale=2, framealpha=0.8)


def plot_psychometric(ax, slices: Slices, i: int, fits: Fits) -> None:
    """Fig. 4d: decisions (adversarial = 1) against the projection, and the fitted sigmoid."""
    x, y = slices.projection, slices.adversarial[i]
    ax.plot(x, y + np.linspace(-0.03, 0.03, len(x)), ".", ms=2, alpha=0.4, color="C0")
    if fits.boundary[i]:
        grid = np.linspace(-slices.radius, slices.radius, 200)
        ax.plot(grid, expit(fits.slope[i] * (grid - fits.threshold[i])), "C3",
                label=f"k = {fits.slope[i]:.2f}, x0 = {fits.threshold[i]:.2f}")
        ax.legend(fontsize=8, loc="center left")
    else:
        ax.set_title("no boundary in the disc", fontsize=9)
    ax.set_xlabel("projection on the adversarial direction (l2)")
    ax.set_ylabel("adversarial")


def slice_figure(slices: Slices, i: int, fits: Fits, class_names: list[str] | None = None
                 ) -> Figure:
    """Slice ``i`` and its psychometric fit side by side (one view of the slice browser)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    plot_slice(a, slices, i, fits, class_names)
    plot_psychometric(b, slices, i, fits)
    fig.suptitle(f"test image {slices.index[i]} (label {slices.labels[i]})", fontsize=10)
    fig.tight_layout()
    return fig


def slices_figure(r: Sliced) -> Figure:
    """Fig. 4b and 4c: the example slice through a random and through a second adversarial
    direction."""
    names = r.world.class_names
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    plot_slice(axes[0], r.random, r.example, r.fits, names)
    plot_slice(axes[1], r.adversarial, r.example, r.fits2, names)
    axes[0].set_title("(b) adversarial and random direction", fontsize=10)
    axes[1].set_title("(c) two adversarial directions", fontsize=10)
    fig.tight_layout()
    return fig


def slice_browser(r: Sliced) -> VBox:
    """A slider over the first sliced images (up to 24): each one's slice and fit."""
    s = r.random
    views = [slice_figure(s, i, r.fits, r.world.class_names)
             for i in range(min(BROWSER_IMAGES, len(s.index)))]
    return figures.slider_stack(views, "slice", labels=[f"image {j}" for j in s.index[:len(views)]])


def psychometric_figure(r: Sliced) -> Figure:
    """Fig. 4d-f: the example's fit, the slopes beside their ceilings, and the fits aligned
    at their thresholds and averaged (:func:`.analysis.aligned_curve`)."""
    s, fits, ceiling = r.random, r.fits, r.ceiling
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    plot_psychometric(axes[0], s, r.example, fits)
    axes[0].set_title("(d) one slice", fontsize=10)
    k = fits.slope[fits.boundary]
    bins = np.linspace(0, np.nanmax(np.r_[fits.slope, ceiling, 8.0]) * 1.02, 30)
    axes[1].hist(k, bins=bins, color="C0", alpha=0.8, label="fitted slope k")
    axes[1].hist(ceiling[fits.boundary], bins=bins, histtype="step", color="k",
                 label="ceiling (ideal step)")
    axes[1].axvline(r.paper["slope"]["most_above"], color="C3", ls=":", label="paper: most > 6")
    axes[1].set_xlabel("slope k")
    axes[1].set_ylabel("slices")
    axes[1].legend(fontsize=8)
    axes[1].set_title("(e) slopes", fontsize=10)
    R = r.world.params.cap_radius
    grid = np.linspace(-R / 2, R / 2, 41)
    fitted, empirical = analysis.aligned_curve(s.projection, s.adversarial, fits, grid)
    axes[2].plot(grid, fitted, "C3", label="mean of the fitted sigmoids")
    axes[2].plot(grid, empirical, "k.", label="fraction adversarial (data)")
    axes[2].set_xlabel("projection - threshold x0 (l2)")
    axes[2].set_ylabel("P(adversarial)")
    axes[2].legend(fontsize=8)
    axes[2].set_title("(f) aligned at the threshold and averaged", fontsize=10)
    fig.tight_layout()
    return fig


def slope_table(r: Sliced) -> Table:
    """Fig. 4e in numbers (:func:`.analysis.slope_summary`), a row per measure: ours for both
    kinds of slice beside the review thread's mean ± std."""
    paper = r.paper["slope"]
    bar = r.width_bar
    width = r.width[r.fits.boundary]
    ours = {**analysis.slope_summary(r.fits, r.ceiling, above=paper["most_above"]),
            "median 10-90 % width / attack length": np.nanmedian(width)
            if np.isfinite(width).any() else np.nan,
            f"fraction width < {bar:.3g} attack lengths": (width < bar).mean()
            if len(width) else np.nan}
    ours2 = analysis.slope_summary(r.fits2, above=paper["most_above"])
    frame = pd.DataFrame({
        "paper (CIFAR-10, adv. + random)": {
            "slices": paper["n"], "mean slope": paper["mean"],
            "std slope": paper["std"], "fraction slope > 6": "most",
            "median 10-90 % width / attack length":
                f"{analysis.logistic_width(paper['mean']):.3g} (eq. 8 at the mean slope)",
            f"fraction width < {bar:.3g} attack lengths": "most (slope > 6)"},
        "ours (adv. + random)": ours, "ours (two adv.)": ours2})
    return Table(_three_digits(frame).replace("nan", "-"), "tbl-cap-slopes", "Psychometric "
                 "slopes, ours beside the paper's (the fits of the paper's Fig. 4d-f; its numbers "
                 "from the review thread).")


def sensitivity_table(r: Sliced) -> Table:
    """The slopes on the same slices under other regularisers C
    (:func:`.analysis.slope_sensitivity`), beside the fit-free width, which has no C."""
    s = r.random
    frame = pd.DataFrame(analysis.slope_sensitivity(s.projection, s.adversarial, C_GRID)).T
    width = r.width[r.fits.boundary]
    frame["median 10-90 % width / attack length (fit-free)"] = (
        np.nanmedian(width) if np.isfinite(width).any() else np.nan)
    return Table(frame.rename_axis("C").round(3), "tbl-cap-c", "The slopes on the same slices "
                 "under other regularisers C, beside the fit-free transition width (no table of "
                 "the paper).")


def slopes_text(r: Sliced) -> str:
    """The glued summary of the slopes: mean ± std (population), count, share above 6."""
    sharp = r.fits.slope[r.fits.boundary]
    if not len(sharp):
        return "no slice crosses the boundary"
    return (f"{sharp.mean():.2f} ± {sharp.std():.2f} over {len(sharp)} slices, "
            f"{(sharp > 6).mean():.0%} above 6")


def volume_table(r: Sliced) -> Table:
    """App. A.2 and A.3 at the fitted thresholds: alpha = x0 / eps_l2, the GAAS k, the cap's
    share (eq. 7) and its Monte-Carlo check (:func:`.analysis.monte_carlo_cap_share`)."""
    d, eps_l2, paper = r.d, r.eps_l2, r.paper
    thresholds = r.thresholds
    alpha = thresholds[thresholds > 0] / eps_l2
    gaas = analysis.gaas_k(alpha, d)
    volume = analysis.cap_volume_ratio(alpha, d)
    a_med = float(np.median(alpha)) if len(alpha) else 0.5
    monte_carlo = analysis.monte_carlo_cap_share(a_med, d, MONTE_CARLO_POINTS,
                                                 r.world.params.base_seed)
    frame = pd.DataFrame({
        "value": [d, np.median(alpha), np.median(gaas), np.median(volume),
                  analysis.cap_volume_ratio(a_med, d), monte_carlo,
                  analysis.cap_volume_ratio(a_med, paper["dimension"]),
                  paper["gaas_orthogonal_directions"]]},
        index=["d", f"median alpha = x0 / eps_l2 (eps_l2 = {eps_l2:.3g})", "median GAAS k (A.2)",
               "median cap share (eq. 7)",
               "eq. 7 at the median alpha", "Monte Carlo at the median alpha (200 000 points)",
               "eq. 7 at the median alpha, d = 3072 (CIFAR-10)",
               "Tramer et al. 2017: orthogonal directions (MNIST, DREBIN)"])
    return Table(frame.map(lambda v: f"{v:.3g}"), "tbl-cap-volume", "The GAAS count and the "
                 "cap's share of the ball at the fitted thresholds; the computation of the "
                 "paper's Appendix A.2 and A.3.")


def volume_figure(r: Sliced) -> Figure:
    """Eq. 7 against beta_bar for this world's d, CIFAR-10's and ImageNet's."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    beta = np.linspace(0, 1, 201)
    for dim in sorted({r.d, 3072, 3 * 224 * 224}):
        ax.semilogy(beta, np.maximum(analysis.cap_volume_ratio(beta, dim), 1e-300),
                    label=f"d = {dim}")
    ax.set_ylim(1e-30, 1)
    ax.set_xlabel("beta_bar = gamma / eps")
    ax.set_ylabel("V_cap / V_ball (eq. 7)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@dataclass
class Orthogonal:
    """App. A.2 per sliced image: the measured count (:func:`.runs.orthogonal_counts`, k up
    to ``max_k``, directions clipped to the Linf threat ball) and the formula's k at the
    fitted x0 (-1 where ``usable`` is False: no boundary or x0 <= 0); ``paper``: Tramer et
    al.'s (2017) count, measured on MNIST and DREBIN (the paper cites it in sec. 5)."""

    measured: np.ndarray
    formula: np.ndarray
    usable: np.ndarray
    max_k: int
    paper: int


def orthogonal(r: Sliced) -> Orthogonal:
    """Measure the orthogonal adversarial directions and compute A.2's k at every slice."""
    measured = runs.orthogonal_counts(r.world, r.random, r.eps_l2, r.world.params.eps)
    formula, usable = analysis.gaas_k_at_thresholds(r.fits.threshold, r.fits.boundary,
                                                    r.eps_l2, r.d)
    return Orthogonal(measured, formula, usable, r.world.params.gaas_max_k,
                      r.paper["gaas_orthogonal_directions"])


def gaas_table(g: Orthogonal) -> Table:
    """The measured counts beside A.2's formula and Tramer et al.'s 25 directions."""
    measured, formula, usable = g.measured, g.formula, g.usable
    frame = pd.DataFrame({
        "measured (GAAS construction)": [np.median(measured), np.mean(measured > 0),
                                         int(usable.sum())],
        "A.2 formula from the fitted x0": [np.median(formula[usable]) if usable.any() else "-",
                                           np.mean(formula[usable] > 0) if usable.any() else "-",
                                           int(usable.sum())],
        "Tramer et al. 2017 (MNIST, DREBIN)": [g.paper, "", ""]},
        index=[f"median number of orthogonal adversarial directions (k <= {g.max_k})",
               "fraction of images with at least one", "images with a fitted x0 > 0"])
    return Table(frame, "tbl-cap-gaas", "Orthogonal adversarial directions, measured and from "
                 "the formula of the paper's Appendix A.2.")


def print_agreement(g: Orthogonal) -> None:
    """Print the correlation of the measured and the formula's counts over the images with a
    fitted x0 > 0 (nan where either is constant); nothing when there is none."""
    if not g.usable.any():
        return
    measured, formula = g.measured[g.usable], g.formula[g.usable]
    agreement = np.corrcoef(measured, formula)[0, 1] \
        if np.std(measured) > 0 and np.std(formula) > 0 else float("nan")
    print(f"correlation of measured and formula counts over images: {agreement:.2f}")


def logit_ranges_table(r: Sliced) -> Table:
    """Definition 3 tested on the first 16 sliced images (:func:`.runs.logit_ranges`)."""
    r_adv, r_rand = runs.logit_ranges(r.world, r.random, r.eps_l2, SWEEP_IMAGES, SWEEP_IMAGES)
    ratio = analysis.logit_range_ratio(r_adv, r_rand)
    n = len(ratio)
    return Table(pd.DataFrame({"value": {
        "median over images of max_i r_i(adv) / E r_i(rand)": f"{ratio.median():.2f}",
        "images with a ratio above 1": f"{int((ratio > 1).sum())} of {n}",
        "median largest logit range, adversarial": f"{r_adv.amax(1).median():.3f}",
        "median largest logit range, random (mean of 16)": f"{r_rand.amax(1).median():.3f}"}}),
        "tbl-cap-logit-ranges", "Logit ranges along adversarial and random directions, the test "
        "of Definition 3 (no table of the paper).")


def claims_table(r: Sliced) -> Table:
    """Sec. 5's claims judged and recorded (criteria: ``paper_data/sec5.yaml``, the review
    thread's mean ± std and "most larger than 6"). Over the slices with a boundary: a
    bootstrap interval for the mean slope; a Wilson interval for the fraction whose fit-free
    10-90 % width is below slope 6's (:attr:`Sliced.width_bar` attack lengths; a width not
    reached inside the disc counts as not sharp)."""
    p = r.world.params
    slopes = r.fits.slope[r.fits.boundary]
    sharp = r.width[r.fits.boundary] < r.width_bar
    rows = [claims.record(p, "sec5", "mean_slope", verdicts.mean(slopes) if len(slopes) else None),
            claims.record(p, "sec5", "sharp_transitions",
                          verdicts.proportion(sharp) if len(slopes) else None)]
    return Table(claims.frame(rows), "tbl-cap-claims", "Sec. 5's claims judged (criteria from "
                 "the paper's sec. 5 and its review thread, in paper_data/sec5.yaml).")
