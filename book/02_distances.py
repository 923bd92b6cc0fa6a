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
from diffrob import params
P = params.load_notebook(params_file, globals())   # picks up papermill -p overrides

import matplotlib.pyplot as plt
import pandas as pd

from diffrob import claims, metrics, stages, trajectories, verdicts, worlds
from diffrob.params import PURIFIERS

world = worlds.from_params(P)
paper = claims.paper("sec31")
paper_world = P.world if P.world in paper else "cifar10"
paper_label = f"paper ({paper_world})"

from diffrob.figures import Reproduce, Table, glue
reproduce = Reproduce(P, params_file, "02_distances")

# %% [markdown]
# ## The perturbed inputs
# The adversarial examples of each attack in `attacks` (eps = `eps_255`/255, made against
# the purified system and kept in the results store: computed here only if missing), and
# uniform noise U(-eps, eps) per pixel for each level in `uniform_eps_255` plus the attack's own
# eps, unclipped as in the paper (see the conventions below) and clipped to [0,1]. Every input is purified by DiffPure (`ddpm`, t* forward and t* reverse steps, base seed
# `base_seed`, {ref}`eq. (9) <eq9>`'s batch indices), and we measure its distance to the clean image at every
# one of the 2 t* + 1 states.

# %%
inputs = {a: stages.adversarial(world, a) for a in P.attacks}
levels = sorted(set(P.uniform_eps_255) | {P.eps_255})
if not P.attacks:
    print("No attacks in `attacks` for this world: only uniform noise is measured.")
curves = {name: trajectories.distance_curves(world, x, "ddpm") for name, x in inputs.items()}
clipped = {}  # uniform noise clipped to [0,1], our other convention
for e in levels:
    name = f"uniform_{e:g}"
    inputs[name] = trajectories.uniform_inputs(world, e / 255, seed=P.base_seed, clip=False)
    curves[name] = trajectories.distance_curves(world, inputs[name], "ddpm", unclipped=True)
    clipped[name] = trajectories.distance_curves(world, inputs[name].clamp(0, 1), "ddpm")
t_star = next(iter(curves.values())).t_star
same_size = [*P.attacks, f"uniform_{P.eps_255:g}"]

# %% [markdown]
# ## Distances along the purification (Fig. 1c/d, Fig. S1)
# Mean over the test images (band: ± one standard deviation). Left: the attacks and uniform
# noise of the same size; right: uniform noise of growing size. The dotted line is t*, where the
# forward process ends and the reverse process begins.

# %% mystnb={"figure": {"caption": "l2 and l_inf distance to the clean image along DiffPure's purification, mean \u00b1 one standard deviation over the test images; reproduces the paper's Fig. 1c/d and Fig. S1.", "name": "fig-distances"}}
label = lambda name: f"uniform {name[8:]}/255" if name.startswith("uniform_") else name
fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
for row, metric in enumerate(("l2", "linf")):
    trajectories.plot_curves(axes[row, 0], {label(n): curves[n] for n in same_size}, metric,
                             f"{metric}: attacks and uniform noise of eps {P.eps_255:g}/255")
    trajectories.plot_curves(axes[row, 1], {label(f"uniform_{e:g}"): curves[f"uniform_{e:g}"]
                                            for e in levels}, metric,
                             f"{metric}: uniform noise of growing size")
fig.tight_layout()
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
def table(metric):
    rows = {}
    for name, c in [*curves.items(), *((f"{n}, clipped", c) for n, c in clipped.items())]:
        ours = trajectories.init_max_end(getattr(c, metric), t_star)
        ref = paper[paper_world][metric].get(name, {})
        row = {f"ours {col}": f"{m:.3f} ± {s:.3f}" for col, (m, s) in ours.items()}
        row["ours end / init"] = f"{ours['end'][0] / ours['init'][0]:.2f}"
        row.update({f"{paper_label} {col}": f"{m:.3f} ± {s:.3f}" for col, (m, s) in ref.items()})
        rows[name] = row
    return pd.DataFrame(rows).T.fillna("")


Table(table("l2"), "tbl-distances-l2", "l2 distance to the clean image at init, max and end of "
      "DiffPure's purification, mean ± std over the test images; reproduces the paper's Table S2 "
      "(Table S4 on ImageNet).")

# %% tags=["remove-input"]
reproduce()

# %%
Table(table("linf"), "tbl-distances-linf", "l_inf distance to the clean image at init, max and "
      "end, mean ± std over the test images; reproduces the paper's Table S3 (Table S4 on "
      "ImageNet).")

# %% tags=["remove-input"]
reproduce()

# %%
end = {n: c.l2[-1].double().mean().item() for n, c in curves.items()}
init = {n: c.l2[0].double().mean().item() for n, c in curves.items()}
u = f"uniform_{P.eps_255:g}"
largest = f"uniform_{levels[-1]:g}"
# Each claim's criterion and source are in paper_data/sec31.yaml; the intervals are paired
# bootstraps over the test images (diffrob.verdicts).
rows = [
    claims.record(P, "sec31", "l2_grows",
                  {n: verdicts.ratio_of_means(curves[n].l2[-1], curves[n].l2[0]) for n in same_size}),
    claims.record(P, "sec31", "linf_grows",
                  {n: verdicts.ratio_of_means(curves[n].linf[-1], curves[n].linf[0])
                   for n in same_size}),
    claims.record(P, "sec31", "attacks_like_uniform",
                  {a: verdicts.ratio_of_means(curves[a].l2[-1], curves[u].l2[-1]) for a in P.attacks}
                  if P.attacks else None),
    claims.record(P, "sec31", "large_noise_shrinks",
                  {largest: verdicts.ratio_of_means(curves[largest].l2[-1], curves[largest].l2[0])}),
]
print("end/init l2:", {n: round(end[n] / init[n], 2) for n in curves})
Table(claims.frame(rows), "tbl-distances-claims", "Sec. 3.1's claims on distances judged "
      "(criteria from the paper's sec. 3.1 and Tables S2-S3, in paper_data/sec31.yaml).")

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
def floor_table(l2_init, l2_end, floor_name, names):
    floor = l2_end[floor_name]
    return pd.DataFrame({n: {"init l2": l2_init[n], "floor / init": floor / l2_init[n],
                             "end / init": l2_end[n] / l2_init[n]} for n in names}).T


