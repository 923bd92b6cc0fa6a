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
# # 3.1 Diffusion models push purified images away from clean images
# **What the paper claims.** If purification "recovered the clean image", the distance between
# the purified image and the clean image would be smaller than the perturbation's. It is not
# (sec. 3.1, Fig. 1c/d, Fig. S1, Tables S2-S3): on CIFAR-10 with adversarial examples of
# l_inf = 8/255 (l2 about 1.0-1.2), DiffPure's forward process carries the image to l2 about 9.0
# and the reverse process brings it back only to about 3.6, more than three times the input's
# distance (l_inf: 0.031 -> 0.31). All four attacks (BPDA, BPDA-EOT, PGD, PGD-EOT) behave alike,
# and like uniform noise of the same size. Only for much larger uniform noise does the
# purified image end closer to the clean image than the input was ("shrinkage"; beyond
# 16/255 in the text, from the row whose t = 0 values are those of 32/255 in the tables).
# The other samplers and a perceptual measure agree (Table S5): l2 and l_inf grow for DDPM,
# reverse-only, one-step and DDIM purification, while SSIM to the clean image falls from 0.963
# to 0.79-0.87.
#
# This chapter follows DiffPure's states step by step with
# `diffrob.distances.runs.distance_curves`, purifies with every sampler with
# `diffrob.distances.runs.by_samplers`, and measures with `diffrob.distances.analysis.l2`,
# `diffrob.distances.analysis.linf` and `diffrob.distances.analysis.ssim`.

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
ch = chapter.open(params_file, globals(), "02_distances")
P, reproduce, glue = ch.P, ch.reproduce, ch.glue
from diffrob.distances import report

# %% [markdown]
# ## The perturbed inputs
# The adversarial examples of each attack in `attacks` at sec. 3.1's radius (eps =
# `distances_eps_255`/255 where the parameter file gives it, else `eps_255`/255: chapter 1's
# regime rule puts the purifier's own distance at about 3x the attack's, as in Table S2;
# `diffrob.distances.runs.at_sec31_radius`), made against
# the purified system and kept in the results store: computed here only if missing, and
# uniform noise U(-eps, eps) per pixel for each level in `uniform_eps_255` plus the attack's own
# eps, unclipped as in the paper (see the conventions below) and clipped to [0,1]. Every input is purified by DiffPure (`ddpm`, t* forward and t* reverse steps, base seed
# `base_seed`, {ref}`eq. (9) <eq9>`'s batch indices), and we measure its distance to the clean image at every
# one of the 2 t* + 1 states.

# %%
r = report.distances(ch.world)

# %% [markdown]
# ## Distances along the purification (Fig. 1c/d, Fig. S1)
# Mean over the test images (band: ± one standard deviation). Left: the attacks and uniform
# noise of the same size; right: uniform noise of growing size. The dotted line is t*, where the
# forward process ends and the reverse process begins.

# %% mystnb={"figure": {"caption": "l2 and l_inf distance to the clean image along DiffPure's purification, mean \u00b1 one standard deviation over the test images; reproduces the paper's Fig. 1c/d and Fig. S1.", "name": "fig-distances"}}
report.distances_figure(r)
plt.show()

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## Tables S2 and S3: init (t = 0), max (t = t*), end (t = 2 t*)
# Mean ± std over the test images. The paper's columns are CIFAR-10's at eps = 8/255 (or
# ImageNet's, Table S4), so their sizes are not ours when this world's eps or image size
# differs; what carries over is the shape: a large rise during the forward process and an end
# point above the starting point for small perturbations.
#
# Conventions. *Init* is the input itself (state 0 of the trajectory), also in a world whose
# diffusion model works at another size (ImageNet 224 <-> 256): the bilinear round trip would
# shrink uniform 4/255 noise from l2 3.51 to 1.99 before purification starts. *Uniform noise*:
# the paper's init values are those of unclipped noise (Table S2's 16.051 ± 0.129 is
# eps sqrt(3072 / 3) for 128/255), so the rows `uniform_*` and the claims below purify unclipped
# noise, as the paper did (the model's input 2x - 1 then leaves [-1, 1] a little); the rows
# `uniform_*, clipped` purify the same draw clipped to [0,1], the inputs an attacker could submit.

# %%
report.l2_table(r)

# %% tags=["remove-input"]
reproduce()

# %%
report.linf_table(r)

# %% tags=["remove-input"]
reproduce()

# %%
report.distance_claims(r)

# %% tags=["remove-input"]
reproduce()


