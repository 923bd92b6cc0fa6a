"""What purification does to distances (paper sec. 3.1) and how randomness decides it
(sec. 3.2): chapters 02_distances and 03_randomness.

``analysis``: l2, l_inf and SSIM (Table S5), the init/max/end columns of Tables S2-S4, the
purifier's floor, the correlations and centroid distances of Fig. 2, pure; ``runs``: the
perturbed inputs, their distance curves along DiffPure, each sampler's purified images and
the seeds-against-inputs draws on a world; ``report`` (chapter 02) and ``report_randomness``
(chapter 03): the chapters' tables, figures, the scrubber, the claim rows and the glued
numbers.
"""
