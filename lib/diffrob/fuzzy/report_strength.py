"""What chapter 04b_strength shows: are the attacks of Table 1 strong enough? (sec. 4.2,
Table S1; Carlini et al. 2019): the gradient checks, the step-size grid, the curves against
steps, EOT samples and eps, the attacks side by side, and AutoAttack's own number beside its
examples re-evaluated (:mod:`.runs_strength`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ..attacks import gradcheck
from ..figures import Table
from ..worlds import World
from . import runs_strength

PAPER_NAME = "PGD-EOT, paper's protocol"
STRONGEST_NAME = "PGD-EOT, strongest protocol"


def step_text(rel_stepsize: float) -> str:
    """A relative step size as a fraction of eps, as Table S1 writes the paper's (eps/30):
    "eps/30", "eps/16", "eps/4", "3eps/4", "eps"; a step that is no fraction with a denominator
    up to 1000 as "0.0123 eps"."""
    exact = Fraction(rel_stepsize)
    f = exact.limit_denominator(1000)
    if f == 0 or abs(f - exact) > 1e-9 * exact:
        return f"{rel_stepsize:.3g} eps"
    top = "eps" if f.numerator == 1 else f"{f.numerator}eps"
    return top if f.denominator == 1 else f"{top}/{f.denominator}"


def protocol_text(changes: dict) -> str:
    """A protocol (:func:`.runs_strength.protocol`) in words: "step eps/4, cosine, best iterate"."""
    return (f"step {step_text(changes['rel_stepsize'])}, {changes['pgd_schedule']}, "
            f"{changes['pgd_iterate']} iterate")


def interval_text(low: float, high: float) -> str:
    """A 95 % interval to one decimal, on one line (a no-break space): "[12.5, 62.5]"."""
    return f"[{float(low):.1f},\u00a0{float(high):.1f}]"


@dataclass
class Setting:
    """The chapter's world, its :func:`.runs_strength.base_world`, the paper's protocol
    (Table S1: the params' relative step, constant, last iterate) and when the chapter started."""

    world: World
    base: World
    paper: dict
    started: float


def setting(world: World) -> Setting:
    """The base world and the paper's protocol of ``world``; the clock starts."""
    started = time.perf_counter()
    return Setting(world, runs_strength.base_world(world),
                   runs_strength.protocol(world, None, "constant", "last"), started)


def setting_text(s: Setting) -> str:
    """The base protocol in one line."""
    p = s.world.params
    return (f"{p.world}: eps = {p.eps_255:g}/255, {len(s.base.images)} images, "
            f"{p.strength_steps} steps x {p.strength_eot} EOT samples, r = {p.strength_evals}")


def gradient_table(s: Setting) -> Table:
    """The checks of the full gradient (:func:`diffrob.attacks.gradcheck.checks`), the
    gradient of the path that runs (the world's ``autocast``) against float64 among them."""
    return Table(gradcheck.checks(s.world, n_images=1, eot=2, directions=3),
                 "tbl-strength-gradients", "Checks of the full gradient: finite differences, "
                 "checkpointing, EOT folding, no masking, the run's precision against float64 "
                 "(no table of the paper; the checks of Carlini et al. 2019).")


@dataclass
class Grid:
    """PGD-EOT's accuracy under each protocol (:func:`.runs_strength.step_grid`) and the
    strongest of them on the choice half (:func:`.runs_strength.choose`)."""

    frame: pd.DataFrame
    choice: runs_strength.Choice

    @property
    def strong(self) -> dict:
        """The chosen protocol (Params changes)."""
        return self.choice.protocol


def step_grid(s: Setting) -> Grid:
    """The step-size grid on the base world, read from the store or computed."""
    frame = runs_strength.step_grid(s.world)
    return Grid(frame, runs_strength.choose_on(s.world, frame))


def grid_table(g: Grid) -> Table:
    """The grid, its steps as fractions of eps (:func:`step_text`), accuracies to one decimal."""
    frame = g.frame.round(1).assign(rel_stepsize=g.frame["rel_stepsize"].map(step_text))
    return Table(frame.rename(columns={"rel_stepsize": "step", "accuracy": "all images",
                                      "choice half": "choice half (chooses)"}),
                 "tbl-strength-grid",
                 "PGD-EOT's robust accuracy under each step size, schedule and iterate, on all "
                 "images and on the half that chooses the protocol (no table of the paper; its "
                 "protocol is Table S1's first row).", index=False)


def split_text(s: Setting) -> str:
    """The held-out split (:func:`.runs_strength.halves`) in one line."""
    choice, report = runs_strength.halves(len(s.base.images))
    return (f"held-out split: {len(choice)} images choose the protocol (even positions), "
            f"{len(report)} report every attack (odd positions)")


def grid_text(g: Grid) -> str:
    """The protocol chosen on the choice half, whether it sits at the grid's edge, and what
    the best iterate gains over the last one (all images)."""
    grid = g.frame
    last = grid[grid["iterate"] == "last"].set_index("rel_stepsize")["accuracy"]
    best = grid[(grid["iterate"] == "best") & (grid["schedule"] == "constant")]
    best = best.set_index("rel_stepsize")["accuracy"]
    gains = {step_text(r): round(float(best[r] - last[r]), 1) for r in last.index}
    edge = ("AT THE GRID'S EDGE: " + "; ".join(g.choice.edges)) if g.choice.edges else \
        "inside the grid in every direction"
    return (f"strongest protocol, chosen on the choice half: {protocol_text(g.strong)} "
            f"({edge})\nbest minus last iterate (points, constant step): {gains}")


def curves_figure(s: Setting, strong: dict) -> Figure:
    """Robust accuracy against attack steps and EOT samples (PGD-EOT, ``strong`` protocol)
    and against eps (PGD-EOT under both protocols, BPDA-EOT, the transfer attack)."""
    p, world = s.world.params, s.world
    steps, eots = (runs_strength.curve(world, "pgd-eot", field, values, **strong)
                   for field, values in runs_strength.budget_values(p).items())
    eps_curves = {
        PAPER_NAME: ("pgd-eot", s.paper),
        STRONGEST_NAME: ("pgd-eot", strong),
        "BPDA-EOT, strongest protocol": ("bpda-eot", strong),
        "transfer from the bare classifier": ("transfer", strong),
    }
    eps = {name: runs_strength.curve(world, attack, "eps_255", p.strength_eps_255, **changes)
           for name, (attack, changes) in eps_curves.items()}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
    for ax, (df, field, label) in zip(axes, ((steps, "attack_steps", "PGD steps"),
                                             (eots, "eot", "EOT samples"))):
        ax.errorbar(df[field], df["accuracy"], yerr=[df["accuracy"] - df["low"],
                    df["high"] - df["accuracy"]], marker="o", capsize=3)
        ax.set_xlabel(label)
    for name, df in eps.items():
        axes[2].errorbar(df["eps_255"], df["accuracy"], yerr=[df["accuracy"] - df["low"],
                         df["high"] - df["accuracy"]], marker="o", capsize=3, label=name)
    axes[2].set_xlabel("eps (1/255)")
    axes[2].legend(fontsize=7)
    axes[0].set_ylabel("robust accuracy (%)")
    return fig


def convergence_text(s: Setting, strong: dict) -> str:
    """Where the steps and EOT curves of :func:`curves_figure` stop falling
    (:func:`.runs_strength.levels_off`), or that they still fall at the grid's end."""
    names = {"attack_steps": "PGD steps", "eot": "EOT samples"}
    lines = []
    for field, values in runs_strength.budget_values(s.world.params).items():
        at = runs_strength.levels_off(s.world, "pgd-eot", field, values, **strong)
        lines.append(f"{names[field]} {values}: " + (
            f"STILL FALLING at {values[-1]} (significantly below an earlier value): the grid "
            f"should extend further" if at is None else
            f"stops falling at {at} (no later value significantly lower, paired over images)"))
    return "\n".join(lines)


def side_by_side(s: Setting, strong: dict) -> pd.DataFrame:
    """The attacks at equal budget (:func:`.runs_strength.compare`), paired against our
    PGD-EOT under the ``strong`` protocol: the rows below, then ``strength_restarts`` restarts
    of that PGD-EOT and of APGD-CE, the vote attack for each judged k
    (:func:`.runs_strength.vote_ks`: k EOT samples, the vote's loss), the N-evaluation-aware
    PGD-EOT with N = ``attack_checks`` (at most r), and AutoAttack's two APGD attacks at its
    own budget (``autoattack_steps`` x ``autoattack_eot``) beside that PGD-EOT at as many
    gradient evaluations."""
    p = s.world.params
    restarts = p.strength_restarts
    checks = min(p.attack_checks, p.strength_evals)
    budget = {"attack_steps": p.autoattack_steps, "eot": p.autoattack_eot}
    at_budget = f"AutoAttack's budget ({p.autoattack_steps} x {p.autoattack_eot})"
    more = {
        f"{STRONGEST_NAME}, {restarts} restarts": ("pgd-eot", {**strong,
                                                               "attack_restarts": restarts}),
        f"APGD-CE-EOT, {restarts} restarts": ("apgd-eot", {"attack_restarts": restarts}),
        **{f"vote attack, k = {k}": ("vote-eot", {**strong, "eot": k})
           for k in runs_strength.vote_ks(p)},
        f"N-evaluation-aware PGD-EOT, N = {checks}": ("nevals-eot", {**strong,
                                                                     "attack_checks": checks}),
        f"APGD-CE-EOT, {at_budget}": ("apgd-eot", budget),
        f"APGD-DLR-EOT, {at_budget}": ("apgd-dlr-eot", budget),
        f"{STRONGEST_NAME}, {at_budget}": ("pgd-eot", {**strong, **budget}),
    }
    return runs_strength.compare(s.world, {
        PAPER_NAME: ("pgd-eot", s.paper),
        "PGD-EOT, best iterate, paper's step": ("pgd-eot", {**s.paper, "pgd_iterate": "best"}),
        STRONGEST_NAME: ("pgd-eot", strong),
        "APGD-CE-EOT (autoattack)": ("apgd-eot", {}),
        "APGD-DLR-EOT (autoattack)": ("apgd-dlr-eot", {}),
        "APGD-T-EOT (autoattack, targeted)": ("apgd-t-eot", {}),
        "Square (autoattack, gradient-free)": ("square", {}),
        "EOTPGD (torchattacks)": ("eotpgd", {"rel_stepsize": strong["rel_stepsize"]}),
        "BPDA-EOT, strongest protocol": ("bpda-eot", strong),
        "transfer from the bare classifier": ("transfer", strong),
        **more,
    }, reference=STRONGEST_NAME)


def side_table(side: pd.DataFrame) -> Table:
    """:func:`side_by_side`'s gradient evaluations per image, accuracy and paired difference
    to the strongest PGD-EOT on the report half, each with its interval, and the accuracy on
    all images (marked: the choice half included), to one decimal (worst-of-N:
    :func:`worst_of_n_table`, the vote: :func:`vote_table`; tables that fit the page)."""
    vs = side["vs " + STRONGEST_NAME].astype(float)
    frame = pd.DataFrame({
        "gradients": side["gradients"].astype(int),
        "accuracy": side["accuracy"].astype(float).round(1),
        "interval": [interval_text(lo, hi) for lo, hi in zip(side["low"], side["high"])],
        "vs strongest PGD-EOT (points)": vs.round(1),
        "its interval": [interval_text(lo, hi) for lo, hi in zip(side["diff low"],
                                                                 side["diff high"])],
        "all images*": side["all accuracy"].astype(float).round(1),
    }, index=side.index)
    return Table(frame, "tbl-strength-side", "The attacks side by side at equal budget on the "
                 "report half, paired against our strongest PGD-EOT; *all images: the choice "
                 "half included (no table of the paper).")


def worst_of_n_table(side: pd.DataFrame) -> Table:
    """:func:`side_by_side`'s worst-of-N accuracies and alpha = 0.5 cut on the report half, and
    the N-evaluation-aware attack's own count while optimising, to one decimal."""
    columns = [c for c in side.columns if c.startswith("N=")] + ["alpha=0.5"]
    own = side["own N"].astype(float).dropna()
    frame = side[columns].astype(float).round(1)
    frame[f"N={int(own.iloc[0]) if len(own) else 0}, while optimising"] = \
        side["while optimising"].astype(float).round(1)
    return Table(frame, "tbl-strength-worst-of-n",
                 "The attacks of the side-by-side table under N-evaluation after optimising and "
                 "the alpha = 0.5 cut on the report half, and the N-evaluation-aware attack's "
                 "own count while optimising (no table of the paper; N = r is Table 1's m = 0).")


def vote_table(side: pd.DataFrame) -> Table:
    """:func:`side_by_side`'s majority-vote accuracies on the report half for each judged k,
    with the paired difference to the strongest PGD-EOT's vote and its interval."""
    ks = [c.removeprefix("k=") for c in side.columns if c.startswith("k=") and " " not in c]
    frame = pd.DataFrame(index=side.index)
    for k in ks:
        frame[f"k={k}"] = side[f"k={k}"].astype(float).round(1)
        frame[f"k={k} vs strongest"] = side[f"k={k} vs"].astype(float).round(1)
        frame[f"k={k} interval"] = [interval_text(lo, hi) for lo, hi in
                                    zip(side[f"k={k} low"], side[f"k={k} high"])]
    return Table(frame, "tbl-strength-vote", "The attacks of the side-by-side table judged by "
                 "the majority vote of k runs on the report half, paired against our strongest "
                 "PGD-EOT (no table of the paper; Table 1's k columns).")


def strongest_text(side: pd.DataFrame) -> str:
    """The strongest attack of :func:`side_by_side` (ties named), its lead over the next with
    the paired interval (:func:`.runs_strength.compare`'s ``vs best``), the attacks it is not
    significantly stronger than, the paper's protocol and the worst case over all attacks."""
    acc = side["accuracy"].astype(float).drop(index="worst case")
    best_name = acc.idxmin()
    ties = [n for n in acc.index if n != best_name and acc[n] == acc[best_name]]
    others = acc.drop(index=[best_name, *ties])
    runner_up = others.idxmin() if len(others) else best_name
    lead = side.loc[runner_up]
    level = [n for n in others.index if float(side.loc[n, "best low"]) <= 0]
    return (
        f"**Strongest here:** {best_name}, {acc[best_name]:.1f} % "
        f"[{float(side.loc[best_name, 'low']):.1f}, {float(side.loc[best_name, 'high']):.1f}]"
        + (f" (tied with {', '.join(ties)})" if ties else "") +
        f", {float(lead['vs best']):.1f} points below the next ({runner_up}; paired "
        f"{interval_text(float(lead['best low']), float(lead['best high']))}). "
        + (f"Not significantly stronger than: {'; '.join(level)}. " if level else
           "Significantly stronger than every other attack. ") +
        f"The paper's protocol leaves {float(side.loc[PAPER_NAME, 'accuracy']):.1f} %; "
        f"the worst case over all attacks {float(side.loc['worst case', 'accuracy']):.1f} %.")


def autoattack_table(s: Setting) -> Table:
    """AutoAttack's own number beside its examples re-evaluated r times
    (:func:`.runs_strength.autoattack_example` on the base world)."""
    r = s.world.params.strength_evals
    aa = runs_strength.autoattack_example(s.base)
    frame = pd.DataFrame({"AutoAttack's own robust accuracy (1 evaluation)": [aa["own"]],
                          f"its examples, standard robust accuracy (r = {r})": [aa["accuracy"]],
                          "interval": [interval_text(aa["low"], aa["high"])],
                          f"its examples, N = r ({r})": [aa["m=0"]]})
    return Table(frame.round(1).T.rename(columns={0: "%"}), "tbl-strength-autoattack",
                 "AutoAttack's own number beside its examples re-evaluated r times (no table of "
                 "the paper; the point of the paper's sec. 4).")


def run_time(s: Setting) -> str:
    """How long the chapter took since :func:`setting`."""
    return f"chapter run time: {time.perf_counter() - s.started:.0f} s"
