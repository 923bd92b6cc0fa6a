"""Diffusion models improve robustness by compressing image space (paper sec. 6, Figs. 5-6).

``analysis``: the purifier with fixed randomness as a map, pure (PCA of a neighbourhood, the
exact Jacobian and its spectrum, its matrix-free top, compression rates, the spectra of two
groups); ``analysis_boundary``: what separates robust from non-robust examples (critical
threshold gamma along the classifier's PGD direction, ROC); ``runs``: these on a world, the
Jacobian spectra and the adversarial examples through the results store; ``report``: the chapter's tables, figures
and claim rows.
"""
