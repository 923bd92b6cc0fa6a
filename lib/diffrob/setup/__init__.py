"""The set-up of the paper (sec. 2, Appendix B, Table S1): the world, the purifiers and
their clean accuracy; chapter 01_setup.

``analysis``: correctness flags, parameter counts and the DDPM states Fig. S3 shows, pure;
``runs``: the clean accuracy of the bare and purified classifier and the images of Fig. S3
on a world; ``report``: the chapter's tables, figures, claim rows and glued numbers.
"""
