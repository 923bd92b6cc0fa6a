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
from .analysis import (SMALL_ETA_FRACTION, Neighbourhood, Response, Spectrum, compare_spectra,
                       drop_saturated, share, spectrum_summary)
from .analysis_boundary import compress_expand, length_ratios, roc, rule_agreement

QUARTER = 0.25   # sec. 6's mark of compression: "eigenvalues ... smaller than 0.25" (Fig. 5c)


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


def rates(world) -> Response:
    """The Jacobian images' compression rates and eq. 4's errors
    (:func:`.runs.compression_rates`), (n images, ``rate_samples``) each."""
    return runs.compression_rates(world)


def rate_text(resp: Response) -> str:
    """The compression rate over the unsaturated pixels, mean over images, as the text quotes it."""
    return f"{resp.rate_unsaturated.mean(1).mean().item():.3f}"


def rate_table(resp: Response, hood: Neighbourhood) -> Table:
    """The compression rates at eps and at eq. 4's small radius, eq. 4's error, the clamped
    pixels and the PCA's purified variances, ours beside the paper's (sec. 6, Fig. 5b)."""
    after, free = hood.normalised()[1], hood.unsaturated()
    n, d = len(resp.saturated), resp.rate.shape[1]
    small = f"eps / {1 / SMALL_ETA_FRACTION:g}"
    rows = {
        "compression rate at eps, every pixel": (mean_std(resp.rate.mean(1)), ""),
        "compression rate at eps, unsaturated pixels (the claim's)":
            (f"{mean_std(resp.rate_unsaturated.mean(1))} ({n} images)",
             f"~{paper()['compression_rate']}"),
        "compression rate at eps, unsaturated pixels, median over images":
            (f"{resp.rate_unsaturated.mean(1).median():.3f}", ""),
        f"compression rate at {small} (eq. 4's regime), unsaturated pixels":
            (mean_std(resp.rate_small.mean(1)), ""),
        f"eq. 4's relative error at {small}": (mean_std(resp.linear_error.mean(1)), ""),
        "eq. 4's relative error at eps": (mean_std(resp.linear_error_eps.mean(1)), ""),
        "output pixels clamped at 0 or 1 at f(x0), per image": (
            mean_std(resp.saturated.double()), ""),
        "largest purified PCA variance / input per-direction variance (first image)":
            (f"{after.max():.3f}", ""),
        "its square root: largest compression factor of a direction (first image)":
            (f"{after.sqrt().max():.3f}", ""),
        f"purified PCA variances below {QUARTER} (top {len(free)}, unsaturated pixels; "
        f"{hood.saturated} clamped)": (f"{(free < QUARTER).double().mean():.1%}", "most")}
    frame = pd.DataFrame(rows.values(), index=list(rows), columns=["ours", "paper (cifar10)"])
    return Table(frame, "tbl-compression-rate", f"The compression rate of random perturbations "
                 f"({d} per image) at eps and at {small}, eq. 4's linearisation error and the "
                 "PCA of the neighbourhood, ours beside the paper's sec. 6 and Fig. 5b. "
                 "'Unsaturated pixels': the output pixels the purifier's final clamp to [0,1] "
                 "does not hold at 0 or 1 at f(x0); norms and spectra over them.")


def rate_claims(p: Params, resp: Response, hood: Neighbourhood) -> Table:
    """Sec. 6's claims on random perturbations judged: the compression rate and eq. 4's error
    (bootstrap over images, each image's mean over its samples) and the PCA's small variances
    (Wilson over the components of the first image, as the paper's one image)."""
    rows = [claims.record(p, "sec6", "compression_rate",
                          verdicts.mean(resp.rate_unsaturated.mean(1))),
            claims.record(p, "sec6", "linearisation_holds",
                          verdicts.mean(resp.linear_error.mean(1))),
            claims.record(p, "sec6", "pca_eigenvalues_small",
                          verdicts.proportion(hood.unsaturated() < QUARTER))]
    return Table(claims.frame(rows), "tbl-compression-rate-claim", "Sec. 6's claims on random "
                 "perturbations judged (criteria from the paper's sec. 6, eq. 4 and Fig. 5b, in "
                 "paper_data/sec6.yaml).")


