"""APGD-EOT, APGD-T, Square and AutoAttack `rand` from the autoattack package, under our seed
plan."""

import sys

import pytest
import torch

from diffrob import attacks
from diffrob.attacks import apgd

from conftest import tiny_world
from test_attacks import SeedSpy, accuracy, trained, trained_world, within  # noqa: F401


def test_the_package_is_importable_as_autoattack():
    pkg = apgd.import_autoattack()
    assert sys.modules["autoattack"] is pkg and hasattr(pkg, "AutoAttack")


@pytest.mark.parametrize("attack", ["apgd-eot", "apgd-dlr-eot"])
def test_apgd_eot_follows_the_seed_plan_and_is_reproducible(attack):
    """One clean prediction, then a gradient at the start and one per iteration, its EOT
    samples folded into one call, each sample with the next base seed; the global generator
    is untouched."""
    w = tiny_world(3, eot=2, attack_steps=3)
    spy = SeedSpy(w.purifier())
    before = torch.random.get_rng_state()
    x_adv = attacks.attack_batch(w, attack, w.images, w.labels, 1, purifier=spy)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert [c for _, c in spy.calls] == [[1000]] + [[1001 + 2 * k, 1002 + 2 * k]
                                                    for k in range(3 + 1)]
    assert within(x_adv, w.images, w.params.eps)
    torch.testing.assert_close(attacks.attack_batch(w, attack, w.images, w.labels, 1), x_adv)


def test_bad_arguments_are_named():
    w = tiny_world(2)
    with pytest.raises(ValueError, match="loss"):
        apgd.apgd(w.classifier, w.images, w.labels, 0.1, 2, 1, loss="hinge")
    with pytest.raises(ValueError, match="steps"):
        apgd.apgd(w.classifier, w.images, w.labels, 0.1, 0, 1)
    with pytest.raises(ValueError, match="eps"):
        apgd.autoattack_rand(w.classifier, w.images, w.labels, 0.0, 2, 1)


def test_apgd_t_runs_each_target_class_and_follows_the_seed_plan():
    """One clean pass for the class count, then per target class a pass to pick it and APGD's
    calls ((steps + 1) x EOT samples after its clean prediction), each the next base seed;
    in the eps-ball, reproducible, the global generator untouched; the registry counts the
    gradients of its nine targets."""
    w = tiny_world(3, eot=2, attack_steps=2)
    spy = SeedSpy(w.purifier())
    before = torch.random.get_rng_state()
    x_adv = attacks.attack_batch(w, "apgd-t-eot", w.images, w.labels, 1, purifier=spy)
    assert torch.equal(torch.random.get_rng_state(), before)
    per_target = 1 + 2 + 1  # a pass to pick the target, then its gradients (2 samples a call)
    assert len(spy.calls) == 1 + attacks.TARGETS * per_target
    seeds = [s for _, c in spy.calls for s in c]
    assert seeds == list(range(1000, 1000 + 1 + attacks.TARGETS * (1 + (2 + 1) * 2)))
    assert within(x_adv, w.images, w.params.eps) and not torch.equal(x_adv, w.images)
    torch.testing.assert_close(attacks.attack_batch(w, "apgd-t-eot", w.images, w.labels, 1),
                               x_adv)
    assert attacks.get("apgd-t-eot").work(2, 2, "last")[0] == attacks.TARGETS * 3 * 2


def test_apgd_t_runs_apgd_targets_classes_keyed_where_not_autoattacks():
    """``apgd_targets`` targets (one here): that many passes, as counted, and a key of its own
    (the default, AutoAttack's 9, keeps the keys recorded before the parameter existed)."""
    w = tiny_world(3, eot=2, attack_steps=2, apgd_targets=1)
    spy = SeedSpy(w.purifier())
    attacks.attack_batch(w, "apgd-t-eot", w.images, w.labels, 1, purifier=spy)
    assert len(spy.calls) == 1 + 1 * (1 + 2 + 1)
    spec = attacks.get("apgd-t-eot")
    assert spec.work(2, 2, "last", targets=1)[0] == 3 * 2
    assert spec.key_values(w.params)["targets"] == 1
    assert "targets" not in spec.key_values(w.params.replace(apgd_targets=attacks.TARGETS))


def test_square_queries_the_scores_only_and_is_reproducible():
    """Square asks the purified system for scores only (no gradient is taken), at most its
    queries and a start per image, stays in the eps-ball and is reproducible."""
    w = tiny_world(3, square_queries=30)
    spy = SeedSpy(w.purifier())
    x_adv = attacks.attack_batch(w, "square", w.images, w.labels, 1, purifier=spy)
    assert 2 <= len(spy.calls) <= 30 + 2
    assert within(x_adv, w.images, w.params.eps) and not torch.equal(x_adv, w.images)
    torch.testing.assert_close(attacks.attack_batch(w, "square", w.images, w.labels, 1), x_adv)
    assert attacks.get("square").work(5, 40, "last", queries=30) == (0, 31)


@trained
def test_apgd_drives_the_bare_classifier_near_zero(trained_world):
    """As PGD does (test_attacks): 48/255 takes the bare digits CNN to <= 5 %."""
    w = trained_world
    x_adv = apgd.apgd(w.classifier, w.images, w.labels, 48 / 255, 20, 1, seed=0)
    assert within(x_adv, w.images, 48 / 255)
    assert accuracy(w, x_adv) <= 0.05


@trained
def test_autoattack_own_number_is_the_single_evaluation_of_its_examples(trained_world):
    """On a deterministic model one evaluation is every evaluation: AutoAttack's own robust
    flags are exactly the bare classifier's correctness on its final examples."""
    w = trained_world
    x_adv, own = apgd.autoattack_rand(w.classifier, w.images, w.labels, 16 / 255, 5, 1, seed=0)
    assert torch.equal(own, (w.predict(x_adv) == w.labels).cpu())
    assert within(x_adv, w.images, 16 / 255)
    assert own.float().mean() < accuracy(w, w.images)


def test_diffrob_attack_runs_the_new_attacks_into_the_store(tmp_path):
    from diffrob import cli

    cli.main(["attack", "--params", "params/smoke.yaml", "-p", "results_dir", str(tmp_path),
              "-p", "n_images", "2", "-p", "square_queries", "5", "--attack", "apgd-eot",
              "apgd-t-eot", "square", "eotpgd", "transfer"])
    for name in ("apgd-eot", "apgd-t-eot", "square", "eotpgd", "transfer"):
        assert list((tmp_path / "digits" / "attack" / name).rglob("batch_*.safetensors")), name
