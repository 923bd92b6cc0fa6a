"""What chapter 01 shows (sec. 2, Appendix B): this world beside the paper's setting, its
first test images, clean accuracy bare and purified beside Tables 1-2, the set-up's claim
rows, and Fig. S3's clean, perturbed and purified images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import claims, verdicts
from ..figures import Table, image_grid
from ..params import PURIFIERS, Params
from . import analysis, analysis_regime, runs, runs_regime


def world_table(world) -> Table:
    """The data set, the two models, the purification depth and the attack radius, beside the
    paper's (sec. 2, Appendix B, Table S1)."""
    p = world.params
    paper_world = claims.paper_world("setup", p.world)
    pw = claims.paper("setup")[paper_world]
    t_star = world.purifier().t_star
    size = lambda m: (f"{getattr(m, 'model_name', type(m).__name__)}, "
                      f"{analysis.n_parameters(m):,} parameters")
    facts = pd.DataFrame({
        "ours": [p.world, len(world.images), "x".join(map(str, world.image_shape)),
                 size(world.classifier), size(world.diffusion),
                 len(world.scheduler.alphas_cumprod), t_star,
                 f"{analysis.alpha_bar(world.scheduler.alphas_cumprod, t_star):.4f}",
                 f"{p.eps_255:g}/255", p.batch_size],
        f"paper ({paper_world})": [
            paper_world, pw["n_images"], pw["image_shape"], pw["classifier"], pw["diffusion"],
            pw["diffusion_steps"], pw["t_star"], f"{pw['alpha_bar_t_star']:.4f}",
            f"{pw['eps_255']}/255", pw["batch_size"]],
    }, index=["world", "test images", "image shape (C x H x W)", "classifier",
              "diffusion model", "diffusion training steps T", "t*", "alpha_bar(t*)",
              "attack eps (l_inf)", "batch size (eq. 9's batch)"])
    return Table(facts, "tbl-setup-world", "This world beside the paper's setting (the paper's "
                 "sec. 2, Appendix B and Table S1).")


@dataclass
class Regime:
    """A world's regime numbers (:func:`.runs_regime.measure`) with the parameters they judge."""

    p: Params
    measures: analysis_regime.Measures


def regime_measures(world) -> Regime:
    """The numbers of the paper's regime rule on this world (``paper_data/setup.yaml``,
    ``regime:``; :func:`.runs_regime.measure`)."""
    return Regime(world.params, runs_regime.measure(world))


def regime_table(r: Regime) -> Table:
    """Each ratio of the paper's CIFAR-10 setting beside this world's, its band, and the
    parameter the rule derives (Table S1, Table S2, sec. 5; :func:`.analysis_regime.table`)."""
    return Table(analysis_regime.table(r.measures, r.p), "tbl-setup-regime", "The paper's regime: "
                 "each ratio of the paper's Table S1, Table S2 and sec. 5 (CIFAR-10) beside this "
                 "world's at its parameters, and the parameter the rule of "
                 "paper_data/setup.yaml derives from this world's models.")


def regime_text(r: Regime) -> str:
    """Which of the rule's parameters this world's file follows, and which ratio gives way."""
    derived = analysis_regime.derive(r.measures)
    given = {"t_star": r.p.t_star, "eps_255": r.p.eps_255,
             "distances_eps_255": r.p.sec31_eps_255,
             "cap_radius": r.p.cap_radius}
    off = [f"`{k}` {given[k]:g} (the rule: {v:.3g})" for k, v in derived.items()
           if not math.isclose(given[k], v, rel_tol=0.05)]
    gives_way = derived["distances_eps_255"] != derived["eps_255"]   # from the measures
    return ("The parameters follow the rule" if not off else
            "The parameters differ from the rule in " + ", ".join(off)) + (
        ". No eps of the grid both breaks the bare classifier and keeps the paper's distance "
        "ratio, so the ratio gives way for the attacks of secs. 4-6, and sec. 3.1 runs at the "
        f"ratio's own eps, {derived['distances_eps_255']:g}/255." if gives_way else ".")


def images_figure(world, k: int = 10) -> Figure:
    """The first ``k`` test images with their labels (the paper shows CIFAR-10's in Fig. S3)."""
    k = min(k, len(world.images))
    fig = image_grid({"clean": world.images[:k]})
    fig.suptitle("first test images, labels " + " ".join(str(int(y)) for y in world.labels[:k]),
                 fontsize="small")
    return fig


