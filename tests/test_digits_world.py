"""The embedded digits world: shipped models, data split, and clear errors."""

import json
from pathlib import Path

import pytest
import torch

from diffrob import worlds
from diffrob.worlds import digits

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


@pytest.fixture(scope="module")
def world():
    return worlds.load("digits", model_dir=str(MODELS), n_images=450, device="cpu")


def test_world_gives_images_in_unit_range_and_labels(world):
    assert world.images.shape == (450, 1, 8, 8) and world.labels.shape == (450,)
    assert world.images.min() >= 0 and world.images.max() <= 1
    assert set(world.labels.tolist()) == set(range(10))
    assert not any(p.requires_grad for p in world.classifier.parameters())


def test_shipped_classifier_is_accurate(world):
    accuracy = (world.predict(world.images) == world.labels).float().mean().item()
    card = json.loads((MODELS / "digits" / "training.json").read_text())
    assert accuracy > 0.97
    assert accuracy == pytest.approx(card["test_accuracy"], abs=1e-6)


def test_purified_accuracy_stays_high(world):
    f = world.purifier()
    x, y = world.images[:96], world.labels[:96]
    purified = torch.cat([f(x[s], 0, i) for i, s in worlds.World.batches(world)[:2]])
    accuracy = (world.predict(purified) == y[:len(purified)]).float().mean().item()
    assert accuracy > 0.85


def test_split_is_fixed_and_disjoint():
    a, b = digits.split(), digits.split()
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    train = {tuple(v.flatten().tolist()) for v in a[0]}
    overlap = sum(tuple(v.flatten().tolist()) in train for v in a[2])
    assert len(a[1]) + len(a[3]) == 1797 and overlap < 0.05 * len(a[3])  # digits has a few duplicates


def test_batches_cover_the_images(world):
    batches = world.batches()
    assert [i for i, _ in batches] == list(range(len(batches)))
    assert sum(s.stop - s.start for _, s in batches) == len(world.images)


def test_missing_model_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"classifier.safetensors.*train-digits"):
        worlds.load("digits", model_dir=str(tmp_path))


def test_too_many_images_is_refused():
    with pytest.raises(ValueError, match="n_images"):
        worlds.load("digits", model_dir=str(MODELS), n_images=451)


def test_training_is_deterministic(tmp_path):
    cfg = digits.TrainConfig(classifier_epochs=1, ddpm_steps=2, ddpm_batch=8)
    facts = [digits.train(tmp_path / run, cfg) for run in ("a", "b")]
    for name in (digits.CLASSIFIER_FILE, digits.UNET_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert facts[0]["test_accuracy"] == facts[1]["test_accuracy"]
    assert (tmp_path / "a" / "samples.png").exists() and "Test accuracy" in (
        tmp_path / "a" / digits.CARD_FILE).read_text()
