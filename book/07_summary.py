# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,mystnb,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Summary
#
# Every claim that the chapters checked is listed here with the paper's value, the value measured in
# this world with its 95 % interval, the criterion the claim is judged by and the verdict; then with
# the paper's words and where that criterion comes from in the paper. The rows are not written by
# hand: each chapter passes its per-image measurements to `diffrob.claims.record`, which reads the
# claim's criterion from `paper_data/<section>.yaml` (fixed from the paper's own numbers and words
# before any result was seen) and decides; this chapter reads the rows back with
# `diffrob.claims.table`. It runs last. A chapter that has not run for this world and this parameter
# set contributes no rows (in Colab: only the chapters run in that runtime).
#
# A verdict is **holds** when the whole interval meets the criterion, **does not hold** when
# the whole interval misses it, **inconclusive** when the interval straddles it (more images
# would decide), and **not tested** when this world cannot measure it (e.g. no PGD on ImageNet).

# %% tags=["remove-cell"]
# Colab: fetch and install the project (a GPU runtime can run params/cifar10.yaml).
# Written by scripts/build_book.py from _config.yml (repository); edit it there.
import os, subprocess, sys
if "google.colab" in sys.modules:
    if not os.path.exists("/content/diffrob"):
        subprocess.run(["git", "clone", "-b", "main", "https://github.com/diffrob-book/diffusion-robustness", "/content/diffrob"], check=True)
        # Colab's own torch stays: the other requirements at the tested versions, then the project
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "/content/diffrob/requirements-colab.txt"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", "/content/diffrob"], check=True)
    os.chdir("/content/diffrob")
    sys.path.insert(0, "/content/diffrob/lib")
    print("Colab: results are stored in this runtime only (results/); the Summary lists the "
          "chapters run in this runtime.")
# %% tags=["parameters"]
params_file = "params/digits.yaml"

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator
from IPython.display import Markdown, display

from diffrob import claims, params, store, verdicts

P = params.load_notebook(params_file, globals())
digest = claims.params_digest(P)
rows = pd.DataFrame(claims.table(P), columns=["section", "claim", *claims.COLUMNS])
rows["section"] = rows["section"].map(claims.SECTION_NAMES)

from diffrob.figures import Reproduce, Table, glue
reproduce = Reproduce(P, params_file, "07_summary")

# %% [markdown]
# ## The parameter set
# Claims are stored per parameter set (the digest of every parameter that can change a result),
# so a run with other parameters (say `-p eot 5`) never mixes into this page. Only the set of
# this page's parameters is shown; other sets found for this world are listed with how they
# differ.

# %%
others = {d: s for d, s in claims.parameter_sets(P).items() if d != digest}
mine = {k: v for k, v in P.as_dict().items() if k not in store.NOT_RESULT}
lines = [f"World **{P.world}**, parameters `{params_file}` (with any `-p` overrides), "
         f"digest `{digest}`: **{len(rows)}** claims recorded."]
for d, settings in others.items():
    differ = {k: v for k, v in settings.items() if mine.get(k, v) != v}
    lines.append(f"- not shown: set `{d}` ("
                 + (", ".join(f"{k} = {v}" for k, v in differ.items()) or "same values") + ")")
Markdown("\n".join(lines))

# %% [markdown]
# ## Every claim: the paper's value, ours, the criterion and the verdict
# In the book's order (section, then as the chapter records them). *ours* is the statistic
# with its 95 % interval in brackets (Wilson for fractions, bootstrap over the images
# otherwise, paired where two conditions are compared on the same images); a claim with
# parts (every attack, every sampler) lists each part and holds only when every part holds.
# What each claim says in the paper's words, and where its criterion comes from, follows in
# {numref}`tbl-summary-sources`.

# %%
Table(rows[["section", "claim", "paper", "ours", "criterion", "verdict"]], "tbl-summary-claims",
      f"Every claim of the paper in the `{P.world}` world (parameters `{params_file}`, digest "
      f"`{digest}`): the paper's value, ours, the criterion and the verdict (no table of the "
      "paper).", index=False)

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## What each claim says, and where its criterion comes from

