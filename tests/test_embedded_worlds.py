"""The embedded worlds (`digits` 8x8, `mnist` 28x28): shipped models and their cards, the data
splits, resumable deterministic training, and clear errors."""

import json
from pathlib import Path

import pytest
import torch

from diffrob import worlds
from diffrob.worlds import digits, embedded, mnist

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
# name -> (module, test images, image shape, all images in data set, least test accuracy)
EMBEDDED = {"digits": (digits, 450, (1, 8, 8), 1797, 0.97),
            "mnist": (mnist, 1000, (1, 28, 28), 5000, 0.98)}


@pytest.fixture(scope="module", params=list(EMBEDDED))
def world(request):
    name = request.param
    return worlds.load(name, model_dir=str(MODELS), n_images=EMBEDDED[name][1], device="cpu")


def test_world_gives_images_in_unit_range_and_labels(world):
    _, n, shape, _, _ = EMBEDDED[world.name]
    assert world.images.shape == (n, *shape) and world.labels.shape == (n,)
    assert world.images.min() >= 0 and world.images.max() <= 1
    assert set(world.labels.tolist()) == set(range(10))
    assert not any(p.requires_grad for p in world.classifier.parameters())


def test_shipped_classifier_is_accurate_and_matches_its_card(world):
    accuracy = (world.predict(world.images) == world.labels).float().mean().item()
    card = json.loads((MODELS / world.name / embedded.FACTS_FILE).read_text())
    assert accuracy >= EMBEDDED[world.name][4]
    assert accuracy == pytest.approx(card["test_accuracy"], abs=1e-6)
    assert "Test accuracy" in (MODELS / world.name / embedded.CARD_FILE).read_text()
    assert (MODELS / world.name / "samples.png").is_file()


def test_purified_accuracy_stays_high(world):
    f = world.purifier()
    x, y = world.images[:96], world.labels[:96]
    purified = torch.cat([f(x[s], 0, i) for i, s in world.batches()[:2]])
    accuracy = (world.predict(purified) == y[:len(purified)]).float().mean().item()
    assert accuracy > 0.85


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_split_is_fixed_stratified_and_disjoint(name):
    module, n_test, _, n_all, _ = EMBEDDED[name]
    a, b = module.split(), module.split()
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert len(a[1]) + len(a[3]) == n_all and len(a[3]) == n_test
    counts = torch.bincount(a[3], minlength=10)
    assert counts.max() - counts.min() <= 1 + n_test // 100  # stratified
    train = {tuple(v.flatten().tolist()) for v in a[0]}
    overlap = sum(tuple(v.flatten().tolist()) in train for v in a[2])
    assert overlap < 0.05 * len(a[3])  # digits has a few duplicates


def test_embedded_models_folder_stays_small():
    size = sum(f.stat().st_size for f in MODELS.rglob("*") if f.is_file())
    assert size < 8e6, f"models/ holds {size / 1e6:.1f} MB; the embedded worlds must stay small"


def test_batches_cover_the_images(world):
    batches = world.batches()
    assert [i for i, _ in batches] == list(range(len(batches)))
    assert sum(s.stop - s.start for _, s in batches) == len(world.images)


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_missing_model_names_the_file(name, tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"classifier.safetensors.*train {name}"):
        worlds.load(name, model_dir=str(tmp_path))


def test_foreign_model_file_names_the_file(tmp_path):
    (tmp_path / "mnist").mkdir()
    for f in (embedded.CLASSIFIER_FILE, embedded.UNET_FILE):  # digits' files under mnist's name
        (tmp_path / "mnist" / f).write_bytes((MODELS / "digits" / f).read_bytes())
    with pytest.raises(ValueError, match=r"mnist.classifier.safetensors: not a mnist classifier"):
        worlds.load("mnist", model_dir=str(tmp_path))


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_too_many_images_is_refused(name):
    with pytest.raises(ValueError, match="n_images"):
        worlds.load(name, model_dir=str(MODELS), n_images=EMBEDDED[name][1] + 1)


TINY = embedded.TrainConfig(classifier_epochs=1, ddpm_steps=4, ddpm_batch=8, checkpoint_every=2)


def test_training_is_deterministic(tmp_path):
    facts = [digits.train(tmp_path / run, TINY) for run in ("a", "b")]
    for name in (embedded.CLASSIFIER_FILE, embedded.UNET_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert facts[0]["test_accuracy"] == facts[1]["test_accuracy"]
    assert (tmp_path / "a" / "samples.png").exists() and "Test accuracy" in (
        tmp_path / "a" / embedded.CARD_FILE).read_text()
    assert not (tmp_path / "a" / embedded.STATE_FILE).exists()


def test_interrupted_training_resumes_to_the_same_bits(tmp_path, monkeypatch):
    """Killed after the first training state: the rerun resumes there and ends bit-identical."""
    x = digits.split()[0]
    whole = embedded.train_ddpm(digits.SPEC, TINY, x, tmp_path / "whole.pt")
    real_save = embedded._save_state

    def save_then_die(path, state):
        real_save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "_save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        embedded.train_ddpm(digits.SPEC, TINY, x, tmp_path / "cut.pt")
    monkeypatch.setattr(embedded, "_save_state", real_save)
    assert torch.load(tmp_path / "cut.pt", weights_only=False)["step"] == 2
    resumed = embedded.train_ddpm(digits.SPEC, TINY, x, tmp_path / "cut.pt")
    for k, v in whole.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    other = embedded.replace_config(TINY, ddpm_lr=1e-3)
    with pytest.raises(ValueError, match="cut.pt was written by a training with other settings"):
        embedded.train_ddpm(digits.SPEC, other, x, tmp_path / "cut.pt")


@pytest.mark.parametrize("capabilities, expected", [
    ({"avx2": True, "avx512_bf16": False, "amx_bf16": False}, "none"),   # bf16 emulated
    ({"avx512_bf16": True, "amx_bf16": False}, "bf16"),
    ({"avx512_bf16": False, "amx_bf16": True}, "bf16"),
])
def test_autocast_auto_is_bf16_only_where_the_cpu_computes_it(monkeypatch, capabilities,
                                                              expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    cpu = torch.device("cpu")
    assert worlds.resolve_autocast("auto", cpu) == expected
    assert worlds.resolve_autocast("bf16", cpu) == "bf16"            # asked for: kept
    assert worlds.resolve_autocast("none", cpu) == "none"
    world = worlds.load("digits", n_images=2, autocast="auto", device="cpu")
    assert world.params.autocast == world.purifier().autocast == expected  # what keys results
