"""Stages through the store: resumable, shardable, other parameters kept apart (sec. 4)."""

import numpy as np
import pytest
import torch

from diffrob import attacks, params, stages, store

from conftest import stage_world


def files(root):
    """The stored results under ``root`` (not the journal of who computed them, and when)."""
    return {f.relative_to(root): f.read_bytes() for f in sorted(root.rglob("*"))
            if f.is_file() and f.name != store.JOURNAL}


def test_adversarial_runs_every_batch_once_and_a_rerun_skips_them(tmp_path, monkeypatch):
    w = stage_world(tmp_path)
    x_adv = stages.adversarial(w, "bpda-eot", progress=False)
    assert x_adv.shape == w.images.shape
    assert (x_adv - w.images).abs().max() <= w.params.eps + 1e-6
    assert len(list((w.params.store_dir / "attack" / "bpda-eot").glob("*/*.safetensors"))) == 3
    # each batch i is attack_batch(..., i) on its rows: eq. 9's batch index is used
    i, rows = w.batches()[1]
    torch.testing.assert_close(x_adv[rows], attacks.attack_batch(
        w, "bpda-eot", w.images[rows], w.labels[rows], i), rtol=0, atol=0)

    def fail(*a, **k):
        raise AssertionError("a finished batch was recomputed")
    monkeypatch.setattr(attacks, "attack_batch", fail)
    assert torch.equal(stages.adversarial(w, "bpda-eot", progress=False), x_adv)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    full = stage_world(tmp_path / "full")
    stages.adversarial(full, "pgd", progress=False)
    part = stage_world(tmp_path / "part")
    stages.adversarial(part, "pgd", shard="1/3", progress=False)  # as if stopped early
    stages.adversarial(part, "pgd", progress=False)
    assert files(tmp_path / "full") == files(tmp_path / "part")


def test_shards_write_the_files_of_one_process(tmp_path):
    one = stage_world(tmp_path / "one")
    stages.adversarial(one, "pgd-eot", progress=False)
    stages.evaluations(one, "pgd-eot", progress=False)
    many = stage_world(tmp_path / "many")
    parts = [stages.evaluations(many, "pgd-eot", shard=f"{k}/2", progress=False)
             for k in (1, 0)]
    assert [p.shape for p in parts] == [(4, 2), (4, 4)]  # batch 1 / batches 0 and 2
    assert files(tmp_path / "one") == files(tmp_path / "many")


def test_evaluations_are_predictions_under_seeds_0_to_r_minus_1(tmp_path):
    w = stage_world(tmp_path, n_evals=5, eot=2)  # seeds folded 2 at a time: 2 + 2 + 1
    preds = stages.evaluations(w, "clean", progress=False)
    assert preds.shape == (5, 6) and preds.dtype == np.int64
    purifier = w.purifier()
    for i, rows in w.batches():
        for s in (0, 4):
            want = w.classifier(purifier(w.images[rows], s, i)).argmax(1).numpy()
            np.testing.assert_array_equal(preds[s, rows], want)
    assert np.array_equal(stages.evaluations(w, "clean", progress=False), preds)


def test_other_parameters_on_the_same_store_are_kept_apart(tmp_path):
    first = stages.adversarial(stage_world(tmp_path), "bpda", progress=False)
    stages.adversarial(stage_world(tmp_path, attack_steps=3), "bpda", progress=False)
    assert len(list((tmp_path / "digits" / "attack" / "bpda").iterdir())) == 2
    assert torch.equal(stages.adversarial(stage_world(tmp_path), "bpda", progress=False), first)


def test_table_1_has_clean_and_every_attack(tmp_path):
    from diffrob.fuzzy import runs

    w = stage_world(tmp_path, attacks=["bpda", "pgd"])
    t = runs.table_1(w, progress=False)
    assert list(t.index) == ["clean", "bpda", "pgd"]
    assert ((t.drop(columns="standard_std") >= 0) & (t.drop(columns="standard_std") <= 100)).all().all()


@pytest.mark.parametrize("bad", ["2/2", "1", "a/b", "-1/2"])
def test_bad_shards_are_named(bad):
    with pytest.raises(ValueError, match="shard"):
        stages.parse_shard(bad)