# %% [markdown]
# ## A Gaussian toy model: eq. 3's noise and a prior whose peak is not the clean image
# The paper models a purifier's randomness by additive Gaussian noise, f(x) = x + eta with
# eta ~ N(0, sigma^2 I) ({ref}`eq. (3) <eq3>`, sec. 4.1), which makes a classifier's decision
# fuzzy (Fig. 3a), and explains the push-away by clean images not being the peaks of the
# prior (sec. 3.1). Both hold exactly in a toy model we compute here (the paper has no such
# computation): data x0 ~ N(mean, covariance of this world's test images), DiffPure's forward
# process to t* written as eq. 3 (x_t / sqrt(alpha_bar) = x + eta, sigma^2 = (1 - alpha_bar) /
# (4 alpha_bar) in pixel units), and the exact reverse process, a draw of the posterior
# p(x0 | x_t). With the covariance's eigenvalues v_i and lambda_i = v_i / (v_i + sigma^2), the
# mean squared end distance is sum_i 2 v_i sigma^2 / (v_i + sigma^2) + ||delta||^2 mean_i
# lambda_i^2: a floor that no input goes below, plus the input's perturbation shrunk
# (`diffrob.distances.analysis.toy_end_distance2`, checked by sampling the posterior in
# `diffrob.distances.analysis.toy_monte_carlo`, run on this world by
# `diffrob.distances.runs.gaussian_toy`). Left, Fig. 3a's shape under eq. 3 for a linear
# classifier (`diffrob.distances.analysis.fuzzy_grade`); right, the toy's end distance against
# the init distance beside DiffPure's measured ones. The claim `gaussian_toy_model` (table
# above) asks whether the toy pushes uniform noise of the attack's size away by more than
# 100 %, the bar of `l2_grows`.
#
# ```{math}
# :name: eq3
# f(\boldsymbol{x}) = \boldsymbol{x} + \boldsymbol{\eta}, \quad \boldsymbol{\eta} \sim \mathcal{N}(\boldsymbol{0}, \sigma^2 \boldsymbol{I}) \tag{3}
# ```
#
# Eq. (3)'s sigma at t* is `diffrob.distances.analysis.toy_noise_var`; its fuzzy decision,
# `diffrob.distances.analysis.fuzzy_grade`.

# %% mystnb={"figure": {"caption": "Eq. (3) drawn twice: the fuzzy decision of a linear classifier under Gaussian noise (the shape of the paper's Fig. 3a), and the Gaussian toy model's end distance against the init distance (closed form and Monte Carlo) beside DiffPure's measured distances.", "name": "fig-distances-toy"}}
report.toy_figure(r)
plt.show()

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## The purifier's own distance sets the ratio
# Uniform noise far smaller than the attacks ends almost as far from the clean image as the
# attacks do: its end distance is the distance the purification itself puts between its output
# and the clean image, the purifier's *floor*. Whether an attack's distance grows (the paper's
# end / init of 3.1-3.5) then depends on how the attack's length compares with that floor: a
# perturbation well below it ends near the floor (ratio above 1), one beyond it is shrunk. The
# table sets floor / init, read off the smallest uniform level, beside the measured end / init.

# %%
report.floor_table(r)

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## Scrub through a purification
# The slider moves through DiffPure's states for a few test images of the strongest attack
# (or of uniform noise when no attack is configured): top row clean, bottom row the state at
# that step with its l2 and l_inf distance to the clean image; right, the mean l2 curve.
# The views are precomputed, so the slider works in the static book.

# %% mystnb={"figure": {"caption": "DiffPure's states for a few test images, step by step, with their distances to the clean image (a slider; no figure of the paper).", "name": "fig-distances-scrubber"}}
report.scrubber(r)

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## Other samplers and SSIM (Table S5)
# The same measurement before and after purification by each sampler (DDPM = DiffPure,
# reverse-only, one-step denoising, DDIM) on the PGD-EOT examples (or the last configured attack),
# with SSIM (Wang et al. 2004: Gaussian window 11, sigma 1.5, per channel; on images smaller
# than 11 pixels the largest odd window that fits, 7 for 8x8 digits).

# %%
s5 = report.samplers(r)
report.samplers_table(s5)

# %% tags=["remove-input"]
reproduce()

# %%
report.sampler_claims(s5)

# %% tags=["remove-input"]
reproduce()

# %% tags=["remove-input"]
# The numbers of "What it says here", glued into its text.
said = report.distances_said(r, s5)
glue("dist_ratios", said["dist_ratios"])
glue("dist_floor", said["dist_floor"])
glue("dist_floor_name", said["dist_floor_name"])
glue("dist_ssim", said["dist_ssim"])

# %% [markdown]
# **What it says here.** The figure ({numref}`fig-distances`) and the tables
# ({numref}`tbl-distances-l2`, {numref}`tbl-distances-claims`) answer the paper's question for this world:
# whether the purified image ends farther from the clean image than the perturbed input
# (end / init above 1; here, l2: {glue:text}`dist_ratios`), whether the four attacks end where uniform noise of their size ends, and
# from which uniform size on the purification shrinks the distance instead. The scrubber shows
# where the distance comes from: the forward process adds far more noise than the perturbation,
# and the reverse process removes it towards *a* plausible image, not towards *the* clean one.
# The floor table ({numref}`tbl-distances-floor`) says when the attacks' distance must grow: in the paper's CIFAR-10 numbers the
# floor is several times the attacks' length and end / init follows floor / init; in a world
# whose attack radius reaches its floor, the same mechanism gives a ratio near 1 (here the floor,
# the end l2 of {glue:text}`dist_floor_name`, is {glue:text}`dist_floor`).
# Table S5 ({numref}`tbl-distances-samplers`) repeats the measurement for the other samplers and adds SSIM. In the paper the SSIM
# to the clean image falls after purification (0.963 -> 0.791 for DiffPure; here
# {glue:text}`dist_ssim`), which the paper's
# text calls a 20 % *decrease in perceptual distance*; SSIM is a similarity, so a lower SSIM
# means the purified images are perceptually *less* like the clean ones, in line with the l2
# and l_inf growth rather than against it.
