"""What chapter 6 shows (sec. 6): the neighbourhood and the compression rate (Fig. 5b), the
Jacobian's spectrum (Fig. 5c) and its matrix-free top, their cost at the paper's settings,
what decides robust from non-robust examples (Fig. 6) and the spectra of the two groups;
the tables beside the paper's numbers, the figures, the claim rows, and what stands in for
a result this world cannot give (the exact Jacobian beyond CIFAR-10's size, one class of
examples only).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown
from matplotlib.figure import Figure
from torch import Tensor

from .. import claims, params, plan, verdicts
from ..autodiff import EXACT_JACOBIAN_MAX_DIM
from ..figures import Table, text_figure
from ..params import Params
from . import runs
from .analysis import Neighbourhood, Spectrum, compare_spectra, spectrum_summary
from .analysis_boundary import roc


def paper() -> dict:
    """The paper's sec. 6 numbers (CIFAR-10, paper_data/sec6.yaml)."""
    return claims.paper("sec6")["cifar10"]


def mean_std(t: Tensor) -> str:
    """``mean ± sd`` (sample standard deviation) of ``t``; the mean alone for one value."""
    if len(t) > 1:
        return f"{t.double().mean():.3f} ± {t.double().std():.3f}"
    return f"{t.double().mean():.3f}" if len(t) else "none"


def mean_band(values: Tensor) -> tuple[Tensor, Tensor]:
    """Rank-by-rank mean and standard deviation of spectra stacked as (n, k) (0 for one)."""
    return values.mean(0), values.std(0) if len(values) > 1 else torch.zeros_like(values[0])


# --- the neighbourhood and the compression rate (Fig. 5b) ---------------------------------

def neighbourhood(world) -> Neighbourhood:
    """Fig. 5b's PCA spectra at the first test image (:func:`.runs.neighbourhood`)."""
    return runs.neighbourhood(world)


def neighbourhood_figure(p: Params, hood: Neighbourhood) -> Figure:
    """Fig. 5b: both spectra divided by the inputs' per-direction variance."""
    before, after = hood.normalised()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    k = np.arange(1, len(hood.before) + 1)
    ax.plot(k, before, "o-", ms=3, label="neighbourhood (input)")
    ax.plot(k, after, "o-", ms=3, label="after purification")
    ax.axhline(1, color="grey", lw=0.5)
    ax.set(xlabel="principal component", ylabel="variance / input per-direction variance",
           title=f"PCA of {p.pca_samples} points, Linf eps = {p.eps_255:g}/255 (cf. Fig. 5b)")
    ax.legend()
    return fig


def rates(world) -> Tensor:
    """Each Jacobian image's mean compression rate (:func:`.runs.compression_rates`)."""
    return runs.compression_rates(world).mean(1)


def rate_text(rates: Tensor) -> str:
    """The compression rate, mean over images, as the chapter's text quotes it."""
    return f"{rates.mean().item():.3f}"


def rate_table(rates: Tensor, hood: Neighbourhood) -> Table:
    """The compression rate over images and the PCA's largest purified variance, ours beside
    the paper's (sec. 6)."""
    after = hood.normalised()[1]
    frame = pd.DataFrame({
        "ours": [f"{mean_std(rates)} ({len(rates)} images)", f"{rates.median():.3f}",
                 f"{after.max():.3f}", f"{after.sqrt().max():.3f}"],
        "paper (cifar10)": [f"~{paper()['compression_rate']}", "", "", ""]},
        index=["compression rate, mean ± sd over images", "compression rate, median over images",
               "largest purified PCA variance / input per-direction variance (first image)",
               "its square root: largest compression factor of a direction (first image)"])
    return Table(frame, "tbl-compression-rate", "The compression rate of random perturbations, "
                 "ours beside the paper's (sec. 6 and the PCA of the paper's Fig. 5b).")


