# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,mystnb,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Summary
#
# Every claim that the chapters checked is listed here with the paper's value, the value measured in
# this world with its 95 % interval, the criterion the claim is judged by, the verdict and the power
# of the test; then with the paper's words, where that criterion comes from in the paper and when it
# was fixed. The rows are not written by hand: each chapter passes its per-image measurements to
# `diffrob.claims.record`, which reads the claim's criterion from `paper_data/<section>.yaml`
# (derived from the paper's own numbers and words) and decides; this chapter reads the rows back
# with `diffrob.claims.table`. It runs last. A chapter that has not run for this world and this
# parameter set contributes no rows (in Colab: only the chapters run in that runtime).
#
# A verdict is **holds** when the whole interval meets the criterion, **does not hold** when
# the whole interval misses it, **inconclusive** when the interval straddles it (more images
# would decide), **underpowered** when it straddles it and the test could not have seen the
# paper's own effect at this number of images (below), and **not tested** when this world cannot
# measure it (e.g. no PGD on ImageNet).
#
# **Power.** Each claim tests an effect: the distance between the paper's value and the
# criterion's bar (for a window, its half-width), recorded with its source in `paper_data`. The
# *MDE* column is the minimum detectable effect of our interval at 80 % power: an interval of
# half-width h has standard error h / 1.96, and an effect of (1.96 + 0.84) standard errors from the
# bar clears it in 80 % of data sets (`diffrob.verdicts.mde`). *n needed* is the number of units
# (images, slices, the examples an attack fooled) at which the MDE would equal the paper's effect,
# n (MDE / effect)^2 (`diffrob.verdicts.n_needed`). An undecided claim whose MDE is larger than the
# paper's effect is underpowered, not evidence against the paper.
#
# **Registration.** Every criterion says when it was fixed: *pre* (before the world's first results,
# as the git log shows) or *post hoc* with the date it was written or changed, after results had
# been seen. Each section's claims are frozen by a digest in `paper_data/frozen.yaml`; a test fails
# when a claim changes without a newly recorded digest, so no criterion moves silently.

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
    # params/cifar10.yaml and imagenet.yaml read the paper's files: once the parameters cell
    # below names one, `diffrob fetch` downloads those that are missing (once a runtime)
    def fetch_world_files(result=None, fetched=set()):
        world = next((w for w in ("cifar10", "imagenet") if w in str(globals().get("params_file"))), None)
        if world and world not in fetched:
            fetched.add(world)
            subprocess.run(["diffrob", "fetch", world, "--params", params_file], check=True)
    get_ipython().events.register("post_run_cell", fetch_world_files)
    print("Colab: results are stored in this runtime only (results/); the Summary lists the "
          "chapters run in this runtime.")
# %% tags=["parameters"]
params_file = "params/digits.yaml"

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
from IPython.display import Markdown
from diffrob import chapter
ch = chapter.open(params_file, globals(), "07_summary")
P, reproduce, glue = ch.P, ch.reproduce, ch.glue
from diffrob.summary import report

# %% [markdown]
# ## The parameter set
# Claims are stored per parameter set (the digest of every parameter that can change a result),
# so a run with other parameters (say `-p eot 5`) never mixes into this page. Only the set of
# this page's parameters is shown; other sets found for this world are listed with how they
# differ.

# %%
r = report.recorded(P, params_file)
Markdown(report.parameter_sets(r))

# %% [markdown]
# ## Every claim: the paper's value, ours, the criterion and the verdict
# In the book's order (section, then as the chapter records them). *ours* is the statistic
# with its 95 % interval in brackets (Wilson for fractions, bootstrap over the images
# otherwise, paired where two conditions are compared on the same images); a claim with
# parts (every attack, every sampler) lists each part and holds only when every part holds.
# *MDE* and *n needed* are in the claim's unit; for a claim with parts they are those of its
# weakest undecided part. What each claim says in the paper's words, where its criterion comes
# from and when it was fixed follows in {numref}`tbl-summary-sources`.

# %%
report.claims_table(r)

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## What each claim says, where its criterion comes from, and when it was fixed
# *registered* is *pre* for a criterion fixed before this world's first results and *post hoc*
# (with its date) for one written or changed after them (`paper_data/<section>.yaml`, frozen by
# `paper_data/frozen.yaml`; each world's first results: `paper_data/first_results.yaml`). The
# criteria were written after the digits world's first results, so they are post hoc on
# digits and mnist and pre-registered on CIFAR-10 and ImageNet, of which no result had been
# seen. Every verdict is judged again from its stored measurement when this page is built.

# %%
report.sources_table(r)

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## Verdicts by section
# The sections in the order of {numref}`tbl-summary-claims`, from the top.

# %% mystnb={"figure": {"caption": "The verdicts of the paper's claims in this world, by section (no figure of the paper).", "name": "fig-summary-verdicts"}}
report.verdicts_figure(r)
plt.show()

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## What it says here

# %%
Markdown(report.what_it_says(r))

# %% [markdown]
# ## Across worlds: the same claims at three dimensions
# One row per claim: the paper's value (CIFAR-10, d = 3072), then each world that has recorded
# claims, ours and the verdict (the claims' words are in {numref}`tbl-summary-sources`). For this
# page's world the claims of this page's parameter set; for every other world those of its default
# parameter file `params/<world>.yaml` (a world whose chapters have not run with it has no columns).
# The embedded worlds test the mechanism at d = 784 (`mnist`) and d = 64 (`digits`).

# %%
report.across_worlds(P)

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# A claim that holds in the `digits` world shows that the mechanism appears in a small
# diffusion model trained on 8x8 digits. The paper's values come from CIFAR-10 and
# ImageNet models that are a thousand times larger. Many criteria test the direction of a
# claim, which a small world can test; those that test a magnitude (the l_inf growth at half
# the paper's ratio, BPDA's over-estimate at half the paper's gap, the compression rate, the
# largest Jacobian eigenvalue within the paper's 95 % interval, the share of small eigenvalues,
# the mean psychometric slope within the paper's 95 % interval) are judged against CIFAR-10's
# numbers and can miss in a small world for that reason alone. The *n needed* column says how
# many images a decided verdict would take where this world has too few.
# To check the values themselves, build the book with `params/cifar10.yaml` and the paper's
# checkpoints (see the Introduction). Each chapter explains its own verdicts.