# --- the Jacobian and its spectrum (Fig. 5c) ----------------------------------------------

@dataclass(frozen=True)
class Spectra:
    """The exact Jacobian spectra of the world's Jacobian images (``None`` where the exact
    ``dim`` x ``dim`` Jacobian is out of reach: beyond CIFAR-10's size, as in the paper) and
    each image's count of output pixels clamped at f(x0) (:func:`.runs.jacobian_spectra`)."""

    dim: int
    exact: Spectrum | None
    saturated: Tensor

    @cached_property
    def unsaturated(self) -> Tensor:
        """The |eigenvalues| without the clamp's exact zeros (NaN-padded,
        :func:`.analysis.drop_saturated`)."""
        return drop_saturated(self.exact.eigenvalues, self.saturated)


def spectra(world) -> Spectra:
    """:func:`.runs.jacobian_spectra` and the clamped pixels of the same images under the same
    randomness where ``dim`` <= :data:`EXACT_JACOBIAN_MAX_DIM`, else no spectrum."""
    dim = int(np.prod(world.image_shape))
    if dim > EXACT_JACOBIAN_MAX_DIM:
        return Spectra(dim, None, torch.zeros(0, dtype=torch.long))
    return Spectra(dim, *runs.jacobian_spectra(world))


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
    spectrum claims judged (not tested without the exact spectrum); the shares are over the
    unsaturated pixels' eigenvalues (:attr:`Spectra.unsaturated`); intervals: bootstrap over
    the images."""
    names = ("top_eigenvalue", "eigenvalues_below_quarter", "few_eigenvalues_above_one")
    if s.exact is None:
        rows = [claims.record(p, "sec6", c, None) for c in names]
        return [_spectrum_claims(rows)]
    free = s.unsaturated
    rows = [claims.record(p, "sec6", names[0], verdicts.mean(s.exact.eigenvalues.max(1).values)),
            claims.record(p, "sec6", names[1], verdicts.mean(share(free, QUARTER))),
            claims.record(p, "sec6", names[2], verdicts.mean(share(free, 1.0, above=True)))]
    return [_spectrum_table(s), _spectrum_claims(rows)]


def _spectrum_table(s: Spectra) -> Table:
    eig, sv, dim = s.exact.eigenvalues, s.exact.singular_values, s.dim
    se, ss = spectrum_summary(eig), spectrum_summary(sv)
    pj = paper()["jacobian"]
    below_paper, above_paper = pj["below_0.25"] / pj["dim"], pj["above_1"] / pj["dim"]
    linear_rate = sv.pow(2).mean(1).sqrt()
    free_sv = drop_saturated(sv, s.saturated)
    free_rate = free_sv.nan_to_num(0).pow(2).sum(1).div((~free_sv.isnan()).sum(1)).sqrt()

    def shares(values: Tensor) -> list[str]:
        return [f"{share(values, QUARTER).mean():.1%}",
                f"{share(values, 1.0, above=True).mean():.1%}"]
    frame = pd.DataFrame({
        "ours, |eigenvalues|": [f"{se['top_mean']:.3f} ± {se['top_std']:.3f}",
                                f"{se['below_low']:.1f} of {dim} ({se['below_low'] / dim:.1%})",
                                f"{se['above_high']:.1f} of {dim} ({se['above_high'] / dim:.1%})",
                                "", *shares(s.unsaturated), "", mean_std(s.saturated.double())],
        "ours, singular values": [f"{ss['top_mean']:.3f} ± {ss['top_std']:.3f}",
                                  f"{ss['below_low']:.1f} of {dim} ({ss['below_low'] / dim:.1%})",
                                  f"{ss['above_high']:.1f} of {dim} ({ss['above_high'] / dim:.1%})",
                                  mean_std(linear_rate), *shares(free_sv), mean_std(free_rate), ""],
        "paper (cifar10), |eigenvalues|": [
            f"{pj['top_eigenvalue'][0]} ± {pj['top_eigenvalue'][1]}",
            f"{pj['below_0.25']} of {pj['dim']} ({below_paper:.1%})",
            f"{pj['above_1']} of {pj['dim']} ({above_paper:.1%})",
            f"~{paper()['compression_rate']}", f"{below_paper:.1%}", f"{above_paper:.1%}",
            "", ""]},
        index=["largest", "below 0.25", "above 1", "rms singular value (linearised rate)",
               "below 0.25, unsaturated pixels (the claim's share)",
               "above 1, unsaturated pixels (the claim's share)",
               "rms singular value, unsaturated pixels (linearised rate)",
               "output pixels clamped at 0 or 1 at f(x0), per image"])
    return Table(frame, "tbl-compression-spectrum", "The Jacobian's spectrum summarised, ours "
                 "beside the paper's (the numbers of the paper's Fig. 5c). 'Unsaturated "
                 "pixels': each output pixel the purifier's clamp holds at 0 or 1 at f(x0) is a "
                 "zero row of J and adds an exact zero to both spectra; those zeros are left "
                 "out.")


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

    @cached_property
    def ratios(self) -> dict[str, verdicts.Estimate]:
        """Each group's mean purified over mean attack length, and non-robust minus robust
        (:func:`.analysis_boundary.length_ratios`)."""
        return length_ratios(self.length, self.attack_length, self.robust)


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
    ratios = fx.ratios
    ours = {f"ours, {g}": [int(m.sum()), mean_std(fx.critical[m].clamp(max=cap)),
                           f"{int(torch.isinf(fx.critical[m]).sum())}", mean_std(fx.length[m]),
                           mean_std(fx.attack_length[m]), ratios[g].text(100, " %"),
                           mean_std(fx.ray[m].clamp(max=cap))]
            for g, m in fx.groups.items()}
    frame = pd.DataFrame({
        **ours,
        **{f"paper (cifar10), {g}": ["", "", "", f"{pa[k][0]} ± {pa[k][1]}",
                                      f"{pa[f'attack_length_{k}']}",
                                      f"{pa[k][0] / pa[f'attack_length_{k}']:.1%}", ""]
           for g, k in (("robust", "robust"), ("non-robust", "non_robust"))}},
        index=["examples (clean correct)",
               f"critical threshold gamma at f(x0) (classifier's own direction, capped at "
               f"{cap:g})", f"gamma: no flip up to {cap:g}",
               "purified attack length ||f(x_adv) - f(x0)||", "attack length ||x_adv - x0||",
               "mean purified / mean attack length [95 % bootstrap interval]",
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
    """The AUCs beside the paper's (Fig. 6) and sec. 6's claims on robust and non-robust
    examples judged (not tested with one class of examples only): the two AUCs (stratified
    bootstrap over images), Fig. 6a's rule against the base rate
    (:func:`.analysis_boundary.rule_agreement`, Newcombe) and compressed vs expanded purified
    attacks (:func:`.analysis_boundary.compress_expand`, bootstrap)."""
    names = ("critical_threshold_auc", "purified_length_auc", "rule_agreement",
             "robust_compress_nonrobust_expand")
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
            claims.record(p, "sec6", names[1], a["length"]),
            claims.record(p, "sec6", names[2],
                          rule_agreement(fx.robust, fx.critical, fx.length)),
            claims.record(p, "sec6", names[3],
                          compress_expand(fx.length, fx.attack_length, fx.robust))]
    return [table, _auc_claims(rows)]


def _auc_claims(rows: list[dict]) -> Table:
    return Table(claims.frame(rows), "tbl-compression-auc-claims", "Sec. 6's claims on robust "
                 "and non-robust examples judged (criteria from the paper's Fig. 6, in "
                 "paper_data/sec6.yaml).")


# --- Jacobian spectra of robust and non-robust examples (sec. 6) --------------------------

@dataclass(frozen=True)
class Groups:
    """The Jacobian images judged with the fixed randomness of their Jacobians
    (:func:`.runs.jacobian_robustness`), their unsaturated |eigenvalues| (NaN-padded,
    :attr:`Spectra.unsaturated`) and mean compression rates over the unsaturated pixels;
    ``eigenvalues``, ``clean`` and ``robust`` are ``None`` where the exact Jacobian is out of
    reach."""

    dim: int
    eigenvalues: Tensor | None
    clean: Tensor | None
    robust: Tensor | None
    rates: Tensor

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


def groups(world, s: Spectra, fx: Factors, resp: Response) -> Groups:
    """The Jacobian images' robustness against ``fx``'s adversarial examples, with their
    spectra and their compression rates (``resp``); where there are more Jacobian images than
    Table 1's, the first of them, which have adversarial examples."""
    rates = resp.rate_unsaturated.mean(1)
    if s.exact is None:
        return Groups(s.dim, None, None, None, rates)
    clean, robust = runs.jacobian_robustness(world, fx.x_adv)
    n = len(clean)
    return Groups(s.dim, s.unsaturated[:n], clean, robust, rates[:n])


