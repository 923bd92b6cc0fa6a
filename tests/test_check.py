"""``diffrob check`` on a small custom world (random digits-sized models exported as a
diffusers folder, TorchScript and an .npz): the card, and one line with exit status 2 naming
the parameter and the file for each mismatch."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from diffrob import cli
from diffrob.worlds import digits

SMOKE = dict(world="custom", n_images=4, batch_size=2, t_star=2, attacks=["pgd"],
             attack_steps=1, eot=2, n_evals=2, jacobian_images=1, singular_images=1,
             device="cpu")


def script(model: nn.Module, path: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model.eval()), path)
    return str(path)


class Softmaxed(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).softmax(1)


class NotFinite(Softmaxed):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * float("nan")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A flat diffusers folder (UNet2DModel and DDPMScheduler side by side), a TorchScript
    classifier and the first digits test images as an .npz."""
    root = tmp_path_factory.mktemp("custom")
    torch.manual_seed(0)
    digits.build_unet().save_pretrained(root / "ddpm")
    digits.build_scheduler().save_pretrained(root / "ddpm")
    _, _, x, y = digits.split()
    np.savez(root / "data.npz", images=x[:8].numpy(), labels=y[:8].numpy())
    return dict(diffusion_model=str(root / "ddpm"), data=str(root / "data.npz"),
                classifier=script(digits.DigitsCNN(), root / "classifier.pt"))


def check(tmp_path: Path, files: dict, **changes) -> tuple[int, str]:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**SMOKE, **files, **changes}))
    try:
        cli.main(["check", "--params", str(path)])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, path.name


def refused(tmp_path, files, capsys, key: str, file: str, **changes) -> str:
    """The one line of a refusal, checked to name ``key``, ``file`` and the parameter file."""
    code, params_file = check(tmp_path, files, **changes)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert f"'{key}'" in err and Path(file).name in err and params_file in err, err
    return err


def npz(tmp_path: Path, images, labels) -> str:
    np.savez(tmp_path / "bad.npz", images=images, labels=labels)
    return str(tmp_path / "bad.npz")


def good_data() -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y = digits.split()
    return x[:8].numpy(), y[:8].numpy()


def test_the_card_shows_data_outputs_accuracy_alpha_bar_and_cost(tmp_path, files, capsys) -> None:
    code, _ = check(tmp_path, files)
    out = capsys.readouterr().out
    assert code == 0
    for mark in ("4 test images 1x8x8 float32, values in [0, 1]", "classifier: outputs (4, 10)",
                 "clean accuracy", "alpha_bar at t* = 2: ", "purified (ddpm, t* = 2, seed 0)",
                 "attack/pgd", "in all:"):
        assert mark in out, out


def test_wrong_channel_count(tmp_path, files, capsys) -> None:
    x, y = good_data()
    data = npz(tmp_path, np.repeat(x, 3, axis=1), y)
    err = refused(tmp_path, files, capsys, "diffusion_model", data, data=data)
    assert "1 input and 1 output channels" in err and "have 3" in err
    refused(tmp_path, files, capsys, "channels", files["data"], channels=3)


def test_wrong_size(tmp_path, files, capsys) -> None:
    err = refused(tmp_path, files, capsys, "image_size", files["data"], image_size=16)
    assert "are 8x8" in err
    x, y = good_data()
    data = npz(tmp_path, np.kron(x, np.ones((1, 1, 2, 2), dtype=x.dtype)), y)
    err = refused(tmp_path, files, capsys, "classifier", data, data=data)
    assert "it fails on (4, 1, 16, 16)" in err


def test_labels_out_of_range(tmp_path, files, capsys) -> None:
    x, y = good_data()
    data = npz(tmp_path, x, np.where(np.arange(8) == 2, 12, y))
    err = refused(tmp_path, files, capsys, "data", data, data=data)
    assert "labels up to 12" in err and "10 classes" in err
    err = refused(tmp_path, files, capsys, "data", data, data=data, n_classes=10)
    assert "expected labels in 0..9, got [12]" in err


