"""Attacks (sec. 4, Table S1) and the sanity checks of Carlini et al. (2019)."""

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torchattacks
from hypothesis import given, settings, strategies as st

from diffrob import attacks, params, stages
from diffrob.purifiers import Purifier, seed_for
from diffrob.worlds import World, digits

from conftest import same_pixels, tiny_world

MODELS = Path("models/digits")
trained = pytest.mark.skipif(not (MODELS / "ddpm.safetensors").is_file(),
                             reason="trained digits models not in models/digits")


@pytest.fixture(scope="module")
def world():
    return tiny_world()


@pytest.fixture(scope="module")
def trained_world():
    from diffrob import worlds
    return worlds.load("digits", n_images=32, batch_size=16, t_star=2, n_evals=8)


def within(x_adv, x, eps):
    return bool((x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1)


# --- the eps ball and [0,1] (property tests) ---------------------------------------------------

images = st.integers(0, 2**31 - 1).map(
    lambda s: torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(s)))
radii = st.floats(0.0, 1.0)


@settings(max_examples=30, deadline=None)
@given(images, radii, st.integers(0, 100))
def test_uniform_stays_in_ball(x, eps, seed):
    assert within(attacks.uniform(x, eps, torch.Generator().manual_seed(seed)), x, eps)


@settings(max_examples=20, deadline=None)
@given(images, radii, st.integers(1, 3), st.floats(0.0, 0.5), st.booleans(), st.integers(1, 3))
def test_pgd_stays_in_ball(world, x, eps, steps, rel, random_start, eot):
    y = torch.tensor([0, 3, 9])
    x_adv = attacks.pgd(world.classifier, x, y, eps, steps, eps * rel + 0.01, random_start,
                        torch.Generator().manual_seed(0), eot)
    assert x_adv.shape == x.shape and within(x_adv, x, eps)


@settings(max_examples=8, deadline=None)
@given(st.sampled_from(attacks.NAMES), st.floats(0.0, 1.0, exclude_min=True), st.integers(0, 5))
def test_system_attacks_stay_in_ball(attack, eps_255_frac, batch_index):
    w = tiny_world(2, eps_255=255 * eps_255_frac, t_star=1, attack_steps=2)
    x_adv = attacks.attack_batch(w, attack, w.images, w.labels, batch_index)
    assert within(x_adv, w.images, w.params.eps)


def test_bad_arguments_are_named(world):
    x, y = world.images, world.labels
    with pytest.raises(ValueError, match="eps"):
        attacks.pgd(world.classifier, x, y, 2.0, 1, 0.1)
    with pytest.raises(ValueError, match="eot"):
        attacks.pgd(world.classifier, x, y, 0.1, 1, 0.1, eot=0)
    with pytest.raises(ValueError, match="y"):
        attacks.pgd(world.classifier, x, y[:2], 0.1, 1, 0.1)
    with pytest.raises(ValueError, match="attack"):
        attacks.attack_batch(world, "fgsm", x, y, 0)
    w = tiny_world(2, attack_seed=3, n_evals=4)
    with pytest.raises(ValueError, match="attack_seed"):
        attacks.attack_batch(w, "pgd", w.images, w.labels, 0)


# --- best iterate and step schedule ------------------------------------------------------------

def per_image_loss(model, x, y):
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x), y, reduction="none")


def test_best_iterate_has_the_highest_loss_of_the_run(world):
    """Deterministic model: the best iterate's loss is at least the last one's and the start's,
    per image, and it is one of the run's iterates (in the ball)."""
    x, y, eps = world.images, world.labels, 48 / 255
    run = functools.partial(attacks.pgd, world.classifier, x, y, eps, 6, eps / 2, True)
    last = run(torch.Generator().manual_seed(1), iterate="last")
    best = run(torch.Generator().manual_seed(1), iterate="best")
    start = attacks.uniform(x, eps, torch.Generator().manual_seed(1))
    loss = {k: per_image_loss(world.classifier, v, y)
            for k, v in (("last", last), ("best", best), ("start", start))}
    assert (loss["best"] >= loss["last"] - 1e-6).all() and (loss["best"] >= loss["start"] - 1e-6).all()
    assert within(best, x, eps)
    none = attacks.pgd(world.classifier, x, y, eps, 0, eps, True, torch.Generator().manual_seed(1),
                       iterate="best")
    torch.testing.assert_close(none, start)


