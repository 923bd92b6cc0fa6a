"""The results store: round trip, refusal of damaged or mismatching files, atomic writes."""

import pytest
import torch

from diffrob import params, store
from diffrob.worlds import digits


@pytest.fixture
def p(tmp_path):
    return params.load("params/smoke.yaml", results_dir=str(tmp_path))


def test_round_trip_and_missing(p):
    k = store.key(p, "attack/pgd-eot", "abc")
    assert store.read(p, "attack/pgd-eot", 0, k) is None
    x = torch.rand(2, 1, 8, 8)
    path = store.write(p, "attack/pgd-eot", 0, x, k)
    assert path == (p.store_dir / "attack" / "pgd-eot" / store.digest(k)[:12]
                    / "batch_00000.safetensors")
    assert torch.equal(store.read(p, "attack/pgd-eot", 0, k), x)
    assert [f.name for f in path.parent.iterdir()] == [path.name]  # no temp file left
    preds = torch.randint(0, 10, (4, 2))
    store.write(p, "evaluate/clean", 1, preds, store.key(p, "evaluate/clean"))
    assert torch.equal(store.read(p, "evaluate/clean", 1, store.key(p, "evaluate/clean")), preds)


def test_key_holds_what_determines_the_result_and_nothing_else(p):
    k = store.key(p, "attack/pgd-eot", "m")
    for change in [dict(eps_255=16.0), dict(attack_steps=3), dict(eot=3), dict(t_star=3),
                   dict(attack_seed=7), dict(random_start=False), dict(n_images=6),
                   dict(batch_size=3), dict(purifier="ddim"), dict(rel_stepsize=0.1)]:
        assert store.key(p.replace(**change), "attack/pgd-eot", "m") != k, change
    for change in [dict(device="cpu"), dict(results_dir="elsewhere"), dict(n_evals=7),
                   dict(checkpointing=False), dict(model_dir="other")]:
        assert store.key(p.replace(**change), "attack/pgd-eot", "m") == k, change
    assert store.key(p, "attack/pgd-eot", "other weights") != k
    # without EOT the eot parameter does not matter; r matters only to evaluations
    assert store.key(p.replace(eot=5), "attack/pgd") == store.key(p, "attack/pgd")
    assert store.key(p.replace(n_evals=7), "evaluate/pgd") != store.key(p, "evaluate/pgd")
    assert store.key(p.replace(eps_255=1.0), "evaluate/clean") == store.key(p, "evaluate/clean")
    with pytest.raises(ValueError, match="stage"):
        store.key(p, "cap/x")


def test_other_parameters_live_beside_and_a_misplaced_file_is_refused(p):
    x = torch.rand(2, 1, 8, 8)
    mine = store.write(p, "attack/bpda", 0, x, store.key(p, "attack/bpda"))
    q = p.replace(eps_255=8.0)
    kq = store.key(q, "attack/bpda")
    assert store.read(q, "attack/bpda", 0, kq) is None  # another run's folder: not there yet
    theirs = store.path(q, "attack/bpda", 0, kq)
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(mine.read_bytes())  # a file copied into the wrong run's folder
    with pytest.raises(store.StoreError, match=r"eps_255: 48.0 in the file, 8.0 now"):
        store.read(q, "attack/bpda", 0, kq)
    assert torch.equal(store.read(p, "attack/bpda", 0, store.key(p, "attack/bpda")), x)


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "rename"])
def test_damaged_files_are_refused(p, damage):
    k = store.key(p, "attack/bpda")
    path = store.write(p, "attack/bpda", 0, torch.rand(2, 1, 8, 8), k)
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip":
        blob[-3] ^= 0xFF  # a byte of the tensor data
        path.write_bytes(bytes(blob))
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # batch 0's file copied to batch 1's place
        path.rename(path.with_name("batch_00001.safetensors"))
    with pytest.raises(store.StoreError, match="damaged"):
        store.read(p, "attack/bpda", 1 if damage == "rename" else 0, k)


def test_fingerprint_follows_the_weights():
    torch.manual_seed(0)
    a, b = digits.DigitsCNN(), digits.DigitsCNN()
    assert store.fingerprint(a) == store.fingerprint(a) != store.fingerprint(b)
    b.load_state_dict(a.state_dict())
    assert store.fingerprint(a) == store.fingerprint(b)
