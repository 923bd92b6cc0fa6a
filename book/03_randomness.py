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
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3.2 Randomness largely determines the purified states
# **What the paper claims.** A diffusion purifier is a random map y = f_eps(x); fixing its
# noise eps (its seeds, {ref}`eq. (9) <eq9>`) makes it deterministic. Two experiments on CIFAR-10 (sec. 3.2,
# Fig. 2): pass one fixed input through DiffPure 100 times with different seeds, or pass 100
# inputs drawn uniformly from the l_inf ball of 8/255 around the clean image through it with one
# fixed seed. The purified directions are only weakly correlated across seeds (mean correlation
# 0.2368, Fig. 2b) but almost identical across inputs (0.9954, Fig. 2a): for perturbations of
# adversarial size the seed, not the input, decides where the purified image lands. Measured
# as the l2 distance to the centroid of the 100 outputs (Fig. 2f), the purifier reduces the
# spread of the inputs when the noise is fixed and increases it when the noise varies.
#
# **What "direction" means here.** We take the purified image minus the *clean* image,
# f(x) - x0, flattened, and correlate the 100 such vectors of one clean image with
# `np.corrcoef`. Measured from the purified clean image f_s(x0) instead, the fixed-seed
# directions would be the small compressed differences f_s(x0 + eta) - f_s(x0), which follow
# the independent random eta and could not correlate at 0.9954; and sec. 6 of the paper calls
# f(x0) - x0 "the shift of the entire image neighborhood as analyzed in Sec. 3.2". The fixed
# input is the clean image x0 itself, the centre of the ball.
#
# The experiments run in `diffrob.distances.runs.randomness` (one image's seeds against its
# inputs, the directions' correlations by `diffrob.distances.analysis.mean_correlation`).

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
from diffrob import chapter
ch = chapter.open(params_file, globals(), "03_randomness")
P, reproduce, glue = ch.P, ch.reproduce, ch.glue
from diffrob.distances import report_randomness as report

# %% [markdown]
# ## Three ways to vary the purification
# For each of the first `randomness_images` test images x0 (batch index of {ref}`eq. (9) <eq9>` kept):
# *fixed seed*: `n_neighbours` inputs x0 + eta_k (eta uniform in the l_inf ball of
# `randomness_eps_255`/255, the paper's 8/255, clipped to [0,1]) under base seed `base_seed`;
# *fixed input*: x0 under base seeds 0 .. `n_seeds` - 1; *both vary*: x0 + eta_k under base
# seed k. The *perturbation* row is the unpurified directions eta_k, for comparison. When this
# world's attack radius `eps_255` differs from the ball, the fixed-seed experiment is repeated
# with the attack's radius (last row).

# %%
r = report.randomness(ch.world)
report.correlation_table(r)

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## Fig. 2a/b: correlation matrices of the first image
# Each entry is the correlation between two purified directions f(x) - x0 of the first test
# image: across inputs with one seed (left), across seeds with one input (middle), both varying
# (right).

# %% mystnb={"figure": {"caption": "Correlation matrices of the purified directions f(x) - x0 of the first image across seeds and across inputs; reproduces the paper's Fig. 2a/b.", "name": "fig-randomness-corr"}}
report.correlation_figure(r)
plt.show()

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## Fig. 2f: distance to the centroid
# For each image, the l2 distance of each of its outputs to the mean of its outputs, pooled over
# images; "perturbation" is the same for the unpurified inputs (ball `randomness_eps_255`/255).

# %% mystnb={"figure": {"caption": "Distance of each output to its image's centroid, pooled over the images; reproduces the paper's Fig. 2f.", "name": "fig-randomness-centroid"}}
report.centroid_figure(r)
plt.show()

# %% tags=["remove-input"]
reproduce()

# %%
report.centroid_table(r)

# %% tags=["remove-input"]
reproduce()

# %%
report.randomness_claims(r)

# %% tags=["remove-input"]
reproduce()

# %% tags=["remove-input"]
# The numbers of "What it says here", glued into its text.
said = report.randomness_said(r)
glue("rand_seeds", said["rand_seeds"])
glue("rand_inputs", said["rand_inputs"])

# %% [markdown]
# **What it says here.** {numref}`tbl-randomness-corr` puts our two correlations, {glue:text}`rand_seeds` across
# seeds and {glue:text}`rand_inputs` across inputs, beside the paper's 0.2368 and 0.9954
# (Fig. 2a/b, {numref}`fig-randomness-corr` here): if the seed decides the purified state, the fixed-seed directions correlate far more
# than the fixed-input ones. The last row (when present) shows how far that holds for a ball
# of this world's attack radius: the larger the ball, the more the input matters. The histogram ({numref}`fig-randomness-centroid`) is Fig. 2f: the fixed-seed outputs should sit closer
# to their centroid than the inputs did (the purifier compresses the neighbourhood, the topic of
# sec. 6), the outputs under varying seeds farther. Together they say why EOT matters for
# attacking a purifier: a gradient computed under one seed points to a purified state that
# another seed will not reach.