def test_best_iterate_is_scored_by_fresh_samples_after_the_last_gradient():
    """The run is the last iterate's (the same gradient seeds); then each of the 3 iterates
    is scored with 3 new seeds, which no gradient saw."""
    w = tiny_world(2, eot=3, attack_steps=2, pgd_iterate="best")
    spy = SeedSpy(w.purifier())
    best = attacks.attack_batch(w, "pgd-eot", w.images, w.labels, 0, purifier=spy)
    seeds = [s for _, c in spy.calls for s in c]
    assert seeds == list(range(1000, 1000 + 2 * 3 + 3 * 3))  # 2 gradients, then 3 scores
    last_w = dataclasses.replace(w, params=w.params.replace(pgd_iterate="last"))
    last_spy = SeedSpy(last_w.purifier())
    attacks.attack_batch(last_w, "pgd-eot", w.images, w.labels, 0, purifier=last_spy)
    assert [s for _, c in last_spy.calls for s in c] == seeds[:6]
    assert within(best, w.images, w.params.eps)
    key_best, key_last = (stages.attack_key(v, "pgd-eot") for v in (w, last_w))
    assert key_best["best_scored"] == "fresh" and "best_scored" not in key_last


def test_cosine_schedule_decays_the_step():
    """A linear model (constant gradient sign): constant steps add up to steps x a, cosine ones
    to a x sum_c (1 + cos(pi c / steps)) / 2 = a x (1 + 0.5) for 2 steps."""
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x, y = torch.full((2, 1, 8, 8), 0.5), torch.tensor([0, 1])
    move = {s: (attacks.pgd(lin, x, y, 0.4, 2, 0.1, False, schedule=s) - x).abs().amax().item()
            for s in attacks.SCHEDULES}
    assert move["constant"] == pytest.approx(0.2) and move["cosine"] == pytest.approx(0.15)
    with pytest.raises(ValueError, match="schedule"):
        attacks.pgd(lin, x, y, 0.4, 2, 0.1, schedule="linear")
    with pytest.raises(ValueError, match="iterate"):
        attacks.pgd(lin, x, y, 0.4, 2, 0.1, iterate="first")


def test_transfer_attack_never_runs_the_diffusion_model():
    w = tiny_world(2)
    calls = []
    w.diffusion.register_forward_hook(lambda *a: calls.append(1))
    x_adv = attacks.attack_batch(w, "transfer", w.images, w.labels, 0)
    assert not calls and within(x_adv, w.images, w.params.eps)


def test_eotpgd_uses_one_seed_per_sample_and_leaves_the_global_generator_alone():
    """torchattacks' EOTPGD: one seed per EOT sample, the samples of a step folded into one
    call (eot_batch = 0) or one call each (eot_batch = 1)."""
    w = tiny_world(2, eot=3, attack_steps=2)
    spy = SeedSpy(w.purifier())
    before = torch.random.get_rng_state()
    a = attacks.attack_batch(w, "eotpgd", w.images, w.labels, 0, purifier=spy)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert [c for _, c in spy.calls] == [[1000, 1001, 1002], [1003, 1004, 1005]]
    one = dataclasses.replace(w, params=w.params.replace(eot_batch=1))
    spy = SeedSpy(w.purifier())
    attacks.attack_batch(one, "eotpgd", w.images, w.labels, 0, purifier=spy)
    assert [c for _, c in spy.calls] == [[1000 + k] for k in range(6)]
    torch.testing.assert_close(attacks.attack_batch(w, "eotpgd", w.images, w.labels, 0), a)


# --- agreement with torchattacks (the trusted reference) ---------------------------------------

def test_pgd_equals_torchattacks_pgd_from_the_same_start(world):
    x, y, eps = world.images, world.labels, 48 / 255
    for random_start in (False, True):
        torch.manual_seed(5)  # torchattacks draws its start from the global generator
        ref = torchattacks.PGD(world.classifier, eps=eps, alpha=eps / 10, steps=7,
                               random_start=random_start)(x, y)
        ours = attacks.pgd(world.classifier, x, y, eps, 7, eps / 10, random_start,
                           torch.Generator().manual_seed(5))
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
        assert (ours - x).abs().max() > eps / 2  # it moved