def rate_claims(p: Params, rates: Tensor) -> Table:
    """Sec. 6's compression-rate claim judged; interval: bootstrap over images."""
    rows = [claims.record(p, "sec6", "compression_rate", verdicts.mean(rates))]
    return Table(claims.frame(rows), "tbl-compression-rate-claim", "Sec. 6's compression-rate "
                 "claim judged (criterion from the paper's sec. 6, in paper_data/sec6.yaml).")


# --- the Jacobian and its spectrum (Fig. 5c) ----------------------------------------------

@dataclass(frozen=True)
class Spectra:
    """The exact Jacobian spectra of the world's Jacobian images (``None`` where the exact
    ``dim`` x ``dim`` Jacobian is out of reach: beyond CIFAR-10's size, as in the paper)."""

    dim: int
    exact: Spectrum | None


def spectra(world) -> Spectra:
    """:func:`.runs.jacobian_spectra` where ``dim`` <= :data:`EXACT_JACOBIAN_MAX_DIM`."""
    dim = int(np.prod(world.image_shape))
    return Spectra(dim, runs.jacobian_spectra(world) if dim <= EXACT_JACOBIAN_MAX_DIM else None)


def spectrum_figure(s: Spectra) -> Figure:
    """Fig. 5c: |eigenvalues| and singular values, mean ± sd over the images."""
    if s.exact is None:
        return text_figure(f"The exact {s.dim} x {s.dim} Jacobian is out of reach for this "
                           "world; the paper, too, computes it on CIFAR-10 only. The next "
                           "section estimates the top of its singular-value spectrum without "
                           "forming it.")
    eig, sv = s.exact.eigenvalues, s.exact.singular_values
    fig, ax = plt.subplots(figsize=(6, 3.5))
    r = np.arange(1, eig.shape[1] + 1)
    for values, name in ((eig, "|eigenvalue|"), (sv, "singular value")):
        m, sd = mean_band(values)
        ax.plot(r, m, label=name)
        ax.fill_between(r, (m - sd).clamp_min(0), m + sd, alpha=0.25)
    for level in (0.25, 1.0):
        ax.axhline(level, color="grey", ls=":", lw=0.8)
    ax.set(xlabel="rank", ylabel="magnitude", xscale="log",
           title=f"Jacobian spectrum, {len(eig)} images, {s.dim} dimensions (cf. Fig. 5c)")
    ax.legend()
    return fig


def spectrum_tables(p: Params, s: Spectra) -> list[Table]:
    """The spectrum summarised beside the paper's Fig. 5c (where it exists), and sec. 6's
    spectrum claims judged (not tested without the exact spectrum); intervals: bootstrap
    over the images."""
    names = ("top_eigenvalue", "eigenvalues_below_quarter")
    if s.exact is None:
        rows = [claims.record(p, "sec6", c, None) for c in names]
        return [_spectrum_claims(rows)]
    eig, sv = s.exact.eigenvalues, s.exact.singular_values
    small = (eig < 0.25).double().mean(1)        # per image: the share of |eigenvalues| < 0.25
    rows = [claims.record(p, "sec6", names[0], verdicts.mean(eig.max(1).values)),
            claims.record(p, "sec6", names[1], verdicts.mean(small))]
    return [_spectrum_table(s), _spectrum_claims(rows)]


