"""Sec. 4 of the paper: fuzzy adversarial robustness (Definitions 1-2, Tables 1-2, Fig. 3),
with the attack-strength checks of Table S1's protocol and two purifier variants
(appendices B and C.2).

- :mod:`.analysis`: pure; (r, n) predictions in, grades, Table 1's columns and intervals out;
- :mod:`.runs` (Table 1), :mod:`.runs_strength`, :mod:`.runs_variants`: the runs on a world,
  through the store;
- :mod:`.report` (chapter 04_fuzzy) and :mod:`.report_strength` (chapter 04b_strength): the
  chapters' tables, figures and claim rows.
"""
