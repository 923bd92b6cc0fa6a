"""What chapter 03 shows (sec. 3.2): the correlations of the purified directions and the
distances to the centroid under each way of varying the purification (Fig. 2a/b/f), beside
the paper's numbers, the claim rows and the glued numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import claims, verdicts
from ..figures import Table
from ..params import Params
from . import runs
from .analysis import Randomness
from .report import paper_numbers


# The table's and histogram's rows, in the order sec. 3.2 discusses them.
ORDER = ["fixed input", "fixed seed", "both vary", "perturbation"]


@dataclass
class Seeds:
    """Sec. 3.2 on a world (:func:`runs.seeds_against_inputs`): the ball of
    ``randomness_eps_255`` (``r``) and, where the attack's radius differs, its fixed-seed
    repeat at that radius (``wide``), with the paper's numbers."""

    p: Params
    r: Randomness
    wide: Randomness | None
    paper: dict[str, Any]
    paper_label: str


def randomness(world) -> Seeds:
    """The three ways of varying the purification (:func:`runs.seeds_against_inputs`)."""
    r, wide = runs.seeds_against_inputs(world)
    paper, label = paper_numbers(world.params, "sec32")
    return Seeds(world.params, r, wide, paper, label)


def correlation_table(s: Seeds) -> Table:
    """Mean (and std over images) correlation of the purified directions per condition, beside
    the paper's 0.2368 and 0.9954 (Fig. 2a/b)."""
    p, r, ref = s.p, s.r, s.paper["correlation"]
    ball = p.randomness_eps_255
    rows = {c: {"ball (1/255)": "" if c == "fixed input" else f"{ball:g}",
                "draws": p.n_seeds if c == "fixed input" else p.n_neighbours,
                "ours: mean correlation": round(r.correlation[c].mean(), 4),
                "ours: std over images": round(r.correlation[c].std(), 4),
                f"{s.paper_label} (ball {s.paper['eps_255']}/255)": ref.get(c, "")}
            for c in ORDER}
    if s.wide is not None:
        rows["fixed seed, attack radius"] = {
            "ball (1/255)": f"{p.eps_255:g}", "draws": p.n_neighbours,
            "ours: mean correlation": round(s.wide.correlation["fixed seed"].mean(), 4),
            "ours: std over images": round(s.wide.correlation["fixed seed"].std(), 4)}
    return Table(pd.DataFrame(rows).T.fillna(""), "tbl-randomness-corr", "Mean correlation of "
                 "the purified directions under each way of varying the purification; reproduces "
                 "the numbers of the paper's Fig. 2a/b and sec. 3.2.")


def correlation_figure(s: Seeds) -> Figure:
    """Fig. 2a/b: the correlation matrices of the first image's purified directions."""
    r = s.r
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, c in zip(axes, ["fixed seed", "fixed input", "both vary"]):
        im = ax.imshow(r.example[c], vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(f"{c}: mean {r.correlation[c][0]:.3f}")
        ax.set_xlabel("draw")
        ax.set_ylabel("draw")
    fig.colorbar(im, ax=axes, shrink=0.8, label="correlation")
    return fig


def centroid_figure(s: Seeds) -> Figure:
    """Fig. 2f: each output's l2 distance to its image's centroid, pooled over the images."""
    r = s.r
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bins = np.linspace(0, max(v.max() for v in r.centroid.values()) * 1.05, 40)
    for c in ORDER:
        ax.hist(r.centroid[c].ravel(), bins=bins, alpha=0.5, label=c)
    ax.set_xlabel("l2 distance to the centroid")
    ax.set_ylabel("count")
    ax.legend()
    return fig


def centroid_table(s: Seeds) -> Table:
    """The means of Fig. 2f: mean l2 to the centroid per condition."""
    spread = {c: float(s.r.centroid[c].mean()) for c in ORDER}
    return Table(pd.Series(spread, name="mean l2 to centroid").round(4).to_frame(),
                 "tbl-randomness-centroid", "Mean distance to the centroid under each way of "
                 "varying the purification (the means of the paper's Fig. 2f).")


def randomness_claims(s: Seeds) -> Table:
    """Sec. 3.2's claims (criteria and sources in paper_data/sec32.yaml), with bootstrap
    intervals over the images: each image's mean correlation, and each image's mean distance
    to its centroid, paired."""
    r = s.r
    per_image = {c: r.centroid[c].mean(0) for c in ORDER}
    rows = [
        claims.record(s.p, "sec32", "seeds_weakly_correlated",
                      verdicts.mean(r.correlation["fixed input"])),
        claims.record(s.p, "sec32", "inputs_almost_identical",
                      verdicts.mean(r.correlation["fixed seed"])),
        claims.record(s.p, "sec32", "centroid_spread", {
            "perturbation - fixed seed": verdicts.paired_difference(per_image["perturbation"],
                                                                    per_image["fixed seed"]),
            "fixed input - perturbation": verdicts.paired_difference(per_image["fixed input"],
                                                                     per_image["perturbation"]),
            "both vary - perturbation": verdicts.paired_difference(per_image["both vary"],
                                                                   per_image["perturbation"])}),
    ]
    return Table(claims.frame(rows), "tbl-randomness-claims", "Sec. 3.2's claims judged "
                 "(criteria from the paper's sec. 3.2 and Fig. 2, in paper_data/sec32.yaml).")


def randomness_said(s: Seeds) -> dict[str, str]:
    """The numbers of chapter 03's "What it says here": the mean correlations across seeds and
    across inputs."""
    return {"rand_seeds": f"{s.r.correlation['fixed input'].mean():.4f}",
            "rand_inputs": f"{s.r.correlation['fixed seed'].mean():.4f}"}
