"""What chapter 04_fuzzy shows: Table 1 (Table 2 on ImageNet) beside the paper's, the grades
of Fig. 3b, the cumulative fuzzy robustness of Fig. 3c, the claims of sec. 4.2 judged, Table 1
beside the strongest protocol of chapter 04b, and the variants of appendices B and C.2."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from matplotlib.figure import Figure

from .. import attacks, claims, figures, params, plan, stages, verdicts
from ..figures import Table
from ..params import Params
from ..worlds import World
from . import analysis, report_strength, runs, runs_strength, runs_variants

EOT_PAIRS = (("bpda", "bpda-eot"), ("pgd", "pgd-eot"))  # each attack without and with EOT
CFR_ALPHAS = np.linspace(0.01, 1, 100)                   # where Fig. 3c's curves are drawn
SLIDER_ALPHAS = np.round(np.linspace(0.1, 1.0, 10), 2)   # the slider's views


@dataclass
class Evaluations:
    """Table 1's inputs on a world: each source's predictions (r, n) and grades (n,), the wall
    time each took here, and Table 1 itself (ours, percent)."""

    world: World
    sources: list[str]
    labels: np.ndarray
    preds: dict[str, np.ndarray]
    seconds: dict[str, float]
    grades: dict[str, np.ndarray]
    table: pd.DataFrame

    @property
    def params(self) -> Params:
        return self.world.params

    @property
    def attacks(self) -> list[str]:
        return self.sources[1:]


def evaluations(world) -> Evaluations:
    """The attacks and re-evaluations of Table 1 (:func:`.runs.timed_evaluations`), read from
    the store or computed. On ImageNet it first says that the paper ran no PGD there."""
    p = world.params
    if p.world == "imagenet":  # the paper ran no full-gradient PGD on ImageNet (appendix B)
        display(Markdown("**Note.** The paper attacked ImageNet with BPDA and BPDA-EOT only: a "
                         "full-gradient PGD through 150 diffusion steps was out of its reach. "
                         "PGD rows, if `attacks` asks for them, have no paper numbers beside "
                         "them."))
    sources = ["clean", *p.attacks]
    labels = world.labels.cpu().numpy()
    preds, seconds = runs.timed_evaluations(world, sources)
    return Evaluations(world, sources, labels, preds, seconds,
                       {s: analysis.grades(preds[s], labels) for s in sources},
                       analysis.table(preds, labels, alpha=0.5, ks=p.vote_k))


def work_table(r: Evaluations) -> Table:
    """The attacks and re-evaluations of this run with their wall time and Table S1's settings."""
    p, names = r.params, r.attacks
    frame = pd.DataFrame({
        "seconds": r.seconds, "images": len(r.labels), "re-evaluations r": p.n_evals,
        "eps (1/255)": [np.nan] + [p.eps_255] * len(names),
        "PGD steps": [np.nan] + [p.attack_steps] * len(names),
        "EOT samples": [np.nan] + [attacks.get(a).eot_samples(p.eot) for a in names]},
        index=r.sources)
    return Table(frame.round(1), "tbl-fuzzy-work", "The attacks and re-evaluations of this run, "
                 "with the wall time each took here (the settings of the paper's Table S1).")


def paper_cost_table() -> Table:
    """The work of the attack and evaluation stages at the paper's CIFAR-10 and ImageNet
    settings, counted by :func:`diffrob.plan.table` (the sec. 6 stages left out)."""
    cost = pd.concat({name: plan.table(params.load(f"params/{name}.yaml"))
                      for name in ("cifar10", "imagenet")})
    cost = cost[~cost.index.get_level_values(1).str.startswith("compression/")]
    return Table(cost[["images", "diffusion evaluations", "PFLOP", plan.hours_column(100)]]
                 .round(1), "tbl-fuzzy-paper-cost", "The work of the same stages at the "
                 "paper's settings (the paper's Table S1), counted by `diffrob plan`.")