@pytest.mark.parametrize("attack", attacks.TABLE_1)
def test_system_attacks_equal_torchattacks_around_the_same_system(world, attack):
    """BPDA = torchattacks PGD around a straight-through purifier; -eot = torchattacks EOTPGD
    (one call per EOT sample) with the seeds our folded batch uses."""
    w = tiny_world(4, eot=3, attack_steps=2)
    p, purifier = w.params, w.purifier()
    eot = attacks.get(attack).eot_samples(p.eot)
    model = attacks.SystemLogits(w.classifier, purifier, 2, p.attack_seed, len(w.images),
                                 straight=attacks.get(attack).gradient == "straight-through")
    start = attacks.uniform(w.images, p.eps, torch.Generator().manual_seed(
        seed_for(p.attack_seed, 2, 0, False)))
    # torchattacks starts from its input: give it our random start with eps measured from x
    # by running our pgd without random start from the same point instead.
    ref = torchattacks.EOTPGD(model, eps=p.eps, alpha=p.step_size, steps=p.attack_steps,
                              eot_iter=eot, random_start=False)(start, w.labels)
    ours_model = attacks.SystemLogits(w.classifier, purifier, 2, p.attack_seed, len(w.images),
                                      straight=attacks.get(attack).gradient == "straight-through")
    ours = attacks.pgd(ours_model, start, w.labels, p.eps, p.attack_steps, p.step_size,
                       random_start=False, eot=eot)
    assert model.calls == p.attack_steps * eot and ours_model.calls == p.attack_steps
    same = same_pixels(ours, ref)
    assert same > 0.97, f"{attack}: only {same:.3f} of the pixels agree with torchattacks"


# --- gradients through the purifier ---------------------------------------------------------

def test_eot_folding_gives_the_mean_of_the_per_seed_gradients():
    w = tiny_world(3)
    unet = w.diffusion.double()
    cls = w.classifier.double()
    purifier = Purifier(unet, w.scheduler, "ddpm", 2, (1, 8, 8))
    x = w.images.double().requires_grad_(True)
    seeds = [11, 12, 13]
    folded = torch.nn.functional.cross_entropy(
        cls(purifier(x.repeat(3, 1, 1, 1), seeds, 1, grad=True)), w.labels.repeat(3))
    (g_folded,) = torch.autograd.grad(folded, x)
    g_loop = sum(torch.autograd.grad(torch.nn.functional.cross_entropy(
        cls(purifier(x, s, 1, grad=True)), w.labels), x)[0] for s in seeds) / 3
    torch.testing.assert_close(g_folded, g_loop)
    assert g_folded.abs().sum() > 0


class SeedSpy:
    """A purifier that records the rows and base seeds of every call."""

    def __init__(self, purifier):
        self.purifier, self.model, self.calls = purifier, purifier.model, []

    def __call__(self, x, base_seeds, batch_index, grad=False):
        self.calls.append((len(x), list(base_seeds)))
        return self.purifier(x, base_seeds, batch_index, grad=grad)


@pytest.mark.parametrize("attack", ["bpda-eot", "pgd-eot"])
def test_eot_batch_bounds_the_rows_per_call_and_keeps_seeds_and_result(attack):
    w = tiny_world(4, eot=5, attack_steps=2)
    runs = {}
    for eot_batch in (0, 2):
        wb = dataclasses.replace(w, params=w.params.replace(eot_batch=eot_batch))
        spy = SeedSpy(wb.purifier())
        x_adv = attacks.attack_batch(wb, attack, w.images, w.labels, 1, purifier=spy)
        runs[eot_batch] = x_adv, spy.calls
    (folded, calls), (split, split_calls) = runs[0], runs[2]
    assert [r for r, _ in calls] == [4 * 5] * 2                  # one call per step
    assert [r for r, _ in split_calls] == [4 * 2, 4 * 2, 4 * 1] * 2  # 2 + 2 + 1 samples
    seeds = [s for _, c in calls for s in c]
    assert [s for _, c in split_calls for s in c] == seeds == list(range(1000, 1010))
    same = same_pixels(split, folded)
    assert same > 0.97, f"{attack}: only {same:.3f} of the pixels agree"


