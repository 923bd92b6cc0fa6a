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
# # Setup: the world, the purifiers and their clean accuracy
# **What the paper uses.** A classifier that is not robust on its own and a diffusion model in
# front of it (Appendix B, Table S1): on CIFAR-10 the first 1000 test images, RobustBench's
# `Standard` WideResNet-28-10 (94.78 % clean accuracy) and the DDPM CIFAR-10 checkpoint with
# t* = 0.1, i.e. 100 forward ({ref}`eq. (1) <eq1>`) and 100 reverse ({ref}`eq. (2) <eq2>`) steps; on ImageNet a ResNet-50 and
# guided diffusion with t* = 0.15. Every Gaussian draw is seeded by {ref}`eq. (9) <eq9>` (base seed, batch
# index, step). Purification costs clean accuracy: DiffPure keeps 85.75 ± 0.82 % on CIFAR-10
# (Table 1), and the other samplers of Table S5 (reverse-only, DDIM, one-step denoising) keep
# comparable clean accuracy (DDIM 87.9 %, one-step 85.2 % in the review thread). Fig. S3 shows
# clean, perturbed and purified images.
#
# This chapter loads the world that the parameters name, measures these clean accuracies here,
# and shows what purification does to a few images.

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
from IPython.display import Markdown, display
from diffrob import chapter
ch = chapter.open(params_file, globals(), "01_setup")
P, reproduce, glue = ch.P, ch.reproduce, ch.glue
from diffrob.setup import report

# %% [markdown]
# ## The world
# The data set, the two models and the purification depth. `alpha_bar(t*)` is the fraction of
# the signal's variance left after the forward process; the embedded `digits` world's 100-step
# schedule is chosen so that its t* = 10 leaves the same fraction as the CIFAR-10 model's t* = 100.

# %%
report.world_table(ch.world)

# %% tags=["remove-input"]
reproduce()

# %% mystnb={"figure": {"caption": "The first test images of this world and their labels (the paper shows CIFAR-10's in Fig. S3).", "name": "fig-setup-images"}}
report.images_figure(ch.world)
plt.show()

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## The paper's regime
# A claim about how diffusion purification works is tested only where the world resembles the
# paper's setting in the ratios that the claim rests on. The rule, written in
# `paper_data/setup.yaml` (`regime:`) and applied by `diffrob.setup.analysis_regime.derive`, reads
# three of them off the CIFAR-10 setting: the noise level alpha_bar(t*) of Table S1 sets t*;
# the bare classifier broken by Table S1's PGD (0 % in the paper) sets the attack radius eps;
# the purifier's own l2 distance over the attack's l2 (Table S2: 3.598 / 1.188 = 3.03) sets the
# radius of sec. 3.1's attacks, and sec. 5's slice radius is three times the attack's l2. The
# numbers are measured by `diffrob.setup.runs_regime.measure` on this world's models.

# %%
regime = report.regime_measures(ch.world)
report.regime_table(regime)

# %% tags=["remove-input"]
reproduce()

# %%
display(Markdown(report.regime_text(regime)))

