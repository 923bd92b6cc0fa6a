"""APGD with EOT, APGD-T, Square and AutoAttack's ``rand`` version, from the ``autoattack``
package.

The package (Croce & Hein 2020, PyPI ``pyautoattack``) is used as it is, not
rewritten: :class:`APGDAttack` with ``eot_iter`` (APGD-CE, APGD-DLR),
:class:`APGDAttack_targeted` (APGD-T, the targeted DLR loss), :class:`SquareAttack`
(Andriushchenko et al. 2020: gradient-free, the check that a defence does not only mask
gradients) and :class:`AutoAttack` ``version="rand"`` (APGD-CE then APGD-DLR with EOT, the
evaluation DiffPure reports for stochastic defences). The model they attack is
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

from .registry import TARGETS

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
         loss: str = "ce", seed: int = 0, restarts: int = 1) -> Tensor:
    """APGD-``loss`` with ``eot`` EOT samples per gradient: per image the best-loss iterate.

    ``restarts`` runs of ``steps`` iterations (the package's ``n_restarts``,
    ``perturb(best_loss=True)``): the point with the highest loss the runs saw, whether or
    not one noisy forward pass was fooled by it (the final examples of
    :func:`autoattack_rand` keep only those); across restarts, per image, the package keeps
    the run of highest loss. The package's loss of an iterate is that of its last EOT
    sample. ``model`` is called ``1 + restarts x (steps + 1) x eot`` times with all of
    ``x``; ``seed`` seeds the random starts.
    """
    _check(eps, steps, eot)
    if not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts: expected an int >= 1, got {restarts!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {list(LOSSES)}, got {loss!r}")
    aa = import_autoattack()
    from pyautoattack.autopgd_base import APGDAttack

    attack = APGDAttack(model, n_iter=steps, norm="Linf", n_restarts=restarts, eps=eps,
                        seed=seed, loss=loss, eot_iter=eot, device=x.device,
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


def apgd_targeted(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, eot: int,
                  seed: int = 0, targets: int = TARGETS) -> Tensor:
    """APGD-T with ``eot`` EOT samples per gradient: one run of ``steps`` iterations on the
    targeted DLR loss for each of the ``min(targets, classes - 1)`` classes scored highest after
    the first on a clean pass (as the package's ``perturb`` picks them); per image the
    iterate of highest loss over the targets, fooled or not (as :func:`apgd`'s best-loss
    iterate: the package's ``perturb`` keeps only the fooled ones). ``model`` is called once
    for the clean prediction, then per target once to pick it and ``(steps + 1) x eot``
    times; ``seed`` seeds the random starts.
    """
    _check(eps, steps, eot)
    aa = import_autoattack()
    from pyautoattack.autopgd_base import APGDAttack_targeted

    x, y = x.detach(), y.detach()
    with seeded(seed, x.device):
        with torch.no_grad():
            classes = model(x).shape[1]
        attack = APGDAttack_targeted(model, n_iter=steps, norm="Linf", n_restarts=1, eps=eps,
                                     seed=seed, eot_iter=eot, device=x.device,
                                     n_target_classes=min(targets, classes - 1),
                                     logger=logging.getLogger(aa.__name__))
        attack.init_hyperparam(x)
        best, best_loss = x.clone(), torch.full((len(x),), -torch.inf, device=x.device)
        for k in range(2, attack.n_target_classes + 2):
            with torch.no_grad():
                attack.y_target = model(x).sort(dim=1)[1][:, -k]
            x_best, _, loss, _ = attack.attack_single_run(x, y)
            better = loss > best_loss
            best[better], best_loss[better] = x_best[better], loss[better]
    return best.detach()


def square(model: nn.Module, x: Tensor, y: Tensor, eps: float, queries: int,
           seed: int = 0) -> Tensor:
    """Square (the package's ``SquareAttack``, Linf, margin loss, its ``p_init`` 0.8):
    ``queries`` random square updates per image and no gradient; per image its last accepted
    point (``attack_single_run``: the package's ``perturb`` keeps only the fooled ones). An
    image stops when one noisy pass is fooled. ``model`` must accept any number of rows
    (:class:`SystemLogits` with ``n_images=None``); ``seed`` seeds its draws."""
    _check(eps, queries, 1)
    import_autoattack()
    from pyautoattack.square import SquareAttack

    attack = SquareAttack(model, norm="Linf", n_queries=queries, eps=eps, n_restarts=1,
                          seed=seed, device=x.device)
    with seeded(seed, x.device), torch.no_grad():
        attack.init_hyperparam(x)
        _, x_best = attack.attack_single_run(x.detach(), y.detach())
    return x_best.detach()