def test_eot_per_call():
    p = params.load(None, eot=15)
    assert [p.replace(eot_batch=b).eot_per_call for b in (0, 1, 4, 15, 40)] == [15, 1, 4, 15, 15]


@trained
def test_gradients_through_the_purifier_are_finite_and_not_zero(trained_world):
    w = trained_world
    x = w.images[:8].clone().requires_grad_(True)
    for method in ("ddpm", "reverse", "ddim", "onestep"):
        purifier = w.purifier(method=method)
        loss = torch.nn.functional.cross_entropy(w.classifier(purifier(x, [1000], 0, grad=True)),
                                                 w.labels[:8])
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(g).all(), method
        assert (g.abs().flatten(1).sum(1) > 0).all(), f"{method}: a zero gradient"


# --- sanity checks of Carlini et al. (2019) on the trained digits models --------------------

def accuracy(w, x):
    return (w.predict(x) == w.labels).float().mean().item()


@trained
def test_pgd_drives_the_bare_classifier_near_zero(trained_world):
    w = trained_world
    assert accuracy(w, w.images) > 0.9
    x_adv = attacks.pgd(w.classifier, w.images, w.labels, 48 / 255, 40, 48 / 255 / 30,
                        generator=torch.Generator().manual_seed(0))
    assert accuracy(w, x_adv) <= 0.05


@trained
def test_robust_accuracy_does_not_rise_with_eps(trained_world):
    w = trained_world
    accs = [accuracy(w, attacks.pgd(w.classifier, w.images, w.labels, e / 255, 20, e / 255 / 8,
                                    random_start=False)) for e in (4, 12, 24, 48)]
    assert all(b <= a for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < accs[0]


def purified_accuracy(w, x, i=0):
    preds = stages.predict_purified(w, x, i, list(range(w.params.n_evals)))
    return (preds == w.labels.numpy()[None]).mean()


@trained
def test_more_steps_or_eot_samples_do_not_weaken_the_attack(trained_world):
    """Averaged over attack seeds, PGD-EOT with more steps / EOT samples leaves no more
    accuracy to the purified system (one image of slack out of 16 x 2 seeds)."""
    base = trained_world
    results = {}
    for name, steps, eot in [("weak", 2, 1), ("more steps", 6, 1), ("more eot", 2, 4)]:
        accs = []
        for seed in (500, 700):
            p = base.params.replace(attack_steps=steps, eot=eot, attack_seed=seed, eps_255=48.0,
                                    rel_stepsize=0.25)
            w = World("digits", base.images[:16], base.labels[:16], base.classifier,
                      base.diffusion, base.scheduler, p)
            x_adv = attacks.attack_batch(w, "pgd-eot", w.images, w.labels, 0)
            accs.append(purified_accuracy(w, x_adv))
        results[name] = np.mean(accs)
    assert results["more steps"] <= results["weak"] + 1 / 32, results
    assert results["more eot"] <= results["weak"] + 1 / 32, results
    clean = purified_accuracy(w, w.images)
    assert results["weak"] < clean, (results, clean)


def ce_per_image(model, x, y):
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x), y, reduction="none")


def test_restarts_keep_per_image_the_run_of_highest_loss(world):
    """Two restarts: the runs from the first and the second random start of the generator,
    per image the one of higher (here noise-free) loss; one restart is the run alone."""
    x, y, eps = world.images, world.labels, 48 / 255
    run = functools.partial(attacks.pgd, world.classifier, x, y, eps, 2, eps / 4, True)
    g = torch.Generator().manual_seed(3)
    first, second = run(g), run(g)
    both = run(torch.Generator().manual_seed(3), restarts=2)
    a, b = ce_per_image(world.classifier, first, y), ce_per_image(world.classifier, second, y)
    torch.testing.assert_close(both, torch.where((b > a).view(-1, 1, 1, 1), second, first))
    assert not torch.equal(first, second)
    torch.testing.assert_close(run(torch.Generator().manual_seed(3), restarts=1), first)
    with pytest.raises(ValueError, match="restarts"):
        run(g, restarts=0)