def _spectrum_table(s: Spectra) -> Table:
    eig, sv, dim = s.exact.eigenvalues, s.exact.singular_values, s.dim
    se, ss = spectrum_summary(eig), spectrum_summary(sv)
    pj = paper()["jacobian"]
    below_paper, above_paper = pj["below_0.25"] / pj["dim"], pj["above_1"] / pj["dim"]
    linear_rate = sv.pow(2).mean(1).sqrt()
    frame = pd.DataFrame({
        "ours, |eigenvalues|": [f"{se['top_mean']:.3f} ± {se['top_std']:.3f}",
                                f"{se['below_low']:.1f} of {dim} ({se['below_low'] / dim:.1%})",
                                f"{se['above_high']:.1f} of {dim} ({se['above_high'] / dim:.1%})",
                                ""],
        "ours, singular values": [f"{ss['top_mean']:.3f} ± {ss['top_std']:.3f}",
                                  f"{ss['below_low']:.1f} of {dim} ({ss['below_low'] / dim:.1%})",
                                  f"{ss['above_high']:.1f} of {dim} ({ss['above_high'] / dim:.1%})",
                                  mean_std(linear_rate)],
        "paper (cifar10), |eigenvalues|": [
            f"{pj['top_eigenvalue'][0]} ± {pj['top_eigenvalue'][1]}",
            f"{pj['below_0.25']} of {pj['dim']} ({below_paper:.1%})",
            f"{pj['above_1']} of {pj['dim']} ({above_paper:.1%})",
            f"~{paper()['compression_rate']}"]},
        index=["largest", "below 0.25", "above 1", "rms singular value (linearised rate)"])
    return Table(frame, "tbl-compression-spectrum", "The Jacobian's spectrum summarised, ours "
                 "beside the paper's (the numbers of the paper's Fig. 5c).")


def _spectrum_claims(rows: list[dict]) -> Table:
    return Table(claims.frame(rows), "tbl-compression-spectrum-claims", "Sec. 6's spectrum "
                 "claims judged (criteria from the paper's Fig. 5c, in paper_data/sec6.yaml).")


# --- the top of the spectrum without forming J (an extension) -----------------------------

def top_singular(world) -> Tensor:
    """The matrix-free top singular values (:func:`.runs.top_singular_spectra`), (n, k)."""
    return runs.top_singular_spectra(world)


def top_figure(p: Params, top: Tensor, s: Spectra) -> Figure:
    """The estimated top singular values, on the exact ones of the same images where they
    exist."""
    k_top = top.shape[1]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    r = np.arange(1, k_top + 1)
    if s.exact is not None:
        ax.plot(r, s.exact.singular_values[:len(top), :k_top].mean(0), "k-", lw=3, alpha=0.3,
                label="exact Jacobian")
    m, sd = mean_band(top)
    ax.plot(r, m, "o-", ms=3, label=f"matrix-free, {p.subspace_iterations} iterations")
    ax.fill_between(r, (m - sd).clamp_min(0), m + sd, alpha=0.25)
    ax.axhline(1.0, color="grey", ls=":", lw=0.8)
    ax.set(xlabel="rank", ylabel="singular value",
           title=f"Top {k_top} singular values of J, {len(top)} images, {s.dim} dimensions")
    ax.legend()
    return fig


def top_table(top: Tensor, s: Spectra) -> Table:
    """The estimate's largest value, its count above 1, and its error against the exact
    values where they exist."""
    k_top = top.shape[1]
    rows = {"largest singular value": mean_std(top[:, 0]),
            f"singular values above 1 (of the top {k_top})": mean_std((top > 1).sum(1).double())}
    if s.exact is not None:
        exact = s.exact.singular_values[:len(top), :k_top]
        error = ((top - exact) / exact).abs().max(1).values
        rows["largest relative error vs the exact values"] = f"{error.max():.1e}"
    return Table(pd.DataFrame({"ours": rows}), "tbl-compression-top", "The top singular values "
                 "estimated without forming J (no table of the paper: it stopped at the exact "
                 "spectrum).")


def cost_table() -> Table:
    """The exact spectrum and its estimate at the paper's settings (params/cifar10.yaml and
    params/imagenet.yaml), counted by :func:`diffrob.plan.table`."""
    cost = pd.concat({name: plan.table(params.load(f"params/{name}.yaml"))
                      for name in ("cifar10", "imagenet")})
    cost = cost[cost.index.get_level_values(1).str.startswith("compression/")]
    return Table(cost[["images", "diffusion evaluations", "PFLOP", plan.hours_column(100),
                       "rows per call", "GB per call"]].round(1),
                 "tbl-compression-cost", "The exact spectrum and its estimate at the paper's "
                 "settings (the paper's sec. 6), counted by `diffrob plan`.")


# --- what decides robust vs non-robust (Fig. 6) -------------------------------------------

