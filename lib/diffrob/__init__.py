"""diffrob: the library behind the book "How Do Diffusion Models Improve Adversarial Robustness?".

Shared floors that know no paper section (``params``, ``worlds``, ``purifiers``,
``attacks``, ``store``, ``stages``, ``verdicts``, ``claims``, ``figures``, ``plan``,
``progress``, ``chapter``), one wing per paper section above them (``setup``, ``distances``,
``fuzzy``, ``cap``, ``compression``, ``summary``: each ``analysis``, ``runs``, ``report``) and
the command line (``cli``) on top: docs/design.md.
"""

__version__ = "0.1.0"

from . import progress as _progress

_progress.install()  # only when scripts/build_book.py asks for progress lines (its docstring)