def table_1(r: Evaluations) -> Table:
    """Table 1 (ours, rounded to 2 decimals) beside the paper's Table 1 (ImageNet: Table 2):
    for each source a row of ours over a row of the paper's (a table that fits the page)."""
    paper = claims.paper("sec4")
    paper_table = paper["table2"] if r.params.world == "imagenet" else paper["table1"]
    theirs = pd.DataFrame(paper_table["rows"], index=paper["columns"]).T
    label = f"paper ({paper_table['caption'].split(' on ')[1]})"
    both = pd.concat({"ours": r.table.round(2), label: theirs}).swaplevel()
    rows = [(s, who) for s in r.sources for who in ("ours", label) if (s, who) in both.index]
    return Table(both.loc[rows].rename_axis(["source", ""]), "tbl-fuzzy-table1",
                 "Standard, fuzzy and majority-vote robustness (%), ours beside the paper's; "
                 "reproduces the paper's Table 1 (Table 2 on ImageNet).")


def grades_figure(r: Evaluations) -> Figure:
    """Fig. 3b: a histogram of each source's grades, m = 0 and m = 1 in bars of their own."""
    n_evals = r.params.n_evals
    half = 0.5 / n_evals  # grades are multiples of 1/r
    bins = np.unique(np.r_[-half, np.linspace(half, 1 - half, min(n_evals, 20) + 1), 1 + half])
    fig, axes = plt.subplots(1, len(r.sources), figsize=(3 * len(r.sources), 2.8), sharey=True)
    for ax, s in zip(np.atleast_1d(axes), r.sources):
        g = r.grades[s]
        ax.hist(g, bins=bins, color="C0" if s == "clean" else "C3")
        ax.set_title(f"{s}: {100 * np.mean(analysis.strictly_fuzzy(g)):.0f} % strictly fuzzy",
                     fontsize=9)
        ax.set_xlabel("grade m")
    np.atleast_1d(axes)[0].set_ylabel("examples")
    return fig


def cfr_figure(r: Evaluations, alpha: float | None = None) -> Figure:
    """Fig. 3c: each source's cumulative fuzzy robustness (:func:`.analysis.cfr`), with its
    robustness at ``alpha`` marked when given."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for j, s in enumerate(r.sources):
        ax.step(CFR_ALPHAS, 100 * analysis.cfr(r.grades[s], CFR_ALPHAS), where="post",
                color=f"C{j}", label=s)
        if alpha is not None:
            ax.plot(alpha, 100 * analysis.robust_fraction(r.grades[s], alpha), "o", color=f"C{j}")
    if alpha is not None:
        ax.axvline(alpha, color="gray", lw=0.8)
        ax.set_title(f"alpha = {alpha:.2f}: robust = grade < alpha")
    ax.set(xlabel="alpha", ylabel="CFR (%)", ylim=(-2, 102), xlim=(0, 1.01))
    ax.legend(fontsize=8, loc="lower right")
    return fig


def cfr_slider(r: Evaluations):
    """Fig. 3c point by point: a slider over alpha = 0.1 .. 1.0, one precomputed view each."""
    views = [cfr_figure(r, a) for a in SLIDER_ALPHAS]
    return figures.slider_stack(views, "alpha", labels=[f"alpha = {a:.1f}" for a in SLIDER_ALPHAS])


STRONGEST = "strongest protocol"       # chapter 4b's, chosen on held-out images
WORST_OF = 10                          # N of the worst-of-N judgement (DiffHammer's N = 10)


def sec4_estimates(p: Params, preds: dict[str, np.ndarray], labels: np.ndarray,
                   worst_of: int | None = None, known_noise: np.ndarray | None = None,
                   replaced: tuple[str, ...] = ()) -> dict[str, Any]:
    """The estimates of sec. 4.2's claims (``paper_data/sec4.yaml``) on each source's r runs
    ``preds`` (``"clean"`` and the attacks), paired per image; ``None`` where the claim cannot
    be tested. An image's robustness in one run is 1 - grade, or with ``worst_of`` = N its
    robustness under N-evaluation (:func:`.analysis.worst_of_n_per_image`), where the grade
    claims (fuzzy examples, the vote) are not defined. ``known_noise``: per image of the
    variants' first images, DiffPure right under the known-noise PGD (fixed randomness).
    ``replaced``: sources run under another protocol than their twins, so that EOT's gain
    is not measured on them."""
    names = [s for s in preds if s != "clean"]
    g = {s: analysis.grades(x, labels) for s, x in preds.items()}
    robust = ({s: 1 - g[s] for s in preds} if worst_of is None else
              {s: analysis.worst_of_n_per_image(x, labels, worst_of) for s, x in preds.items()})
    k_max = max(p.vote_k)
    graded = worst_of is None and bool(names)
    bpda_over_pgd = (verdicts.paired_difference(robust["bpda-eot"], robust["pgd-eot"])
                     if {"bpda-eot", "pgd-eot"} <= set(names) else None)
    eot_pairs = [(a, b) for a, b in EOT_PAIRS
                 if {a, b} <= set(names) and not {a, b} & set(replaced)]
    estimates = {
        "most_examples_fuzzy": {a: verdicts.proportion_among(analysis.strictly_fuzzy(g[a]),
                                                             analysis.fooled(g[a]))
                                for a in names} if graded else None,
        "vote_helps": {s: verdicts.paired_difference(
            analysis.vote_accuracy_per_image(preds[s], labels, k_max), robust[s])
            for s in preds} if worst_of is None and k_max <= p.n_evals else None,
        "pgd_stronger_than_bpda": bpda_over_pgd,
        "pgd_stronger_than_bpda_direction": bpda_over_pgd,
        "eot_stronger": {a: verdicts.paired_difference(robust[a], robust[b])
                         for a, b in eot_pairs} if eot_pairs else None,
    }
    if known_noise is not None:
        estimates["fixed_randomness_gain_drops"] = _fixed_randomness(robust, known_noise)
    return estimates


def _fixed_randomness(robust: dict[str, np.ndarray], known_noise: np.ndarray
                      ) -> verdicts.Estimate | None:
    """Robustness under PGD-EOT (random noise) minus the known-noise PGD's (fixed noise), paired
    on the first ``len(known_noise)`` images; ``None`` without PGD-EOT."""
    if "pgd-eot" not in robust:
        return None
    n = len(known_noise)
    return verdicts.paired_difference(robust["pgd-eot"][:n], known_noise.astype(float))


def claims_table(r: Evaluations) -> Table:
    """The observations of sec. 4.2 judged per image and paired under Table S1's protocol
    (:func:`sec4_estimates`): among the examples an attack fools at least once (m > 0), the
    fraction that are fuzzy (0 < m < 1, Wilson); an image's vote the mean over the groups of
    k runs of the majority vote being right. BPDA-EOT against PGD-EOT is judged twice on the
    same estimate: at half the paper's gap and in direction only."""
    rows = [claims.record(r.params, "sec4", claim, est)
            for claim, est in sec4_estimates(r.params, r.preds, r.labels).items()]
    return Table(claims.frame(rows), "tbl-fuzzy-claims", "Sec. 4.2's claims judged (criteria "
                 "from the paper's sec. 1, sec. 4.2 and Table 1, in paper_data/sec4.yaml), with "
                 "each claim's minimum detectable effect (MDE) and the n that would detect the "
                 "paper's effect.")