@dataclass
class Factors:
    """Fig. 6's lengths of the examples whose purified clean image is classified correctly,
    and the adversarial examples ``x_adv`` of every test image."""

    attack: str
    x_adv: Tensor
    robust: Tensor
    critical: Tensor        # gamma at f(x0) along the classifier's own direction
    length: Tensor          # ||f(x_adv) - f(x0)||
    ray: Tensor             # distance along the purified attack's own ray (circular)
    attack_length: Tensor   # ||x_adv - x0||

    @property
    def groups(self) -> dict[str, Tensor]:
        return {"robust": self.robust, "non-robust": ~self.robust}

    @property
    def both_classes(self) -> bool:
        return 0 < int(self.robust.sum()) < len(self.robust)

    @property
    def one_class(self) -> str:
        """What stands in for the ROC with one class of examples only."""
        return f"No ROC: all {len(self.robust)} correctly classified examples are " + (
            "robust here." if bool(self.robust.all()) else "non-robust here.")

    @cached_property
    def aucs(self) -> dict[str, verdicts.Estimate]:
        """AUCs with 95 % stratified bootstrap intervals over examples
        (:func:`diffrob.verdicts.auc`): a larger gamma, a shorter purified attack and a
        longer own-ray distance predict robustness."""
        return {"critical": verdicts.auc(self.critical, self.robust),
                "length": verdicts.auc(-self.length, self.robust),
                "ray": verdicts.auc(self.ray, self.robust)}


def factors(world) -> Factors:
    """:func:`.runs.world_robust_factors` of the adversarial examples of
    ``compression_attack`` (:func:`.runs.adversarial_examples`), kept where the purified
    clean image is classified correctly."""
    x_adv = runs.adversarial_examples(world)
    rf = runs.world_robust_factors(world, x_adv)
    keep = rf.clean_correct
    return Factors(world.params.compression_attack, x_adv, rf.robust[keep], rf.critical[keep],
                   rf.length[keep], rf.ray[keep], rf.attack_length[keep])


def attack_line(fx: Factors) -> Markdown:
    return Markdown(f"Adversarial examples: `{fx.attack}`.")


def factors_table(p: Params, fx: Factors) -> Table:
    """Gamma and the purified attack length of robust and non-robust examples beside the
    paper's (sec. 6, Fig. 6)."""
    cap, pa = p.critical_max, paper()["purified_attack"]
    ours = {f"ours, {g}": [int(m.sum()), mean_std(fx.critical[m].clamp(max=cap)),
                           f"{int(torch.isinf(fx.critical[m]).sum())}", mean_std(fx.length[m]),
                           mean_std(fx.attack_length[m]), mean_std(fx.ray[m].clamp(max=cap))]
            for g, m in fx.groups.items()}
    frame = pd.DataFrame({
        **ours,
        "paper (cifar10), robust": ["", "", "", f"{pa['robust'][0]} ± {pa['robust'][1]}",
                                    f"{pa['attack_length_robust']}", ""],
        "paper (cifar10), non-robust": ["", "", "",
                                        f"{pa['non_robust'][0]} ± {pa['non_robust'][1]}",
                                        f"{pa['attack_length_non_robust']}", ""]},
        index=["examples (clean correct)",
               f"critical threshold gamma at f(x0) (classifier's own direction, capped at "
               f"{cap:g})", f"gamma: no flip up to {cap:g}",
               "purified attack length ||f(x_adv) - f(x0)||", "attack length ||x_adv - x0||",
               "boundary distance along the purified attack's own ray (circular, not evidence)"])
    return Table(frame, "tbl-compression-factors", "Critical threshold and purified attack "
                 "length of robust and non-robust examples, ours beside the paper's (sec. 6 and "
                 "the paper's Fig. 6).")


def agreement_line(fx: Factors) -> Markdown:
    """How often "robust" is "the purified attack is shorter than gamma" (Fig. 6a)."""
    def share(limit: Tensor) -> float:
        if not len(fx.robust):
            return float("nan")
        return (fx.robust == (fx.length < limit)).double().mean().item()
    return Markdown(f"Robust exactly when the purified attack is shorter than gamma: "
                    f"**{share(fx.critical):.1%}** of the examples (shorter than the distance "
                    f"along its own ray: {share(fx.ray):.1%}, near 100 % by construction).")


