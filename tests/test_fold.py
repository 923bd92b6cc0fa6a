"""The packages' EOT samples folded into one purification: the same gradients, seeds and
examples as the packages' own one-call-per-sample loop, and a loud error where a package
stops summing consecutive gradients."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from diffrob import attacks
from diffrob.attacks import apgd
from diffrob.attacks.fold import FoldedEOT
from diffrob.purifiers import seed_for

from conftest import same_pixels, tiny_world
from test_attacks import SeedSpy


def system(w, spy=None, n_images=None):
    return attacks.SystemLogits(w.classifier, spy or w.purifier(), 1, w.params.attack_seed,
                                n_images, straight=False)


def eot_gradient(model, x, y, eot):
    """The packages' loop: one call per EOT sample, the gradients summed."""
    x = x.clone().requires_grad_()
    grad = torch.zeros_like(x)
    for _ in range(eot):
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), y, reduction="none").sum()
        grad += torch.autograd.grad(loss, [x])[0]
    return grad


@pytest.mark.parametrize("per_call", [1, 2, 5])
def test_the_folded_sum_is_the_loop_sum_with_the_same_seeds(per_call):
    """In float64, two gradients of 5 samples: the folded loop's sum equals the unfolded one,
    each sample purified with the base seed it gets unfolded, ``per_call`` copies a call."""
    w = tiny_world(3)
    w = dataclasses.replace(w, classifier=w.classifier.double(), diffusion=w.diffusion.double(),
                            images=w.images.double())
    spies = SeedSpy(w.purifier()), SeedSpy(w.purifier())
    plain, folded = system(w, spies[0]), system(w, spies[1])
    with FoldedEOT(folded, 5, per_call) as model:
        for _ in range(2):
            g_fold = eot_gradient(model, w.images, w.labels, 5)
            g_loop = eot_gradient(plain, w.images, w.labels, 5)
            torch.testing.assert_close(g_fold, g_loop, rtol=1e-10, atol=1e-12)
    assert g_fold.abs().sum() > 0
    seeds = [[s for _, c in spy.calls for s in c] for spy in spies]
    assert seeds[0] == seeds[1] == list(range(w.params.attack_seed, w.params.attack_seed + 10))
    assert [r for r, _ in spies[1].calls] == [3 * min(per_call, 5 - k)
                                              for _ in range(2) for k in range(0, 5, per_call)]


@pytest.mark.parametrize("attack", ["apgd-eot", "apgd-dlr-eot", "apgd-t-eot", "eotpgd"])
def test_attack_batch_folds_the_packages_and_keeps_their_examples(attack):
    """``attack_batch`` (folded, all samples in one call) gives the examples of the package
    run on the unfolded system, with the same base seeds in the same order."""
    w = tiny_world(3, eot=3, attack_steps=2, apgd_targets=2, autocast="none")
    p, spec = w.params, attacks.get(attack)
    spies = SeedSpy(w.purifier()), SeedSpy(w.purifier())
    folded = attacks.attack_batch(w, attack, w.images, w.labels, 1, purifier=spies[0])
    start_seed = seed_for(p.attack_seed, 1, 0, False)
    plain = attacks.system.package_attack(system(w, spies[1], len(w.images)), spec.optimiser,
                                          w.images, w.labels, p, 3, 1, start_seed)
    assert same_pixels(folded, plain) > 0.97, attack
    seeds = [[s for _, c in spy.calls for s in c] for spy in spies]
    assert seeds[0] == seeds[1]
    assert max(r for r, _ in spies[0].calls) == 3 * len(w.images)  # the samples in one call
    assert max(r for r, _ in spies[1].calls) == len(w.images)


def test_autoattack_rand_folded_keeps_its_examples_and_flags():
    w = tiny_world(3, autocast="none")
    runs = []
    for fold in (True, False):
        model = system(w)
        with FoldedEOT(model, 3, 3 if fold else 1) as m:
            runs.append(apgd.autoattack_rand(m, w.images, w.labels, w.params.eps, 2, 3, seed=4))
    assert same_pixels(runs[0][0], runs[1][0]) > 0.97
    assert torch.equal(runs[0][1], runs[1][1])


def test_a_package_that_stops_summing_fails_loudly():
    """A call on another input, or without gradient, in the middle of a gradient's samples
    raises, as does leaving the block with a chunk that waits for gradients."""
    w = tiny_world(2)
    x = w.images.clone().requires_grad_()
    with pytest.raises(RuntimeError, match="new input"):
        with FoldedEOT(system(w), 3, 3) as model:
            model(x)
            model(w.images.clone().requires_grad_())
    with pytest.raises(RuntimeError, match="new input"):
        with FoldedEOT(system(w), 3, 3) as model:
            model(x)
            with torch.no_grad():
                model(w.images)
    with pytest.raises(RuntimeError, match="new input"):
        with FoldedEOT(system(w), 3, 3) as model:
            model(x)
    with pytest.raises(ValueError, match="per_call"):
        FoldedEOT(system(w), 3, 0)