def strongest_claims_table(r: Evaluations, strong: dict, v: Variants) -> Table:
    """Sec. 4.2's claims judged again (:func:`sec4_estimates`) with PGD-EOT under chapter 4b's
    strongest protocol in place of Table S1's (``strong``: its Params changes; its r
    re-evaluations are those of Table 1's extra row, computed once), and under worst-of-N on
    those runs (N = ``WORST_OF``); each stored beside the claim's own row
    (:func:`diffrob.claims.record`, ``protocol``). The images that chose the protocol (the
    choice half of chapter 4b's, :func:`.runs_strength.halves`) are left out of both."""
    p = r.params
    strong_world = dataclasses.replace(r.world, params=p.replace(**strong))
    preds = dict(r.preds)
    if "pgd-eot" in r.attacks:
        preds["pgd-eot"] = stages.evaluations(strong_world, "pgd-eot")
    chose, _ = runs_strength.split(r.world)
    keep = np.setdiff1d(np.arange(len(r.labels)), chose)
    held_out = {s: x[:, keep] for s, x in preds.items()}
    known = v.known_noise[keep[keep < len(v.known_noise)]]
    n = min(WORST_OF, p.n_evals)
    under = {STRONGEST: sec4_estimates(p, held_out, r.labels[keep], None, known, ("pgd-eot",)),
             f"worst of {n}, {STRONGEST}": sec4_estimates(p, held_out, r.labels[keep], n, known,
                                                          ("pgd-eot",))}
    rows = [{**claims.record(p, "sec4", claim, est, protocol), "claim": f"{claim} ({protocol})"}
            for protocol, judged in under.items() for claim, est in judged.items()
            if est is not None or protocol == STRONGEST]   # worst-of-N: the robustness claims
    return Table(claims.frame(rows), "tbl-fuzzy-strongest-claims", "Sec. 4.2's claims judged "
                 "again under chapter 4b's strongest protocol and under worst-of-N (criteria "
                 "from the paper's sec. 1, sec. 4.2 and Table 1, in paper_data/sec4.yaml).")