def test_restarts_continue_the_seed_plan_and_enter_the_key():
    """PGD-EOT with 2 restarts, last iterate: run 1's gradients, a fresh score of its result,
    run 2's gradients, a fresh score of its; one restart leaves the key as it was (results
    recorded before restarts existed keep their digest) and an attack without restarts
    ignores them."""
    w = tiny_world(2, eot=2, attack_steps=2, attack_restarts=2)
    spy = SeedSpy(w.purifier())
    attacks.attack_batch(w, "pgd-eot", w.images, w.labels, 0, purifier=spy)
    assert [s for _, c in spy.calls for s in c] == list(range(1000, 1000 + 2 * (2 * 2 + 2)))
    one = dataclasses.replace(w, params=w.params.replace(attack_restarts=1))
    assert stages.attack_key(w, "pgd-eot")["restarts"] == 2
    assert stages.attack_key(w, "apgd-eot")["restarts"] == 2
    assert "restarts" not in stages.attack_key(one, "pgd-eot")
    assert stages.attack_key(w, "eotpgd") == stages.attack_key(one, "eotpgd")
    assert attacks.get("pgd-eot").work(2, 2, "last", restarts=2) == (8, 4)
    assert attacks.get("eotpgd").work(2, 2, "last", restarts=2) == (4, 0)


class NoisyClassifier:
    """A classifier of ``x + noise[k]`` for the k-th copy seen (fixed draws, as a purifier's
    seeds): the EOT samples without a diffusion model."""

    def __init__(self, model, noise):
        self.model, self.noise, self.seen = model, noise, 0

    def __call__(self, rows):
        n = self.noise.shape[1]
        m = len(rows) // n
        noise = self.noise[self.seen:self.seen + m].flatten(0, 1)
        self.seen += m
        return self.model(rows + noise)


@pytest.mark.parametrize("eot_batch", [0, 1, 2])
def test_vote_loss_steps_along_the_gradient_of_the_soft_vote(world, eot_batch):
    """One step of the vote attack moves along the sign of the gradient of
    -log(mean over the 3 draws of the label's softmax), however the draws are split."""
    x, y, eps = world.images, world.labels, 48 / 255
    noise = 0.5 * torch.randn(3, *x.shape, generator=torch.Generator().manual_seed(0))

    def model(z):
        return 30 * world.classifier(z)  # confident: the vote's weights differ from 1/3
    x_adv = attacks.pgd(NoisyClassifier(model, noise), x, y, eps, 1, eps, False,
                        eot=3, eot_batch=eot_batch, loss="vote")
    z = x.clone().requires_grad_(True)
    probs = torch.stack([model(z + n).softmax(1)[torch.arange(len(y)), y] for n in noise])
    grad = torch.autograd.grad(-probs.mean(0).log().sum(), z)[0]
    torch.testing.assert_close(x_adv, (x + eps * grad.sign()).clamp(0, 1))
    ce = attacks.pgd(NoisyClassifier(model, noise), x, y, eps, 1, eps, False, eot=3)
    assert not torch.equal(ce, x_adv)  # the mean cross-entropy is another loss


def test_vote_loss_stays_finite_where_the_softmax_underflows(world):
    x, y, eps = world.images, world.labels, 48 / 255

    def confident(rows):
        return 1e4 * world.classifier(rows)
    x_adv = attacks.pgd(confident, x, y, eps, 2, eps / 4, True,
                        torch.Generator().manual_seed(0), eot=2, loss="vote", iterate="best")
    assert torch.isfinite(x_adv).all() and within(x_adv, x, eps)
    with pytest.raises(ValueError, match="loss"):
        attacks.pgd(confident, x, y, eps, 1, eps, loss="hinge")


def test_a_stopped_image_keeps_its_first_flagged_iterate(world):
    """``stop`` flags image 0 after the first step: it keeps that iterate (the run of one
    step), the others follow the full run; a flagged image wins over a later restart."""
    x, y, eps = world.images, world.labels, 48 / 255
    run = functools.partial(attacks.pgd, world.classifier, x, y, eps)
    calls = []

    def stop(x_adv):
        calls.append(len(calls))
        return torch.arange(len(x_adv)) == 0 if len(calls) == 2 else torch.zeros(
            len(x_adv), dtype=torch.bool)
    for iterate in ("last", "best"):
        calls.clear()
        full = run(3, eps / 4, True, torch.Generator().manual_seed(1), iterate=iterate)
        one = run(1, eps / 4, True, torch.Generator().manual_seed(1))
        stopped = run(3, eps / 4, True, torch.Generator().manual_seed(1), iterate=iterate,
                      stop=stop)
        assert len(calls) == 4  # the start and the 3 steps
        torch.testing.assert_close(stopped[0], one[0])
        torch.testing.assert_close(stopped[1:], full[1:])
    calls.clear()
    twice = run(3, eps / 4, True, torch.Generator().manual_seed(1), restarts=2, stop=stop)
    torch.testing.assert_close(twice[0], one[0])