# %%
Table(rows[["section", "claim", "words", "source"]], "tbl-summary-sources",
      "The claims of the table of verdicts above in the paper's words, and the passage or table "
      "of the paper that fixes each criterion (no table of the paper).", index=False)

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## Verdicts by section
# The sections in the order of {numref}`tbl-summary-claims`, from the top.

# %% mystnb={"figure": {"caption": "The verdicts of the paper's claims in this world, by section (no figure of the paper).", "name": "fig-summary-verdicts"}}
order = [n for n in claims.SECTION_NAMES.values() if n in set(rows["section"])]
counts = (rows.groupby([pd.Categorical(rows["section"], categories=order), "verdict"],
                       observed=False).size().unstack(fill_value=0)
          .reindex(index=order, columns=list(verdicts.VERDICTS), fill_value=0))
fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * max(len(counts), 1)))
if len(counts):
    counts.plot.barh(stacked=True, ax=ax,
                     color=["tab:green", "tab:red", "tab:orange", "tab:gray"])
    ax.invert_yaxis()                 # first section on top, as in the table
    ax.legend(title="verdict", bbox_to_anchor=(1.02, 1), loc="upper left")
else:
    ax.text(0.5, 0.5, f"no claims recorded under {P.store_dir} for digest {digest}",
            ha="center", va="center")
    ax.set_yticks([])
ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax.set_xlabel("claims")
ax.set_ylabel("section")
ax.set_title(f"Claims of the paper tested in the {P.world} world")
plt.show()

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## What it says here

# %%
n = rows["verdict"].value_counts().reindex(list(verdicts.VERDICTS), fill_value=0)
failed = rows.loc[rows["verdict"] == verdicts.FAILS, ["section", "words"]]
Markdown(
    f"Claims recorded in the `{P.world}` world: **{len(rows)}**. Holding here: "
    f"**{n[verdicts.HOLDS]}**; not holding: **{n[verdicts.FAILS]}**; inconclusive: "
    f"**{n[verdicts.INCONCLUSIVE]}**; not tested: **{n[verdicts.NOT_TESTED]}**."
    + ("" if failed.empty else " The claims that do not hold here: "
       + "; ".join(f"{s}: \"{w}\"" for s, w in failed.itertuples(index=False)) + ".")
)

# %% [markdown]
# ## Across worlds: the same claims at three dimensions
# One row per claim: the paper's value (CIFAR-10, d = 3072), then each world that has recorded
# claims, ours and the verdict (the claims' words are in {numref}`tbl-summary-sources`). For this
# page's world the claims of this page's parameter set; for every other world those of its default
# parameter file `params/<world>.yaml` (a world whose chapters have not run with it has no columns).
# The embedded worlds test the mechanism at d = 784 (`mnist`) and d = 64 (`digits`).

# %%
WORLDS = ("cifar10", "imagenet", "mnist", "digits")   # by dimension, the paper's first
digests = claims.default_digests(P.results_dir, tuple(w for w in WORLDS if w != P.world))
digests[P.world] = digest
across = claims.cross_world(P.results_dir, {w: digests[w] for w in (*WORLDS, P.world)
                                            if w in digests})
across = across.rename(index=claims.SECTION_NAMES, level="section")
(Table(across, "tbl-summary-worlds", "The paper's claims across worlds: the paper's value "
       "(CIFAR-10, d = 3072) and, per world, ours and the verdict (no table of the paper).")
 if len(across) else Markdown("*No claims recorded in any world yet.*"))

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# A claim that holds in the `digits` world shows that the mechanism appears in a small
# diffusion model trained on 8x8 digits. The paper's values come from CIFAR-10 and
# ImageNet models that are a thousand times larger. Most criteria test the direction of a
# claim, which a small world can test; the few that test a value (the compression rate, the
# largest Jacobian eigenvalue, the share of small eigenvalues, the mean psychometric slope)
# are judged against CIFAR-10's numbers and can miss in a small world for that reason alone.
# To check the values themselves, build the book with `params/cifar10.yaml` and the paper's
# checkpoints (see the Introduction). Each chapter explains its own verdicts.
