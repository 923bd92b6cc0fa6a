"""Purifier variants: one-step denoising under PGD-EOT and the fixed-noise experiment
(appendix B, C.2, review thread)."""

import numpy as np
import pytest
import torch

from diffrob import attacks, claims, stages, store
from diffrob.fuzzy import analysis, report, runs_variants
from diffrob.worlds import World

from conftest import tiny_world as _tiny_world


def tiny_world(results_dir, **overrides) -> World:
    """6 images in batches of 2 (4 of them in the variants), random seeded models, t* = 2."""
    return _tiny_world(6, results_dir=str(results_dir), batch_size=2, t_star=2,
                       variant_images=4, **overrides)


def test_accuracy_rows_carry_wilson_for_one_run_and_a_bootstrap_for_several():
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    one = analysis.accuracy_row(np.where(np.arange(10) < 5, labels, 0)[None], labels)
    assert one["ours"] == 50 and (round(one["low"], 2), round(one["high"], 2)) == (23.66, 76.34)
    runs = np.stack([labels, np.zeros(10, dtype=int)])  # right in one run of two, image 0 in both
    many = analysis.accuracy_row(runs, labels)
    assert many["ours"] == pytest.approx(55) and many["low"] < 55 < many["high"]


def test_fixed_noise_t_carries_the_papers_ratio():
    assert analysis.fixed_noise_t(10, 150, 100) == 15   # digits: the thread's t = 150 of t* 100
    assert analysis.fixed_noise_t(100, 150, 100) == 150  # CIFAR-10 itself
    assert analysis.fixed_noise_t(150, 100, 150) == 100  # ImageNet reverse-only
    assert analysis.fixed_noise_t(1, 1, 100) == 1
    with pytest.raises(ValueError, match="t_star"):
        analysis.fixed_noise_t(0, 150, 100)


def test_fixed_noise_ignores_the_callers_seeds_and_dedups_exactly(tmp_path):
    w = tiny_world(tmp_path)
    pur = w.purifier("ddpm", 2)
    fixed = analysis.FixedNoise(pur, 0)
    x = w.images[:2]
    assert torch.equal(fixed(x, 7, 3), pur(x, 0, 3))
    assert not torch.equal(pur(x, 7, 3), pur(x, 0, 3))  # the seed does matter to the purifier
    rows = x.repeat(3, 1, 1, 1)
    deduped = fixed(rows, [5, 6, 7], 1)
    torch.testing.assert_close(deduped, pur(rows, [0, 0, 0], 1))  # up to batched rounding
    assert torch.equal(deduped[:2], deduped[4:])
    other = torch.cat([x, x.flip(0), x])  # chunks differ: each purified with seed 0
    torch.testing.assert_close(fixed(other, [5, 6, 7], 1), pur(other, [0, 0, 0], 1))


def test_under_fixed_noise_bpda_eot_is_bpda(tmp_path):
    """EOT over copies of one sample averages equal gradients: the same attack. With the
    purifier's own (varying) seeds the two attacks differ, so this can fail."""
    w = runs_variants.subset(tiny_world(tmp_path, eot=3), purifier="ddpm")
    x, y = w.images[:2], w.labels[:2]
    fixed = analysis.FixedNoise(w.purifier(), 0)
    a = attacks.attack_batch(w, "bpda", x, y, 0, fixed)
    b = attacks.attack_batch(w, "bpda-eot", x, y, 0, fixed)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not torch.allclose(attacks.attack_batch(w, "bpda-eot", x, y, 0), a, atol=1e-6)


