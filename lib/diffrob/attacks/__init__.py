"""Linf attacks on a purified classifier (sec. 4.2, appendix B, Table S1).

- :mod:`.registry`: the one table of system attacks (name -> gradient kind, EOT, optimiser,
  cost per image);
- :mod:`.pgd`: our PGD (with EOT, last or best iterate, constant or cosine step, restarts,
  the soft vote's loss, stopping at an image's first fooled iterate) and uniform noise;
- :mod:`.system`: one batch of any registered attack on ``world.purifier()`` ->
  ``world.classifier``, with the seed plan of eq. 9;
- :mod:`.apgd`: autoattack's APGD and its ``rand`` version, used as the package ships them;
- :mod:`.fold`: the packages' EOT samples folded into one purification, as our PGD's;
- :mod:`.gradcheck`: the attacks' gradients against float64 central differences.
"""

from .pgd import ITERATES, SCHEDULES, pgd, uniform
from .registry import NAMES, REGISTRY, TABLE_1, TARGETS, Attack, get, without_eot
from .system import (Checks, SystemLogits, attack_batch, attack_batch_checked, check_seeds,
                     straight_through)

__all__ = ["ITERATES", "NAMES", "REGISTRY", "SCHEDULES", "TABLE_1", "Attack", "Checks",
           "SystemLogits", "attack_batch", "attack_batch_checked", "check_seeds", "get", "pgd",
           "straight_through", "uniform", "without_eot", "TARGETS"]