def table_1_text(r: Evaluations) -> str:
    """Each attack's standard robustness, m = 0 and m = 1 in words (for "What it says here")."""
    t = r.table
    return "; ".join(f"{s}: standard {t.loc[s, 'standard']:.1f} %, m = 0 {t.loc[s, 'm=0']:.1f} "
                     f"%, m = 1 {t.loc[s, 'm=1']:.1f} %" for s in r.attacks
                     ) or "no attacks in this world"


def strongest_protocol(r: Evaluations) -> dict:
    """The strongest protocol of chapter 04b's step-size grid, chosen on its held-out choice
    half (:func:`.runs_strength.strongest_protocol`): its Params changes."""
    return runs_strength.strongest_protocol(r.world).protocol


def strongest_text(r: Evaluations, strong: dict) -> str:
    """What the table beside Table 1 shows, with the strongest protocol in words."""
    return (f"**Beside Table 1 (chapter 4b).** PGD-EOT under the strongest protocol found in "
            f"chapter 4b's step-size grid (step {report_strength.step_text(strong['rel_stepsize'])}"
            f", {strong['pgd_schedule']} step, {strong['pgd_iterate']} iterate; Table 1 above "
            f"keeps the paper's {report_strength.step_text(r.params.rel_stepsize)}, constant, "
            f"last), and the worst case "
            f"over every attack per image (broken if any attack breaks it). *N=...*: accuracy "
            f"under N-evaluation (DiffHammer; robust only if all N runs are right, counted after "
            f"optimising): N = 1 is the mean standard robustness, N = r the m = 0 column.")


def strongest_table(r: Evaluations, strong: dict) -> Table:
    """Table 1's attack rows beside :func:`.runs_strength.table1_additions`."""
    frame = pd.concat([r.table.loc[r.attacks],
                       runs_strength.table1_additions(r.world, strong)]).round(2)
    return Table(frame, "tbl-fuzzy-strongest", "Table 1's attack rows beside PGD-EOT under the "
                 "strongest protocol of chapter 4b and the worst case over the attacks (extends "
                 "the paper's Table 1).")


@dataclass
class Variants:
    """The variants' rows (:func:`variants_frame`), the seconds they took, the paper's numbers."""

    frame: pd.DataFrame
    seconds: float
    paper: dict
    world_name: str
    known_noise: np.ndarray   # per image: fixed-noise DiffPure at t* right under known-noise PGD


def variants_frame(world, paper: dict, progress: bool = True) -> pd.DataFrame:
    """Both variants on this world beside the paper's numbers (``paper_data/sec4.yaml``,
    ``variants``): :func:`.runs_variants.onestep` and :func:`.runs_variants.fixed_noise`.

    The fixed-noise rows use the paper's ImageNet numbers in the ``imagenet`` world and its
    CIFAR-10 numbers elsewhere; a source the paper did not run has no paper number (NaN).
    Columns: variant, t, source, ours, low, high (percent), paper (percent), n images.
    """
    p = world.params
    labels_all = world.labels.cpu().numpy()
    rows = []
    ref = paper["onestep"]
    for source, pr in runs_variants.onestep(world, progress).items():
        rows.append({"variant": "one-step", "t": p.t_star, "source": source,
                     **analysis.accuracy_row(pr, labels_all[:pr.shape[1]]),
                     "paper": ref.get(source)})
    fixed = paper["fixed_noise"]["imagenet" if p.world == "imagenet" else "cifar10"]
    for method in runs_variants.FIXED_METHODS:
        ref = fixed[method]
        t = analysis.fixed_noise_t(p.t_star, ref["t"], fixed["t_star"])
        for source, pr in runs_variants.fixed_noise(world, method, t, progress=progress).items():
            rows.append({"variant": f"{method} fixed noise", "t": t, "source": source,
                         **analysis.accuracy_row(pr, labels_all[:len(pr)]),
                         "paper": ref.get(source)})
    df = pd.DataFrame(rows)
    df["paper"] = df["paper"].astype(float)
    df["n"] = min(p.variant_images, len(labels_all))
    return df