def roc_figure(p: Params, fx: Factors) -> Figure:
    """Fig. 6b, 6c: the two lengths' histograms and their ROC curves (with the circular
    own-ray distance for comparison)."""
    if not fx.both_classes:
        return text_figure(fx.one_class)
    pp, cap = paper(), p.critical_max
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    panels = ((fx.critical.clamp(max=cap), np.linspace(0, cap, 26),
               "critical threshold (Fig. 6b)"),
              (fx.length, np.linspace(0, float(fx.length.max()), 26),
               "purified attack length (Fig. 6c)"))
    for ax, (values, bins, title) in zip(axes, panels):
        for g, m in fx.groups.items():
            ax.hist(values[m].numpy(), bins=bins, alpha=0.6, label=g)
        ax.set(title=title, xlabel="l2 distance from f(x0)", ylabel="examples")
        ax.legend()
    curves = ((fx.critical, "critical", "critical threshold gamma", pp["critical"]["auc"]),
              (-fx.length, "length", "purified attack length", pp["purified_attack"]["auc"]))
    for scores, auc, name, p_auc in curves:
        fpr, tpr = roc(scores, fx.robust)
        axes[2].plot(fpr, tpr, drawstyle="steps-post",
                     label=f"{name}: AUC {fx.aucs[auc].value:.2f} (paper {p_auc})")
    fpr, tpr = roc(fx.ray, fx.robust)
    axes[2].plot(fpr, tpr, drawstyle="steps-post", ls="--", color="grey",
                 label=f"own-ray distance (circular): AUC {fx.aucs['ray'].value:.2f}")
    axes[2].plot([0, 1], [0, 1], color="grey", lw=0.5)
    axes[2].set(title="ROC: robust vs non-robust", xlabel="false positive rate",
                ylabel="true positive rate")
    axes[2].legend(loc="lower right", fontsize="small")
    return fig


def scatter_figure(p: Params, fx: Factors) -> Figure:
    """Fig. 6a: purified attack length against gamma; robust iff above the diagonal."""
    if not fx.both_classes:
        return text_figure(fx.one_class)
    cap = p.critical_max
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for g, m in fx.groups.items():
        ax.scatter(fx.length[m], fx.critical[m].clamp(max=cap), s=12, label=g)
    top = max(cap, float(fx.length.max()))
    ax.plot([0, top], [0, top], color="grey", lw=0.5)
    ax.set(xlabel="purified attack length", ylabel=f"critical threshold (capped at {cap:g})",
           title="robust iff above the diagonal (Fig. 6a)")
    ax.legend()
    return fig


def auc_tables(p: Params, fx: Factors) -> list[Table | Markdown]:
    """The AUCs beside the paper's (Fig. 6) and sec. 6's two claims on them judged (not
    tested with one class of examples only); intervals: stratified bootstrap over images."""
    names = ("critical_threshold_auc", "purified_length_auc")
    if not fx.both_classes:
        rows = [claims.record(p, "sec6", c, None) for c in names]
        return [Markdown(f"*{fx.one_class}*"), _auc_claims(rows)]
    a, pp = fx.aucs, paper()
    frame = pd.DataFrame({"ours (95 % bootstrap interval)": [
        f"{e.value:.3f} [{e.lo:.3f}, {e.hi:.3f}]" for e in (a["critical"], a["length"])] + [
        f"{a['ray'].value:.3f}"],
        "paper (cifar10)": [pp["critical"]["auc"], pp["purified_attack"]["auc"], ""]},
        index=["AUC, critical threshold gamma", "AUC, purified attack length",
               "AUC, distance along the purified attack's own ray (circular)"])
    table = Table(frame, "tbl-compression-auc", "How well each length tells robust from "
                  "non-robust examples, ours beside the paper's (the ROC curves of the paper's "
                  "Fig. 6).")
    rows = [claims.record(p, "sec6", names[0], a["critical"]),
            claims.record(p, "sec6", names[1], a["length"])]
    return [table, _auc_claims(rows)]