@dataclass
class Accuracy:
    """Per test image, whether the bare classifier is right and in what fraction of the r runs
    each purified one is (:func:`runs.clean_correct`), with the parameters and the world the
    paper's numbers are of (this one, or CIFAR-10)."""

    p: Params
    correct: dict[str, np.ndarray]
    paper_world: str

    @property
    def paper(self) -> dict[str, Any]:
        return claims.paper("setup")[self.paper_world]


def accuracy(world) -> Accuracy:
    """Clean accuracy, bare and behind each purifier (:func:`runs.clean_correct`)."""
    return Accuracy(world.params, runs.clean_correct(world), claims.paper_world("setup", world.params.world))


def _paper_accuracy(paper: dict[str, Any], method: str) -> str:
    row = paper["purified_clean_accuracy"].get(method)
    if row is None:
        return "n/a"
    return f"{row['value']:.2f}" + (f" ± {row['std']:.2f}" if "std" in row else "")


def _with_interval(e: verdicts.Estimate) -> str:
    return f"{100 * e.value:.2f} [{100 * e.lo:.1f}, {100 * e.hi:.1f}]"


def accuracy_table(a: Accuracy) -> Table:
    """Clean accuracy with its 95 % interval, bare (Wilson) and purified (the mean over the
    images of each image's accuracy over the r runs, bootstrap), beside the paper's (Tables 1
    and 2, clean rows: mean over r = 100 runs; the other samplers from the review thread)."""
    c = a.correct
    frame = pd.DataFrame(
        {"ours (%) [95 % interval]": [_with_interval(verdicts.proportion(c["bare"] > 0))]
         + [_with_interval(verdicts.mean(c[m])) for m in PURIFIERS],
         f"paper ({a.paper_world}) (%)": [f"{a.paper['classifier_clean_accuracy']:.2f}"]
         + [_paper_accuracy(a.paper, m) for m in PURIFIERS]},
        index=["bare classifier"] + [f"purified: {m}" for m in PURIFIERS])
    return Table(frame, "tbl-setup-accuracy", "Clean accuracy, bare and purified, beside the "
                 "paper's (the paper's Table 1 and Table 2, clean rows; the other samplers from "
                 "its review thread).")


def claims_table(a: Accuracy) -> Table:
    """The set-up's claims (criteria in paper_data/setup.yaml): DiffPure's cost in clean
    accuracy, bare minus DiffPure on the same images, and every pair of samplers' difference
    in clean accuracy (App. C.2's "comparable"), each a paired bootstrap over the images of
    the per-image accuracies over the r runs (Table 1's clean row is such a mean)."""
    c = a.correct
    rows = [claims.record(a.p, "setup", "purification_costs_accuracy",
                          verdicts.paired_difference(c["bare"], c["ddpm"])),
            claims.record(a.p, "setup", "samplers_comparable",
                          {f"{m} - {n}": verdicts.paired_difference(c[m], c[n])
                           for m, n in analysis.pairs(PURIFIERS)})]
    return Table(claims.frame(rows), "tbl-setup-claims", "The set-up's claims judged (criteria "
                 "from the paper's sec. 2 and Appendix C.2, in paper_data/setup.yaml), with each "
                 "claim's minimum detectable effect (MDE) and the n that would detect the "
                 "paper's effect.")


def purified_figure(world, k: int = 6) -> Figure:
    """Fig. S3 on the first ``k`` test images: clean, with uniform noise of the attack's eps,
    DiffPure's intermediate states, and each sampler's purified images."""
    p = world.params
    k = min(k, len(world.images))
    ex = runs.purification_examples(world, k)
    rows = {"clean": world.images[:k], f"uniform {p.eps_255:g}/255": ex.perturbed}
    rows.update({f"ddpm step {s}": states for s, states in ex.states.items()})
    rows.update({f"purified: {m}": x for m, x in ex.purified.items()})
    return image_grid(rows)


def setup_said(a: Accuracy) -> dict[str, str]:
    """The numbers of chapter 01's "What it says here": the bare, DiffPure's and every
    sampler's clean accuracy."""
    acc = {m: a.correct[m].mean() for m in ["bare", *PURIFIERS]}
    return {"setup_bare": f"{100 * acc['bare']:.1f} %",
            "setup_ddpm": f"{100 * acc['ddpm']:.1f} %",
            "setup_samplers": ", ".join(f"{m} {100 * acc[m]:.1f} %" for m in PURIFIERS)}