# %% [markdown]
# ## The purifiers' equations
# DiffPure (`ddpm`) runs t* steps of the forward process, eq. (1) of the paper,
#
# ```{math}
# :name: eq1
# \boldsymbol{x}_{t} = \sqrt{\alpha_{t}}\,\boldsymbol{x}_{t-1} + \sqrt{1 - \alpha_{t}}\,\boldsymbol{\epsilon}, \quad \boldsymbol{\epsilon} \sim \mathcal{N}(\boldsymbol{0}, \boldsymbol{I}) \tag{1}
# ```
#
# and then t* steps of the reverse process, eq. (2),
#
# ```{math}
# :name: eq2
# \boldsymbol{x}_{t-1} = \frac{1}{\sqrt{\alpha_t}} \left( \boldsymbol{x}_t - \frac{1 - \alpha_t}{\sqrt{1 - \bar{\alpha}_t}} \boldsymbol{\epsilon}_{\theta}(\boldsymbol{x}_t, t) \right) + \sigma_t \boldsymbol{z}, \quad \boldsymbol{z} \sim \mathcal{N}(\boldsymbol{0}, \boldsymbol{I}) \tag{2}
# ```
#
# `ddim` replaces eq. (2) by the deterministic step of DDIM {cite}`song2021ddim`, eq. (10),
#
# ```{math}
# :name: eq10
# \boldsymbol{x}_{t-1} = \sqrt{\bar{\alpha}_{t-1}}\, \hat{\boldsymbol{x}}_0 + \sqrt{1 - \bar{\alpha}_{t-1}}\, \boldsymbol{\epsilon}_{\theta}(\boldsymbol{x}_t, t), \quad \hat{\boldsymbol{x}}_0 = \frac{\boldsymbol{x}_t - \sqrt{1 - \bar{\alpha}_t}\, \boldsymbol{\epsilon}_{\theta}(\boldsymbol{x}_t, t)}{\sqrt{\bar{\alpha}_t}} \tag{10}
# ```
#
# Every Gaussian draw (the eps of eq. (1), the z of eq. (2)) of step t for batch i under base seed s
# is seeded as in eq. (9):
#
# ```{math}
# :name: eq9
# \operatorname{Seed}(s,i,t) = \begin{cases} 10^4 s + 2 \times (10^3 i + t) + 1, & \text{forward process} \cr 10^4 s + 2 \times (10^3 i + t), & \text{reverse process} \end{cases} \tag{9}
# ```
#
# Implemented by `diffrob.purifiers.Purifier` (eqs. 1, 2, 10) and `diffrob.purifiers.seed_for`
# (eq. 9), whose docstrings cite them.

# %% [markdown]
# ## Clean accuracy with and without purification
# Each purifier runs r = `n_evals` times over the test images, with base seeds 0..r-1 and
# {ref}`eq. (9) <eq9>`'s batch indices (`diffrob.setup.runs.clean_correct`; DiffPure's runs are Table 1's
# clean row of chapter 4, computed once for both); an image's accuracy is the fraction of
# its runs that are right, and the claims pair them per image. The bare classifier is
# deterministic. The paper's numbers are CIFAR-10's (or
# ImageNet's), labelled "paper"; the review-thread reverse-only number was measured at t = 150
# with fixed noise, not at t* = 100.

# %%
acc = report.accuracy(ch.world)
report.accuracy_table(acc)

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## The claims, judged
# Each claim's criterion is fixed in `paper_data/setup.yaml` with its source in the paper;
# `claims.record` reads it and compares it with our statistic's 95 % interval. The drop is bare
# minus DiffPure on the same images, with Newcombe's interval for paired yes/no outcomes; the
# samplers are comparable when every pair of them differs by less than the bound, each pair
# with Newcombe's paired interval. A column *MDE* gives the smallest effect each test detects
# at its number of images (80 % power), and a claim whose MDE exceeds the effect it tests is
# *underpowered*, not inconclusive.

# %%
report.claims_table(acc)

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## What purification does to an image (Fig. S3)
# Columns are test images. Rows: the clean image, the image with uniform noise of the attack's
# size (eps = `eps_255`/255 per pixel; the adversarial versions are in the next chapter's
# scrubber), DiffPure's intermediate states (noised by the forward process up to t*, then
# denoised), and the purified images of each sampler for the same perturbed input.

# %% mystnb={"figure": {"caption": "Clean and perturbed images, DiffPure's intermediate states and each sampler's purified images; reproduces the paper's Fig. S3.", "name": "fig-setup-purified"}}
report.purified_figure(ch.world)
plt.show()

# %% tags=["remove-input"]
reproduce()

# %% tags=["remove-input"]
# The numbers of "What it says here", glued into its text.
said = report.setup_said(acc)
glue("setup_bare", said["setup_bare"])
glue("setup_ddpm", said["setup_ddpm"])
glue("setup_samplers", said["setup_samplers"])

# %% [markdown]
# **What it says here.** {numref}`tbl-setup-world` compares our world with the paper's.
# {numref}`tbl-setup-accuracy` shows whether purification costs clean accuracy here as it does in the paper: the bare
# classifier is right on {glue:text}`setup_bare` of the test images, DiffPure's purified images
# on {glue:text}`setup_ddpm` (the samplers: {glue:text}`setup_samplers`; the paper's numbers are
# in the table's second column); the grid ({numref}`fig-setup-purified`) shows that the purified images are not the clean images
# back: the forward process drowns the small perturbation in much larger noise, and the reverse
# process lands on a nearby plausible image. How far from the clean image it lands is the topic
# of the next chapter.