def _no_compute(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("a stored batch was recomputed")
    monkeypatch.setattr(attacks, "attack_batch", fail)


def test_changed_data_are_not_served_from_the_store(tmp_path, monkeypatch):
    """Re-extracted or rebuilt test images (same parameters) get their own results."""
    w = stage_world(tmp_path)
    first = stages.adversarial(w, "bpda", progress=False)
    changed = stage_world(tmp_path)
    changed.images = (changed.images.flip(-1)).contiguous()  # other images, same settings
    second = stages.adversarial(changed, "bpda", progress=False)
    assert (second - changed.images).abs().max() <= w.params.eps + 1e-6
    assert len(list((tmp_path / "digits" / "attack" / "bpda").iterdir())) == 2
    relabelled = stage_world(tmp_path)
    relabelled.labels = (relabelled.labels + 1) % 10
    _no_compute(monkeypatch)
    with pytest.raises(AssertionError, match="recomputed"):
        stages.adversarial(relabelled, "bpda", progress=False)
    assert torch.equal(stages.adversarial(stage_world(tmp_path), "bpda", progress=False), first)


def test_compiled_models_find_the_stored_results(tmp_path, monkeypatch):
    w = stage_world(tmp_path)
    first = stages.adversarial(w, "bpda", progress=False)
    w.classifier, w.diffusion = torch.compile(w.classifier), torch.compile(w.diffusion)
    _no_compute(monkeypatch)
    assert torch.equal(stages.adversarial(w, "bpda", progress=False), first)


def test_evaluating_a_stored_attack_with_seeds_it_used_is_refused(tmp_path, monkeypatch):
    w = stage_world(tmp_path, attack_seed=10, n_evals=4)
    stages.adversarial(w, "bpda", progress=False)
    raised = stage_world(tmp_path, attack_seed=10, n_evals=11)  # the attack's seeds 10, 11, ...
    monkeypatch.setattr(stages, "predict_purified", lambda *a, **k: pytest.fail("evaluated"))
    with pytest.raises(ValueError, match=r"'attack_seed' \(10\) must be >= n_evals \(11\)"):
        stages.evaluations(raised, "bpda", progress=False)


class NaNAfter(torch.nn.Module):
    """A classifier whose logits turn NaN (as an fp16 overflow would)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * float("nan")


@pytest.mark.parametrize("stage", ["attack", "evaluate"])
def test_non_finite_values_are_refused_and_never_stored(tmp_path, stage):
    w = stage_world(tmp_path)
    w.classifier = NaNAfter(w.classifier)
    with pytest.raises(FloatingPointError, match=rf"{stage}/pgd, batch 0: .*NaN or infinite"):
        if stage == "attack":
            stages.adversarial(w, "pgd", progress=False)
        else:
            stages.evaluations(w, "pgd", progress=False)
    assert not list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("*.lock"))


def test_evaluate_nan_clean_names_the_batch(tmp_path):
    w = stage_world(tmp_path)
    w.classifier = NaNAfter(w.classifier)
    with pytest.raises(FloatingPointError, match=r"evaluate/clean, batch 0: classifier logits"):
        stages.evaluations(w, "clean", progress=False)


# --- the keys of the attack and evaluation stages -----------------------------------------

def test_attack_key_holds_what_determines_the_result_and_nothing_else(tmp_path):
    w = stage_world(tmp_path)
    k = stages.attack_key(w, "pgd-eot")
    for change in [dict(eps_255=16.0), dict(attack_steps=3), dict(eot=3), dict(t_star=3),
                   dict(attack_seed=7), dict(random_start=False),
                   dict(batch_size=3), dict(purifier="ddim"), dict(rel_stepsize=0.1),
                   dict(pgd_iterate="best"), dict(pgd_schedule="cosine")]:
        assert stages.attack_key(stage_world(tmp_path, **change), "pgd-eot") != k, change
    for change in [dict(device="cpu"), dict(n_evals=7),
                   dict(checkpointing=False), dict(model_dir="other"), dict(eot_batch=1)]:
        assert stages.attack_key(stage_world(tmp_path, **change), "pgd-eot") == k, change
    assert stages.attack_key(stage_world(tmp_path / "elsewhere"), "pgd-eot") == k
    other = stage_world(tmp_path)
    with torch.no_grad():
        next(other.classifier.parameters()).add_(1e-3)
    assert stages.attack_key(other, "pgd-eot") != k  # other weights
    # without EOT the eot parameter does not matter; r matters only to evaluations
    assert stages.attack_key(stage_world(tmp_path, eot=5), "pgd") == stages.attack_key(w, "pgd")
    assert (stages.evaluation_key(stage_world(tmp_path, n_evals=7), "pgd")
            != stages.evaluation_key(w, "pgd"))
    assert (stages.evaluation_key(stage_world(tmp_path, eps_255=1.0), "clean")
            == stages.evaluation_key(w, "clean"))


def test_an_unknown_attack_is_refused_with_the_closest_name(tmp_path):
    w = stage_world(tmp_path)
    with pytest.raises(ValueError, match=r"unknown attack 'pgd_eot' \(did you mean 'pgd-eot'"):
        stages.attack_key(w, "pgd_eot")
    with pytest.raises(ValueError, match=r"unknown attack 'foo'"):
        stages.evaluation_key(w, "foo")


def test_seed_guard_holds_for_evaluations_of_stored_attacks(tmp_path):
    w = stage_world(tmp_path)
    assert w.params.attack_seed >= w.params.n_evals
    stages.evaluation_key(w, "pgd")
    many = stage_world(tmp_path, n_evals=5000)
    stages.evaluation_key(many, "clean")  # clean inputs have no attack seeds
    with pytest.raises(ValueError, match=r"'attack_seed' \(1000\) must be >= n_evals \(5000\)"):
        stages.evaluation_key(many, "pgd")


# --- every stage goes through store.cached: two processes compute each batch once ----------

TWO = """
import os, sys, time
from diffrob import worlds
from diffrob.cap import runs
compute = runs._slice_batch
def logged(*a, **k):
    out = compute(*a, **k)
    time.sleep(0.5)  # long enough for the other process to find the claim
    open(os.environ["COMPUTED"], "a").write(f"{os.getpid()}\\n")
    return out
runs._slice_batch = logged
w = worlds.load("digits", results_dir=sys.argv[1], n_images=16, batch_size=1, cap_images=6,
                cap_points=20, attack_steps=2, t_star=1)
s = runs.slice_world(w, "random")
print(s.predictions.tolist(), s.index.tolist())
"""


def test_two_processes_on_a_cap_stage_compute_each_batch_once(tmp_path):
    """The sec. 5 slices, like every stored stage, are claimed batch by batch (store.cached):
    two processes started together share the batches and print the same slices."""
    import os
    import subprocess
    import sys

    log = tmp_path / "computed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COMPUTED": str(log)}
    procs = [subprocess.Popen([sys.executable, "-c", TWO, str(tmp_path / "results")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    assert outs[0][0] == outs[1][0]  # the same slices in both
    owners = log.read_text().split()
    assert len(owners) == 6, f"{len(owners)} batch computations for 6 batches"  # none twice