def test_checked_attack_draws_its_evaluations_from_a_stream_of_its_own():
    """nevals-eot's gradients see PGD-EOT's seeds; its N = 3 evaluations of each of its
    3 iterates come from attack_seed + CHECK_SEEDS on; its own flags say which images one
    of them misclassified, and an unflagged image ends where PGD-EOT does."""
    w = tiny_world(3, eot=2, attack_steps=2, attack_checks=3)
    spy = SeedSpy(w.purifier())
    x_adv, fooled = attacks.attack_batch_checked(w, "nevals-eot", w.images, w.labels, 0,
                                                 purifier=spy)
    seeds = [s for _, c in spy.calls for s in c]
    base = 1000 + attacks.system.CHECK_SEEDS
    assert sorted(s for s in seeds if s < base) == list(range(1000, 1004))
    assert sorted(s for s in seeds if s >= base) == list(range(base, base + 3 * 3))
    assert fooled.dtype == torch.bool and fooled.shape == (3,)
    plain = attacks.attack_batch(w, "pgd-eot", w.images, w.labels, 0)
    torch.testing.assert_close(x_adv[~fooled], plain[~fooled])
    assert attacks.attack_batch_checked(w, "pgd-eot", w.images, w.labels, 0)[1] is None
    assert stages.attack_key(w, "nevals-eot")["checks"] == 3
    assert attacks.get("nevals-eot").work(2, 2, "last", checks=3) == (4, 9)


@pytest.mark.parametrize("attack,changes", [("vote-eot", {}), ("nevals-eot", {}),
                                            ("pgd-eot", {"attack_restarts": 2}),
                                            ("apgd-eot", {"attack_restarts": 2})])
def test_new_attacks_go_through_the_store_in_shards_and_resume(tmp_path, monkeypatch, attack,
                                                               changes):
    """Two shards write the files of one process; a rerun reads them and computes nothing."""
    from conftest import stage_world
    from test_stages import files

    one = stage_world(tmp_path / "one", **changes)
    x_adv = stages.adversarial(one, attack, progress=False)
    parts = stage_world(tmp_path / "parts", **changes)
    for shard in ("1/2", "0/2"):
        stages.adversarial(parts, attack, shard=shard, progress=False)
    assert files(tmp_path / "one") == files(tmp_path / "parts")

    def fail(*a, **k):
        raise AssertionError("a finished batch was recomputed")
    monkeypatch.setattr(attacks, "attack_batch", fail)
    assert torch.equal(stages.adversarial(parts, attack, progress=False), x_adv)


def test_diffrob_attack_runs_the_vote_the_checked_and_restarted_attacks(tmp_path, capsys):
    """`diffrob attack` stores them (restarts in a key of their own), `--help` lists them from
    the registry, and `diffrob plan` counts them."""
    from diffrob import cli

    base = ["--params", "params/smoke.yaml", "-p", "results_dir", str(tmp_path),
            "-p", "n_images", "2"]
    cli.main(["attack", *base, "--attack", "vote-eot", "nevals-eot"])
    cli.main(["attack", *base, "-p", "attack_restarts", "2", "--attack", "pgd-eot"])
    for name in ("vote-eot", "nevals-eot", "pgd-eot"):
        assert list((tmp_path / "digits" / "attack" / name).rglob("batch_*.safetensors")), name
    with pytest.raises(SystemExit):
        cli.main(["attack", "--help"])
    assert "vote-eot" in capsys.readouterr().out
    cli.main(["plan", *base, "-p", "attacks", "[vote-eot, nevals-eot]"])
    out = capsys.readouterr().out
    assert "attack/vote-eot" in out and "attack/nevals-eot" in out
