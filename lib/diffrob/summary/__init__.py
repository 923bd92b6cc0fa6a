"""The Summary chapter (07_summary): every claim of the paper that the chapters checked,
the paper's value beside ours, and its verdict, in this world and across worlds.

``analysis.py`` counts verdicts, ``runs.py`` runs nothing (the Summary reads the claims the
other chapters recorded), ``report.py`` builds the chapter's tables, figure and text.
"""
