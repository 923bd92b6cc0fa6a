"""What the Summary shows: every claim recorded for this page's parameter set, with the
paper's value, ours, the criterion, the verdict and its power (the minimum detectable effect
and the n that would detect the paper's effect; :func:`diffrob.claims.table`), each claim's
words, source and registration (pre-registered or post hoc), the verdicts counted by
section, and the same claims across worlds (:func:`diffrob.claims.cross_world`)."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import claims, verdicts
from ..figures import Table
from ..params import Params
from . import analysis

WORLDS = ("cifar10", "imagenet", "mnist", "digits")   # by dimension, the paper's first
VERDICT_COLOURS = ["tab:green", "tab:red", "tab:orange", "tab:purple", "tab:gray"]  # VERDICTS order
ROW_COLUMNS = ["section", "claim", *claims.COLUMNS, "registered"]


@dataclass(frozen=True)
class Recorded:
    """The claim rows of one parameter set (``digest``), sections by the paper's numbers."""

    p: Params
    params_file: str
    digest: str
    rows: pd.DataFrame


def recorded(p: Params, params_file: str) -> Recorded:
    """Every claim the chapters recorded for ``p``'s world and parameter set, in book order."""
    table = claims.table(p)
    rows = pd.DataFrame(table, columns=ROW_COLUMNS).fillna("")  # rows recorded before a
    rows["section"] = rows["section"].map(claims.SECTION_NAMES)  # field was added: ""
    rows["other protocols"] = [analysis.protocol_verdicts(t.get("protocols", {})) for t in table]
    return Recorded(p, params_file, claims.params_digest(p), rows)


def parameter_sets(r: Recorded) -> str:
    """Markdown: this page's parameter set and the number of its claims; the other sets found
    for this world, each with the settings in which it differs."""
    mine = claims.settings(r.p)
    lines = [f"World **{r.p.world}**, parameters `{r.params_file}` (with any `-p` overrides), "
             f"digest `{r.digest}`: **{len(r.rows)}** claims recorded."]
    for d, settings in claims.parameter_sets(r.p).items():
        if d == r.digest:
            continue
        differ = analysis.differing(settings, mine)
        lines.append(f"- not shown: set `{d}` ("
                     + (", ".join(f"{k} = {v}" for k, v in differ.items()) or "same values") + ")")
    return "\n".join(lines)


def claims_table(r: Recorded) -> Table:
    """Every claim: section, claim, the paper's value, ours, the criterion, the verdict, the
    minimum detectable effect, the n that would detect the paper's effect, and the verdicts
    under the other attack protocols it was judged under (sec. 4: chapter 4b's strongest)."""
    return Table(r.rows[["section", "claim", "paper", "ours", "criterion", "verdict", "MDE",
                         "n needed", "other protocols"]], "tbl-summary-claims",
                 f"Every claim of the paper in the `{r.p.world}` world (parameters "
                 f"`{r.params_file}`, digest `{r.digest}`): the paper's value, ours, the "
                 "criterion, the verdict, the minimum detectable effect (MDE, 80 % power), "
                 "the n that would detect the paper's effect and the verdicts under other "
                 "attack protocols (no table of the paper).",
                 index=False)


def sources_table(r: Recorded) -> Table:
    """Every claim in the paper's words, the passage of the paper that fixes its criterion,
    and whether the criterion was pre-registered or fixed post hoc (with the date)."""
    return Table(r.rows[["section", "claim", "words", "source", "registered"]],
                 "tbl-summary-sources",
                 "The claims of the table of verdicts above in the paper's words, the passage "
                 "or table of the paper that fixes each criterion, and when the criterion was "
                 "fixed: pre-registered, or post hoc on the date given (no table of the paper).",
                 index=False)


def verdicts_figure(r: Recorded) -> Figure:
    """The verdicts stacked by section, the first section on top (as in the table)."""
    counts = analysis.verdict_counts(r.rows, list(claims.SECTION_NAMES.values()),
                                     verdicts.VERDICTS)
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * max(len(counts), 1)))
    if len(counts):
        counts.plot.barh(stacked=True, ax=ax, color=VERDICT_COLOURS)
        ax.invert_yaxis()
        ax.legend(title="verdict", bbox_to_anchor=(1.02, 1), loc="upper left")
    else:
        ax.text(0.5, 0.5, f"no claims recorded under {r.p.store_dir} for digest {r.digest}",
                ha="center", va="center")
        ax.set_yticks([])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("claims")
    ax.set_ylabel("section")
    ax.set_title(f"Claims of the paper tested in the {r.p.world} world")
    return fig


def what_it_says(r: Recorded) -> str:
    """Markdown: the counts of each verdict and of pre-registered criteria, and the words of
    every claim that does not hold here."""
    n = analysis.tally(r.rows["verdict"], verdicts.VERDICTS)
    pre = analysis.pre_registered(r.rows["registered"])
    failed = r.rows.loc[r.rows["verdict"] == verdicts.FAILS, ["section", "words"]]
    return (
        f"Claims recorded in the `{r.p.world}` world: **{len(r.rows)}**. Holding here: "
        f"**{n[verdicts.HOLDS]}**; not holding: **{n[verdicts.FAILS]}**; inconclusive: "
        f"**{n[verdicts.INCONCLUSIVE]}**; underpowered: **{n[verdicts.UNDERPOWERED]}**; not "
        f"tested: **{n[verdicts.NOT_TESTED]}**. Criteria pre-registered: **{pre}** of "
        f"{len(r.rows)} (the others were fixed post hoc, after results had been seen)."
        + ("" if failed.empty else " The claims that do not hold here: "
           + "; ".join(f"{s}: \"{w}\"" for s, w in failed.itertuples(index=False)) + ".")
    )


def across_worlds(p: Params) -> Table | Markdown:
    """One row per claim: the paper's value, then per world ours and the verdict.

    This page's world shows ``p``'s parameter set; every other world that of its default
    parameter file ``params/<world>.yaml``.
    """
    digests = claims.default_digests(p.results_dir, tuple(w for w in WORLDS if w != p.world))
    digests[p.world] = claims.params_digest(p)
    across = claims.cross_world(p.results_dir, {w: digests[w] for w in (*WORLDS, p.world)
                                                if w in digests})
    if not len(across):
        return Markdown("*No claims recorded in any world yet.*")
    across = across.rename(index=claims.SECTION_NAMES, level="section")
    return Table(across, "tbl-summary-worlds", "The paper's claims across worlds: the paper's "
                 "value (CIFAR-10, d = 3072) and, per world, ours and the verdict (no table of "
                 "the paper).")