def variants(world) -> Variants:
    """:func:`variants_frame` on this world, timed."""
    p = world.params
    paper = claims.paper("sec4")["variants"]
    start = time.time()
    frame = variants_frame(world, paper)
    known = runs_variants.fixed_noise(world, "ddpm", p.t_star, ("pgd",))["pgd"]
    labels = world.labels.cpu().numpy()[:len(known)]
    return Variants(frame, time.time() - start, paper, p.world, known == labels)


def fixed_randomness_claim(v: Variants, r: Evaluations) -> Table:
    """arXiv v1's abstract: under fixed randomness the robustness improvement drops to about
    24 % on CIFAR-10 (from Table 1's 60.53 % under PGD-EOT). Per image of the variants'
    images, the standard robustness under Table 1's PGD-EOT (random noise, mean over the r
    runs) minus DiffPure's accuracy at t* with its noise fixed under the known-noise PGD
    (:func:`.runs_variants.fixed_noise`), paired (:func:`_fixed_randomness`); untested where
    Table 1 has no PGD-EOT."""
    robust = {s: 1 - g for s, g in r.grades.items() if s in r.attacks}
    row = claims.record(r.params, "sec4", "fixed_randomness_gain_drops",
                        _fixed_randomness(robust, v.known_noise))
    return Table(claims.frame([row]), "tbl-fuzzy-fixed-claim", "The robustness that fixed "
                 "randomness leaves (the paper's Table 1 against the abstract of its arXiv v1; "
                 "criterion in paper_data/sec4.yaml), "
                 "with its minimum detectable effect (MDE) and the n that would detect the "
                 "paper's effect.")


def variants_text(v: Variants) -> str:
    """How many images, how long, and whose numbers the paper's column holds."""
    return (f"{int(v.frame['n'].iloc[0])} images, {v.seconds:.0f} s; the paper's numbers are "
            f"its {v.paper['onestep']['dataset']} "
            f"ones{' (fixed noise: ImageNet)' if v.world_name == 'imagenet' else ''}.")


def variants_table(v: Variants) -> Table:
    """The variants' accuracies with their intervals beside the paper's numbers."""
    f = v.frame
    shown = pd.DataFrame({
        "variant": f["variant"], "t": f["t"], "source": f["source"],
        "ours (%)": [f"{r.ours:.1f} [{r.low:.1f}, {r.high:.1f}]" for r in f.itertuples()],
        "paper (%)": [f"{x:.2f}" if x == x else "not run" for x in f["paper"]],
    })
    return Table(shown, "tbl-fuzzy-variants", "One-step denoising and fixed noise, ours beside "
                 "the review thread's numbers (no table of the paper).", index=False)


def variants_summary(v: Variants, r: Evaluations) -> str:
    """"What it says here" of the variants, beside DiffPure's standard robustness of Table 1."""
    vt = v.frame.set_index(["variant", "source"])
    std = r.table["standard"]  # DiffPure's standard robustness of Table 1, per source

    def acc(variant: str, source: str) -> str:
        row = vt.loc[(variant, source)]
        return f"{row.ours:.1f} % [{row.low:.1f}, {row.high:.1f}]"

    return (
        f"**What it says here.** One-step denoising keeps {acc('one-step', 'clean')} of the "
        f"clean images (DiffPure's standard clean accuracy above: {std['clean']:.1f} %) and "
        f"{acc('one-step', 'pgd-eot')} under its own PGD-EOT"
        + (f" (DiffPure under PGD-EOT: {std['pgd-eot']:.1f} %)" if "pgd-eot" in std else "")
        + ". With the noise fixed and known to the attacker, DiffPure keeps "
        f"{acc('ddpm fixed noise', 'clean')} clean, {acc('ddpm fixed noise', 'bpda')} under BPDA "
        f"and {acc('ddpm fixed noise', 'bpda-eot')} under BPDA-EOT; reverse-only keeps "
        f"{acc('reverse fixed noise', 'clean')}, {acc('reverse fixed noise', 'bpda')} and "
        f"{acc('reverse fixed noise', 'bpda-eot')}. Compare the paper's column with the "
        "intervals: on this few images only a large gap is a difference; BPDA-EOT equal to BPDA "
        "is what the fixed-noise reading predicts.")
