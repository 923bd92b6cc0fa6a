"""The hyperspherical cap model of adversarial regions (paper sec. 5, appendix A).

``analysis``: the geometry, pure (slice planes and disc points, the psychometric fit of
eq. 8, the GAAS count of A.2, the cap volume of eq. 7, the logit ranges of Definition 3);
``runs``: the 2-D slices and the measured counts and ranges on a world, through the results
store; ``report``: the chapter's tables, figures and claim rows.
"""