def test_fixed_noise_attacks_with_the_evaluations_noise_and_is_stored(tmp_path, monkeypatch):
    w = tiny_world(tmp_path)
    preds = runs_variants.fixed_noise(w, "reverse", 2, progress=False)
    assert set(preds) == {"clean", "bpda", "bpda-eot", "pgd"}
    assert all(len(v) == 4 for v in preds.values())
    # clean: one deterministic evaluation with base seed 0, batch by batch (eq. 9's i)
    sub = runs_variants.subset(w, purifier="reverse", t_star=2)
    pur = sub.purifier()
    want = np.concatenate([w.classifier(pur(sub.images[r], 0, i)).argmax(1).numpy()
                           for i, r in sub.batches()])
    assert np.array_equal(preds["clean"], want)
    # the stored examples are the attack on the fixed-noise purifier, not on the random one
    i, rows = sub.batches()[1]
    stored = list((w.params.store_dir / "fixed-noise" / "attack" / "bpda").glob("*/*"))
    assert len(stored) == 2
    x_adv = attacks.attack_batch(sub, "bpda", sub.images[rows], sub.labels[rows], i,
                                 analysis.FixedNoise(pur, 0))
    with torch.no_grad():
        want = w.classifier(pur(x_adv, 0, i)).argmax(1).numpy()
    assert np.array_equal(preds["bpda"][rows], want)

    def fail(*a, **k):
        raise AssertionError("a stored batch was recomputed")
    monkeypatch.setattr(attacks, "attack_batch", fail)
    again = runs_variants.fixed_noise(w, "reverse", 2, progress=False)
    assert all(np.array_equal(again[s], preds[s]) for s in preds)
    with pytest.raises(ValueError, match="method"):
        runs_variants.fixed_noise(w, "ddim", 2)


def test_onestep_uses_the_stages_with_the_onestep_purifier(tmp_path):
    w = tiny_world(tmp_path)
    preds = runs_variants.onestep(w, progress=False)
    assert preds["clean"].shape == (w.params.n_evals, 4)
    sub = runs_variants.subset(w, purifier="onestep")
    assert np.array_equal(preds["pgd-eot"], stages.evaluations(sub, "pgd-eot", progress=False))
    assert list((w.params.store_dir / "attack" / "pgd-eot").glob("*/*"))
    assert sub.purifier().method == "onestep" and sub.params.n_images == 4


def test_under_fixed_noise_an_eot_attack_is_its_twin_without_eot_computed_once(tmp_path):
    """BPDA-EOT averages copies of one draw: its examples are BPDA's, stored once."""
    assert attacks.without_eot("bpda-eot") == "bpda" and attacks.without_eot("pgd-eot") == "pgd"
    assert attacks.without_eot("bpda") == "bpda" and attacks.without_eot("apgd-eot") == "apgd-eot"
    w = tiny_world(tmp_path)
    preds = runs_variants.fixed_noise(w, "ddpm", 2, progress=False)
    assert np.array_equal(preds["bpda-eot"], preds["bpda"])
    stored = w.params.store_dir / "fixed-noise" / "attack"
    assert sorted(p.name for p in stored.iterdir()) == ["bpda", "pgd"]  # pgd: known noise


def test_fixed_noise_attacks_are_stored_under_the_attack_key_and_the_fixed_seed(tmp_path):
    w = tiny_world(tmp_path)
    runs_variants.fixed_noise(w, "ddpm", 2, attack_names=("bpda",), progress=False)
    sub = runs_variants.subset(w, purifier="ddpm", t_star=2)
    k = {**stages.attack_key(sub, "bpda"), "noise": "fixed", "noise_seed": 0}
    assert k["stage"] == "attack/bpda" and k["eot"] == 1
    for i, _ in sub.batches():
        assert store.path(w.params, "fixed-noise/attack/bpda", i, k).is_file()


def test_accuracy_row_and_the_papers_numbers(tmp_path):
    row = analysis.accuracy_row(np.array([[0, 1, 2, 0], [0, 1, 0, 0]]), np.array([0, 1, 2, 3]))
    assert row["ours"] == 62.5 and row["low"] < 62.5 < row["high"]
    with pytest.raises(ValueError, match="columns"):
        analysis.accuracy_row(np.zeros((2, 3)), np.zeros(4))
    paper = claims.paper("sec4")["variants"]
    df = report.variants_frame(tiny_world(tmp_path), paper, progress=False)
    assert len(df) == 2 + 2 * 4  # one-step: clean, pgd-eot; fixed: clean and three attacks
    assert np.isnan(df.set_index(["variant", "source"]).loc[("ddpm fixed noise", "pgd"), "paper"])
    got = df.set_index(["variant", "source"])["paper"]
    assert got[("one-step", "pgd-eot")] == 48.3
    assert got[("ddpm fixed noise", "bpda")] == 68.00
    assert got[("reverse fixed noise", "bpda-eot")] == 74.90
    assert set(df["t"][df["variant"] != "one-step"]) == {3}  # round(2 x 150 / 100)
