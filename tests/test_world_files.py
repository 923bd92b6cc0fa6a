"""Damaged, truncated or wrong data and checkpoint files of the real worlds: one error that
names the file, what was expected and where a good copy comes from."""

import pickle
import shutil

import numpy as np
import pytest
import torch

from diffrob.worlds import check_data, cifar10, imagenet
from diffrob.worlds.checkpoints import BadFileError


def _test_batch(tmp_path, **changes):
    rng = np.random.default_rng(0)
    batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [1, 2, 3, 4]}
    batch.update(changes)
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch, f)
    return tmp_path / "data"


@pytest.mark.parametrize("change,match", [
    (dict(labels=[1, 2, 3]), r"4 images but 'labels'"),
    (dict(data=np.full((4, 3072), 300)), r"not integers 0..255"),
    (dict(data=np.full((4, 3072), -1)), r"not integers 0..255"),
    (dict(data=np.zeros((4, 1024), np.uint8)), r"not \(N, 3072\)"),
    (dict(labels=[1, 2, 11, 4]), r"expected labels in 0..9, got \[11\]"),
    (dict(labels=[1, -1, 3, 4]), r"expected labels in 0..9, got \[-1\]"),
])
def test_bad_cifar10_test_batches_are_refused_naming_the_file(tmp_path, change, match):
    data_dir = _test_batch(tmp_path, **change)
    with pytest.raises(ValueError, match=match) as err:
        cifar10.load_test_set(data_dir, 4)
    assert "test_batch" in str(err.value)


def test_a_truncated_test_batch_names_the_file_and_the_source(tmp_path):
    data_dir = _test_batch(tmp_path)
    f = data_dir / "cifar-10-batches-py" / "test_batch"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(BadFileError, match=r"test_batch: expected the CIFAR-10 python test batch"
                       r".*cs.toronto.edu"):
        cifar10.load_test_set(data_dir, 4)
    x, y = cifar10.load_test_set(_test_batch(tmp_path / "good"), 4)
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [1, 2, 3, 4]


def test_check_data_refuses_what_would_load_silently():
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2])
    check_data(x, y, "src", 10)
    for bad_x, bad_y, match in [
        (x.double() * 2, y, r"src: expected pixel values in \[0,1\]"),
        (x.clone().fill_(float("nan")), y, r"src: expected pixel values"),
        (x[:0], y[:0], r"src: expected float images .* N >= 1"),
        ((x * 255).to(torch.uint8), y, r"src: expected float images"),
        (x, y[:2], r"src: 3 images but 2 labels"),
        (x, y.float(), r"src: expected int64 labels"),
        (x, torch.tensor([0, 10, 2]), r"src: expected labels in 0..9, got \[10\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            check_data(bad_x, bad_y, "src", 10)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def test_bad_cifar10_checkpoints_name_the_file(fake_cifar10, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(fake_cifar10["model_dir"], models)
    ckpt = models / "cifar10" / "Linf" / "Standard.pt"
    _truncate(ckpt)
    with pytest.raises(BadFileError, match=r"Standard.pt: expected the state dict of "
                       r"RobustBench's Standard WideResNet-28-10.*Google Drive"):
        cifar10.load_classifier(models)
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(3, 3)}}, ckpt)  # wrong shape
    with pytest.raises(BadFileError, match=r"Standard.pt: expected"):
        cifar10.load_classifier(models)
    folder = tmp_path / "ddpm"
    shutil.copytree(fake_cifar10["folder"], folder)
    _truncate(folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(BadFileError, match=r"ddpm: expected the diffusers UNet2DModel.*"
                       r"huggingface.co/google/ddpm-cifar10-32"):
        cifar10.load_diffusion(str(folder))


def test_bad_imagenet_files_name_the_file(fake_imagenet, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(fake_imagenet["data_dir"], data)
    jpeg = data / "imagenet" / "val" / fake_imagenet["names"][1]
    _truncate(jpeg)
    with pytest.raises(BadFileError, match=rf"{jpeg.name}: expected an ImageNet validation JPEG"
                       r".*ILSVRC2012"):
        imagenet.load_val_images(data, 2)
    models = tmp_path / "models"
    shutil.copytree(fake_imagenet["model_dir"], models)
    _truncate(models / "imagenet" / imagenet.RESNET_FILE)
    with pytest.raises(BadFileError, match=rf"{imagenet.RESNET_FILE}: expected torchvision's "
                       r"ResNet-50.*download.pytorch.org"):
        imagenet.load_classifier(models)
    adm_file = models / "imagenet" / "small_adm.safetensors"
    _truncate(adm_file)
    with pytest.raises(BadFileError, match=r"small_adm.safetensors: expected the guided-diffusion"
                       r".*openaipublic"):
        imagenet.load_diffusion(models, str(adm_file))
