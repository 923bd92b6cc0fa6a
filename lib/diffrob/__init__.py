"""diffrob: the library behind the book "How Do Diffusion Models Improve Adversarial Robustness?".

One module per idea: ``params`` (run parameters), ``worlds`` (data + models),
``purifiers`` (DiffPure and its variants), ``attacks``, ``store``, ``fuzzy``,
``metrics``, ``cap``, ``compression``, ``figures`` and ``cli``.
"""

__version__ = "0.1.0"

from . import progress as _progress

_progress.install()  # only when scripts/build_book.py asks for progress lines (its docstring)