def test_data_outside_0_1(tmp_path, files, capsys) -> None:
    x, y = good_data()
    data = npz(tmp_path, x * 255, y)
    assert "expected pixel values in [0,1]" in refused(tmp_path, files, capsys, "data", data,
                                                       data=data)


def test_probabilities_where_logits_are_expected(tmp_path, files, capsys) -> None:
    classifier = script(Softmaxed(digits.DigitsCNN()), tmp_path / "softmax.pt")
    err = refused(tmp_path, files, capsys, "classifier", classifier, classifier=classifier)
    assert "look like probabilities" in err


def test_non_finite_outputs(tmp_path, files, capsys) -> None:
    classifier = script(NotFinite(digits.DigitsCNN()), tmp_path / "nan.pt")
    err = refused(tmp_path, files, capsys, "classifier", classifier, classifier=classifier)
    assert "non-finite outputs" in err


def test_a_schedule_too_short_for_t_star(tmp_path, files, capsys) -> None:
    err = refused(tmp_path, files, capsys, "t_star", "scheduler_config.json", t_star=150)
    assert "has 100 training steps" in err


def _weights(folder: str) -> Path:
    return next(Path(folder).glob("diffusion_pytorch_model.*"))


@pytest.mark.parametrize("key", ["classifier", "diffusion_model", "data"])
@pytest.mark.parametrize("damage", ["html", "truncated"])
def test_a_model_or_data_file_that_is_an_html_page_or_truncated(tmp_path, files, capsys, key,
                                                                damage) -> None:
    copy = {**files, key: str(tmp_path / Path(files[key]).name)}
    (shutil.copytree if key == "diffusion_model" else shutil.copy)(files[key], copy[key])
    target = _weights(copy[key]) if key == "diffusion_model" else Path(copy[key])
    if damage == "html":
        target.write_text("<!DOCTYPE html>\n<html><head><title>Google Drive - Virus scan "
                          "warning</title></head></html>\n")
    else:
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    err = refused(tmp_path, copy, capsys, key, target.name)
    assert ("is an HTML page" in err) == (damage == "html"), err


def test_every_classifier_form_gives_the_same_logits(tmp_path, files) -> None:
    from diffrob import params, worlds

    torch.manual_seed(1)
    model = digits.DigitsCNN().eval()
    torch.save(model.state_dict(), tmp_path / "cnn.pth")
    x = torch.from_numpy(good_data()[0][:4])
    exported = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("n")},))
    torch.export.save(exported, tmp_path / "cnn.pt2")
    forms = [dict(classifier=script(model, tmp_path / "cnn.pt")),
             dict(classifier=str(tmp_path / "cnn.pt2")),
             dict(classifier="diffrob.worlds.digits:DigitsCNN",
                  classifier_weights=str(tmp_path / "cnn.pth"))]
    for form in forms:
        world = worlds.from_params(params.load(None, **SMOKE, **{**files, **form}))
        assert torch.equal(world.classifier(x), model(x)), form
    normalised = worlds.from_params(params.load(None, **SMOKE, **{**files, **forms[0]},
                                                mean=[0.5], std=[0.25]))
    assert torch.equal(normalised.classifier(x), model((x - 0.5) / 0.25))


def test_an_image_folder_is_read_class_by_class_in_turn(tmp_path, files) -> None:
    from PIL import Image

    from diffrob import params
    from diffrob.worlds import custom

    for label, name in enumerate(["cat", "dog"]):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for j in range(2):
            Image.fromarray(np.full((10, 12), 60 * label + 20 * j, dtype=np.uint8)).save(
                tmp_path / "folder" / name / f"{j}.png")
    p = params.load(None, **{**SMOKE, **files, "data": str(tmp_path / "folder")}, image_size=8,
                    channels=1)
    x, y, classes, _ = custom.load_data(p, 4)
    assert classes == ["cat", "dog"] and y.tolist() == [0, 1, 0, 1]
    assert x.shape == (4, 1, 8, 8) and torch.allclose(x[:, 0, 0, 0] * 255, torch.tensor(
        [0.0, 60, 20, 80]))