def group_tables(p: Params, g: Groups) -> list[Table | Markdown]:
    """The two groups' spectra summarised and the AUC with which the spectrum tells them
    apart (:func:`.analysis.compare_spectra`), or why there is no comparison; and two claims
    judged: no spectral difference (both AUCs) and the gradient-free compression rate as an
    indicator of robustness (AUC of the negative rate; stratified bootstrap)."""
    names = ("spectra_alike_robust_nonrobust", "compression_predicts_robustness")
    if not g.compared:
        rows = [claims.record(p, "sec6", c, None) for c in names]
        return [Markdown(f"*{g.no_comparison}*"), _group_claims(rows)]
    keep = g.clean
    compared = compare_spectra(g.eigenvalues[keep], g.robust[keep], QUARTER)
    summary = {}
    for name, m in (("robust", g.robust & keep), ("non-robust", ~g.robust & keep)):
        v = compared[name]
        summary[name] = {"images": int(m.sum()),
                         "largest |eigenvalue|": f"{v['top_mean']:.3f} ± {v['top_std']:.3f}",
                         f"share below {QUARTER:g}":
                             f"{share(g.eigenvalues[m], QUARTER).mean():.1%}",
                         "share above 1": f"{share(g.eigenvalues[m], 1.0, True).mean():.1%}",
                         "compression rate": mean_std(g.rates[m])}
    spectral = {"largest |eigenvalue|": compared["auc largest"],
                f"share below {QUARTER:g}": compared[f"auc below {QUARTER:g}"]}
    rate = verdicts.auc(-g.rates[keep], g.robust[keep])
    aucs = {k: e.text(digits=2) for k, e in {**spectral, "compression rate (lower)": rate}.items()}
    rows = [claims.record(p, "sec6", names[0], spectral),
            claims.record(p, "sec6", names[1], rate)]
    return [Table(pd.DataFrame(summary).T, "tbl-compression-groups",
                  "Jacobian spectra of robust and non-robust examples (the comparison of the "
                  "paper's sec. 6; |eigenvalues| of the unsaturated pixels)."),
            Table(pd.DataFrame({"AUC [95 % interval]": aucs}), "tbl-compression-groups-auc",
                  "How well the spectrum and the compression rate tell the groups apart (0.5: "
                  "not at all; no table of the paper)."),
            _group_claims(rows)]


def _group_claims(rows: list[dict]) -> Table:
    return Table(claims.frame(rows), "tbl-compression-groups-claims", "Sec. 6's claims on the "
                 "Jacobian images' robustness judged (criteria from the paper's sec. 6 and its "
                 "arXiv v1 abstract, in paper_data/sec6.yaml).")


def groups_figure(g: Groups) -> Figure:
    """The two groups' mean |eigenvalue| spectra (unsaturated pixels: a rank's mean over the
    images that have it)."""
    if not g.compared:
        return text_figure(g.no_comparison)
    keep = g.clean
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, m in (("robust", g.robust[keep]), ("non-robust", ~g.robust[keep])):
        ax.plot(np.arange(1, g.dim + 1), g.eigenvalues[keep][m].nanmean(0),
                label=f"{name} ({int(m.sum())})")
    ax.set(xlabel="rank", ylabel="mean |eigenvalue|", xscale="log",
           title="Jacobian spectra of robust and non-robust examples")
    ax.legend()
    return fig