def _auc_claims(rows: list[dict]) -> Table:
    return Table(claims.frame(rows), "tbl-compression-auc-claims", "Sec. 6's claims on robust "
                 "and non-robust examples judged (criteria from the paper's Fig. 6, in "
                 "paper_data/sec6.yaml).")


# --- Jacobian spectra of robust and non-robust examples (sec. 6) --------------------------

@dataclass(frozen=True)
class Groups:
    """The Jacobian images judged with the fixed randomness of their Jacobians
    (:func:`.runs.jacobian_robustness`); ``clean`` and ``robust`` are ``None`` where the
    exact Jacobian is out of reach."""

    dim: int
    eigenvalues: Tensor | None
    clean: Tensor | None
    robust: Tensor | None

    @property
    def compared(self) -> bool:
        """Both groups among the Jacobian images whose purified clean image is right."""
        return self.clean is not None and 0 < int(self.robust[self.clean].sum()) < int(
            self.clean.sum())

    @property
    def no_comparison(self) -> str:
        if self.clean is None:
            return f"No comparison: the exact {self.dim} x {self.dim} Jacobian is out of reach here."
        return (f"No comparison: of the {int(self.clean.sum())} Jacobian images whose purified "
                f"clean image is right, {int(self.robust[self.clean].sum())} are robust; both "
                "groups are needed.")


def groups(world, s: Spectra, fx: Factors) -> Groups:
    """The Jacobian images' robustness against ``fx``'s adversarial examples."""
    if s.exact is None:
        return Groups(s.dim, None, None, None)
    clean, robust = runs.jacobian_robustness(world, fx.x_adv)
    return Groups(s.dim, s.exact.eigenvalues, clean, robust)


def group_tables(g: Groups) -> list[Table | Markdown]:
    """The two groups' spectra summarised and the AUC with which the spectrum tells them
    apart (:func:`.analysis.compare_spectra`), or why there is no comparison."""
    if not g.compared:
        return [Markdown(f"*{g.no_comparison}*")]
    keep = g.clean
    compared = compare_spectra(g.eigenvalues[keep], g.robust[keep])
    rows = {}
    for name, m in (("robust", g.robust & keep), ("non-robust", ~g.robust & keep)):
        v = compared[name]
        rows[name] = {"images": int(m.sum()),
                      "largest |eigenvalue|": f"{v['top_mean']:.3f} ± {v['top_std']:.3f}",
                      "below 0.25": f"{v['below_low']:.1f} of {g.dim}",
                      "above 1": f"{v['above_high']:.1f} of {g.dim}"}
    aucs = {k: f"{e.value:.2f} [{e.lo:.2f}, {e.hi:.2f}]" for k, e in compared.items()
            if k.startswith("auc")}
    return [Table(pd.DataFrame(rows).T, "tbl-compression-groups", "Jacobian spectra of robust "
                  "and non-robust examples (the comparison of the paper's sec. 6)."),
            Table(pd.DataFrame({"AUC [95 % interval]": aucs}), "tbl-compression-groups-auc",
                  "How well the spectrum tells the groups apart (0.5: not at all; no table of "
                  "the paper).")]


def groups_figure(g: Groups) -> Figure:
    """The two groups' mean |eigenvalue| spectra."""
    if not g.compared:
        return text_figure(g.no_comparison)
    keep = g.clean
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, m in (("robust", g.robust[keep]), ("non-robust", ~g.robust[keep])):
        ax.plot(np.arange(1, g.dim + 1), g.eigenvalues[keep][m].mean(0),
                label=f"{name} ({int(m.sum())})")
    ax.set(xlabel="rank", ylabel="mean |eigenvalue|", xscale="log",
           title="Jacobian spectra of robust and non-robust examples")
    ax.legend()
    return fig