smallest = f"uniform_{levels[0]:g}"
ref_l2 = {n: {col: v[0] for col, v in cols.items()} for n, cols in paper[paper_world]["l2"].items()}
paper_uniform = sorted((n for n in ref_l2 if n.startswith("uniform_")), key=lambda n: float(n[8:]))
parts = {f"ours (floor: {label(smallest)}, l2 {end[smallest]:.3f})":
         floor_table(init, end, smallest, P.attacks)}
if paper_uniform and all(a in ref_l2 for a in P.attacks):
    parts[f"{paper_label} (floor: {label(paper_uniform[0])}, l2 {ref_l2[paper_uniform[0]]['end']})"] = (
        floor_table({n: r["init"] for n, r in ref_l2.items()}, {n: r["end"] for n, r in ref_l2.items()},
                    paper_uniform[0], P.attacks))
Table(pd.concat(parts, axis=1).round(3), "tbl-distances-floor", "The purifier's floor against "
      "each attack's length: floor / init beside end / init, ours and from the paper's Table S2.")

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## Scrub through a purification
# The slider moves through DiffPure's states for a few test images of the strongest attack
# (or of uniform noise when no attack is configured): top row clean, bottom row the state at
# that step with its l2 and l_inf distance to the clean image; right, the mean l2 curve.
# The views are precomputed, so the slider works in the static book.

# %% mystnb={"figure": {"caption": "DiffPure's states for a few test images, step by step, with their distances to the clean image (a slider; no figure of the paper).", "name": "fig-distances-scrubber"}}
show = P.attacks[-1] if P.attacks else f"uniform_{P.eps_255:g}"
k = curves[show].states.shape[1]
trajectories.scrubber(curves[show], world.images[:k])

# %% tags=["remove-input"]
reproduce()

# %% [markdown]
# ## Other samplers and SSIM (Table S5)
# The same measurement before and after purification by each sampler (DDPM = DiffPure,
# reverse-only, one-step denoising, DDIM) on the PGD-EOT examples (or the last configured attack),
# with SSIM (Wang et al. 2004: Gaussian window 11, sigma 1.5, per channel; on images smaller
# than 11 pixels the largest odd window that fits, 7 for 8x8 digits).

# %%
attack = "pgd-eot" if "pgd-eot" in P.attacks else (P.attacks[-1] if P.attacks else u)
if attack != "pgd-eot":
    print(f"pgd-eot is not among this world's attacks: Table S5 uses {attack}.")
after = {m: trajectories.purify(world, inputs[attack], m) for m in PURIFIERS}
s5 = trajectories.before_after(world, inputs[attack], after)
ref = paper[paper_world].get("sampling", {})
uniform_ssim = metrics.ssim(inputs[u], world.images).mean().item()
rows = {}
for m in PURIFIERS:
    row = {f"ours {q}": f"{s5['before'][q][0]:.3f} -> {s5[m][q][0]:.3f}"
           for q in ("l2", "linf", "ssim")}
    if m in ref:
        row.update({f"{paper_label} {q}": f"{ref['before'][q]:.3f} -> {ref[m][q]:.3f}"
                    for q in ("l2", "linf", "ssim")})
    rows[m] = row
Table(pd.DataFrame(rows).T, "tbl-distances-samplers", f"Distance and SSIM to the clean image "
      f"before -> after each sampler, on the {attack} examples; reproduces the paper's Table S5.")

# %% tags=["remove-input"]
reproduce()

# %%
print(f"SSIM to the clean image: {attack} {s5['before']['ssim'][0]:.3f}, uniform noise of the "
      f"same size {uniform_ssim:.3f}, DiffPure-purified {s5['ddpm']['ssim'][0]:.3f}"
      + (f"  (paper: {ref['before']['ssim']}, {ref['uniform_ssim']}, {ref['ddpm']['ssim']})"
         if ref else ""))
# Per image, for the claims: the purifications of Table S5.
before_l2 = metrics.l2(inputs[attack], world.images)
before_ssim = metrics.ssim(inputs[attack], world.images)
rows = [
    claims.record(P, "sec31", "samplers_push_away",
                  {m: verdicts.ratio_of_means(metrics.l2(after[m], world.images), before_l2)
                   for m in PURIFIERS}),
    claims.record(P, "sec31", "ssim_falls",
                  {m: verdicts.paired_difference(before_ssim, metrics.ssim(after[m], world.images))
                   for m in PURIFIERS}),
]
Table(claims.frame(rows), "tbl-distances-sampler-claims", "Sec. 3.1's claims on samplers and SSIM "
      "judged (criteria from the paper's sec. 3.1 and Table S5, in paper_data/sec31.yaml).")

# %% tags=["remove-input"]
reproduce()

# %% tags=["remove-input"]
# The numbers of "What it says here", glued into its text (issue 14).
glue("dist_ratios", ", ".join(f"{label(n)} {end[n] / init[n]:.2f}" for n in same_size))
glue("dist_floor", f"{end[smallest]:.3f}")
glue("dist_floor_name", label(smallest))
glue("dist_ssim", f"{s5['before']['ssim'][0]:.3f} -> {s5['ddpm']['ssim'][0]:.3f}")

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
