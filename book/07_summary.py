# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
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
# Every claim that the chapters checked is listed here with the paper's number, the
# number measured in this world, and whether the claim holds here. The rows are not
# written by hand: each chapter records its verdicts with `diffrob.claims.record` when
# it runs, and this chapter reads them back with `diffrob.claims.table`. It runs last.
# A chapter that has not run for this world contributes no rows.

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

# %%
import re

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator
from IPython.display import Markdown

from diffrob import claims, params

P = params.load_notebook(params_file, globals())

# %% [markdown]
# ## Every claim, the paper's number and ours
#
# The claims are in section order. "holds here" is *yes* or *no* when the chapter
# could test the claim in this world, and *not tested* when it could not (for
# example, the paper ran no PGD attack on ImageNet).

# %%
VERDICT = {True: "yes", False: "no", None: "not tested"}
rows = pd.DataFrame(claims.table(P), columns=["section", "claim", "paper", "ours", "holds"])
# Records are named after the paper's sections ("sec31" is sec. 3.1).
rows["section"] = [re.sub(r"^sec(\d)(\d?)$", lambda m: ".".join(filter(None, m.groups())), s)
                   for s in rows["section"]]
rows["holds here"] = rows.pop("holds").map(VERDICT)
(rows.style.hide(axis="index").set_caption(f"World: {P.world}, parameters: {params_file}")
 .set_properties(**{"text-align": "left", "vertical-align": "top"}))

# %% [markdown]
# ## Verdicts by section

# %%
counts = rows.groupby(["section", "holds here"]).size().unstack(fill_value=0)
counts = counts.reindex(columns=list(VERDICT.values()), fill_value=0)
fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * max(len(counts), 1)))
if len(counts):
    counts.plot.barh(stacked=True, ax=ax, color=["tab:green", "tab:red", "tab:gray"])
    ax.invert_yaxis()
    ax.legend(title="holds here", bbox_to_anchor=(1.02, 1), loc="upper left")
else:
    ax.text(0.5, 0.5, f"no claims recorded under {P.store_dir}", ha="center", va="center")
    ax.set_yticks([])
ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax.set_xlabel("claims")
ax.set_ylabel("section")
ax.set_title(f"Claims of the paper tested in the {P.world} world")
plt.show()

# %% [markdown]
# ## What it says here

# %%
n = rows["holds here"].value_counts().reindex(list(VERDICT.values()), fill_value=0)
failed = rows.loc[rows["holds here"] == "no", ["section", "claim"]]
Markdown(
    f"Claims recorded in the `{P.world}` world: **{len(rows)}**. Holding here: "
    f"**{n['yes']}**; not holding: **{n['no']}**; not tested: **{n['not tested']}**."
    + ("" if failed.empty else " The claims that do not hold here: "
       + "; ".join(f"{s}: {c}" for s, c in failed.itertuples(index=False)) + ".")
)

# %% [markdown]
# A claim that holds in the `digits` world shows that the mechanism appears in a small
# diffusion model trained on 8x8 digits. The paper's values come from CIFAR-10 and
# ImageNet models that are a thousand times larger, so agreement in direction is what
# this world can test, not agreement in value. To check the values themselves, build
# the book with `params/cifar10.yaml` and the paper's checkpoints (see the
# Introduction). Each chapter explains its own verdicts.
