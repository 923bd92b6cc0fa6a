"""APGD with EOT and AutoAttack's ``rand`` version, from the ``autoattack`` package.

The package (Croce & Hein 2020, PyPI ``pyautoattack``) is used as it is, not
rewritten: :class:`APGDAttack` with ``eot_iter`` (APGD-CE, APGD-DLR) and
:class:`AutoAttack` ``version="rand"`` (APGD-CE then APGD-DLR with EOT, the evaluation
DiffPure reports for stochastic defences). The model they attack is
:class:`diffrob.attacks.system.SystemLogits`: classifier(purifier(x)) with the full gradient
through every diffusion step, each call purified with the next base seed of the
attack (eq. 9), so EOT sample j of gradient c sees base seed ``attack_seed + c *
eot + j + 1`` (one call before the first gradient is the package's clean prediction).

The package draws its random start from torch's global CPU generator; it is seeded
here with the attack's start seed inside ``torch.random.fork_rng``, so a run is
reproducible and leaves the caller's global generator untouched.
"""

from __future__ import annotations

import contextlib
import logging
import sys

import torch
from torch import Tensor, nn

LOSSES = ("ce", "dlr")


def import_autoattack():
    """The ``autoattack`` package, installed as ``pyautoattack``; also registered under
    the name ``autoattack``, which robustbench imports (done once, here)."""
    try:
        import pyautoattack
    except ImportError as e:
        raise ImportError("APGD and the cifar10/imagenet worlds need the 'autoattack' package: "
                          "pip install pyautoattack (or 'diffrob[paper]')") from e
    sys.modules.setdefault("autoattack", pyautoattack)
    return pyautoattack


def _check(eps: float, steps: int, eot: int) -> None:
    if not 0 < eps <= 1:
        raise ValueError(f"eps: expected a Linf radius in (0, 1], got {eps!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
    if not isinstance(eot, int) or eot < 1:
        raise ValueError(f"eot: expected an int >= 1, got {eot!r}")


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """torch's global generators seeded with ``seed``, restored on exit."""
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def apgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, eot: int,
         loss: str = "ce", seed: int = 0) -> Tensor:
    """APGD-``loss`` with ``eot`` EOT samples per gradient: per image the best-loss iterate.

    One restart of ``steps`` iterations (``perturb(best_loss=True)``): the point with
    the highest loss the run saw, whether or not one noisy forward pass was fooled by it
    (the final examples of :func:`autoattack_rand` keep only those). The package's
    loss of an iterate is that of its last EOT sample. ``model`` is called ``1 + (steps
    + 1) x eot`` times with all of ``x``; ``seed`` seeds the random start.
    """
    _check(eps, steps, eot)
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {list(LOSSES)}, got {loss!r}")
    aa = import_autoattack()
    from pyautoattack.autopgd_base import APGDAttack

    attack = APGDAttack(model, n_iter=steps, norm="Linf", n_restarts=1, eps=eps, seed=seed,
                        loss=loss, eot_iter=eot, device=x.device,
                        logger=logging.getLogger(aa.__name__))
    with seeded(seed, x.device):
        return attack.perturb(x.detach(), y.detach(), best_loss=True).detach()


def autoattack_rand(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, eot: int,
                    seed: int = 0) -> tuple[Tensor, Tensor]:
    """AutoAttack ``version="rand"`` (APGD-CE, then APGD-DLR on what is left; ``steps``
    iterations, ``eot`` samples): (its final examples, its own robust flags).

    An image counts for AutoAttack as broken as soon as *one* forward pass of the
    stochastic system misclassifies it, the clean pass included; its final example is
    then that iterate, otherwise the clean image. The flags are ``y_adv == y`` of its
    returned predictions: AutoAttack's own robust accuracy is their mean.
    ``model`` must accept any number of rows (:class:`SystemLogits` with ``n_images=None``).
    """
    _check(eps, steps, eot)
    aa = import_autoattack()
    from pyautoattack.autopgd_base import APGDAttack

    runner = aa.AutoAttack(model, eps=eps, norm="Linf", seed=seed, version="rand",
                           device=x.device)
    runner.apgd = APGDAttack(model, n_iter=steps, norm="Linf", n_restarts=1, eps=eps,
                             seed=seed, eot_iter=eot, device=x.device, logger=runner.logger)
    with seeded(seed, x.device):
        x_adv, y_adv = runner.run_standard_evaluation(x.detach(), y.detach(),
                                                      batch_size=len(x))
    return x_adv.detach(), (y_adv == y).cpu()
