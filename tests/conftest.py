"""Shared test settings and worlds: the tiny digits worlds of the unit tests, and the fake
CIFAR-10 and ImageNet worlds of the world and book tests."""

import functools
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from diffrob import params
from diffrob.worlds import World, adm, cifar10, digits, imagenet
from diffrob.worlds.checkpoints import import_robustbench

# One intra-op thread per test process: tiny models gain nothing from more, and
# oversubscribed threads on a shared 2-core machine slow everything down sharply.
torch.set_num_threads(int(os.environ.get("DIFFROB_TEST_THREADS", "1")))
# Under pytest-xdist (`make test`: one worker per core) the chapters' kernels and the
# command-line runs that the tests start take one OpenMP thread each as well.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@functools.cache
def _test_split():
    return digits.split()[2:]


def same_pixels(a, b) -> float:
    """The share of pixels on which two attacks' examples agree (to 1e-5). Batched and looped
    calls round differently, so a sign may flip on a near-zero gradient entry: comparisons of
    attacks ask for almost every pixel, not all of them."""
    return torch.isclose(a, b, atol=1e-5).float().mean().item()


def tiny_world(n: int = 4, **overrides) -> World:
    """Randomly initialised digits models (seeded, made anew) on the first n test images,
    smoke parameters with ``overrides``."""
    torch.manual_seed(0)
    p = params.load("params/smoke.yaml", n_images=n, **overrides)
    x, y = _test_split()
    return World("digits", x[:n], y[:n], digits.DigitsCNN().eval().requires_grad_(False),
                 digits.build_unet().eval().requires_grad_(False), digits.build_scheduler(), p)


def stage_world(results_dir, **overrides) -> World:
    """:func:`tiny_world` for the stage tests: 6 images in 3 batches of 2, t* = 1, its store
    in ``results_dir``."""
    return tiny_world(6, **{"results_dir": str(results_dir), "batch_size": 2, "t_star": 1,
                            **overrides})


def fit_last_layer(model: torch.nn.Module, features: Callable[[torch.nn.Module], torch.Tensor],
                   labels: torch.Tensor) -> None:
    """Set ``model.fc`` (least squares on the penultimate ``features``) so that each image gets
    logit 5 for its label and 0 for the other classes: the chapters then have correctly
    classified images to attack and slice."""
    fc, model.fc = model.fc, torch.nn.Identity()
    with torch.no_grad():
        phi = features(model).double()
        targets = 5.0 * torch.nn.functional.one_hot(labels, fc.out_features).double()
        fc.weight.copy_((torch.linalg.pinv(phi) @ targets).T)
        fc.bias.zero_()
    model.fc = fc


# --- a fake CIFAR-10 world: the real file layouts and formats, random models ---------------

# google/ddpm-cifar10-32's scheduler_config.json as published.
CIFAR10_SCHEDULER = {"beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001,
                     "clip_sample": True, "num_train_timesteps": 1000, "trained_betas": None,
                     "variance_type": "fixed_large"}
# The hub's UNet config at width 32: the same blocks and attention, ~40x fewer FLOPs.
SMALL_DDPM = {**cifar10.UNET_CONFIG, "block_out_channels": [32, 32, 32, 32]}
CIFAR10_LABELS = [3, 8, 8, 0, 6, 6]


def make_fake_cifar10(root: Path, unet_config: dict = SMALL_DDPM) -> dict:
    """A diffusers DDPM folder in the hub snapshot layout (``config.json``, weights and
    ``scheduler_config.json`` side by side), RobustBench's ``Standard`` WideResNet-28-10 as
    ``model_dir/cifar10/Linf/Standard.pt`` (a ``{'state_dict': ...}`` with DataParallel's
    ``module.`` prefix, which ``load_model`` strips; last layer by :func:`fit_last_layer`) and
    a CIFAR-10 python pickle of random images (rows of R, G, B planes of 32x32, uint8)."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(**unet_config).eval()
    folder = root / "ddpm-cifar10-32"
    unet.save_pretrained(folder)
    DDPMScheduler(**CIFAR10_SCHEDULER).save_pretrained(folder)
    data = np.random.default_rng(0).integers(0, 256, (len(CIFAR10_LABELS), 3072), dtype=np.uint8)
    (root / "data" / "cifar-10-batches-py").mkdir(parents=True)
    with open(root / "data" / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "labels": CIFAR10_LABELS, "data": data,
                     "filenames": [f"img_{i}.png" for i in range(len(data))]}, f)
    import_robustbench()
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    wrn = WideResNet(depth=28, widen_factor=10).eval()
    x = torch.from_numpy(data).float().div(255).reshape(-1, 3, 32, 32)
    fit_last_layer(wrn, lambda m: m(x), torch.tensor(CIFAR10_LABELS))
    (root / "models" / "cifar10" / "Linf").mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in wrn.state_dict().items()}},
               root / "models" / "cifar10" / "Linf" / "Standard.pt")
    return dict(root=root, unet=unet, wrn=wrn, folder=folder, data=data, labels=CIFAR10_LABELS,
                model_dir=str(root / "models"), data_dir=str(root / "data"),
                diffusion_model=str(folder))


@pytest.fixture(scope="session")
def fake_cifar10(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """:func:`make_fake_cifar10` with the small DDPM, once per test session."""
    return make_fake_cifar10(tmp_path_factory.mktemp("cifar10"))


# --- a fake ImageNet world: the real file layout and formats, random small models ----------

# The full ADM architecture at reduced width (the least that GroupNorm(32, .) allows) and one
# residual block per level instead of two: the same levels, resblock up/down-sampling,
# scale-shift norm, attention at 32, 16 and 8 pixels (at full depth it has the real model's
# keys: tests/test_world_imagenet.py).
SMALL_ADM = adm.ADMConfig(model_channels=32, num_head_channels=32, num_res_blocks=1)
FAKE_COLOURS = [(200, 100, 50), (10, 250, 130), (90, 90, 90), (240, 240, 20)]
FAKE_SIZES = [(333, 500), (256, 256), (400, 300), (300, 420)]  # (height, width) of the JPEGs


def make_fake_imagenet(root: Path) -> dict:
    """``model_dir`` with a ResNet-50 in torchvision's file, ``diffusion_model`` a random small ADM
    as converted safetensors (its architecture in the metadata), and ``data_dir`` with the first
    images of RobustBench's ImageNet list as flat-coloured JPEGs in the val layout.

    The ResNet is random except its last layer (:func:`fit_last_layer`).
    """
    from torchvision.models import resnet50

    torch.manual_seed(0)
    names = imagenet._robustbench_file("imagenet_test_image_ids.txt").read_text().split()
    for name, colour, (h, w) in zip(names, FAKE_COLOURS, FAKE_SIZES):
        path = root / "data" / "imagenet" / "val" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((h, w, 3), colour, dtype=np.uint8)).save(path, "JPEG", quality=95)
    x, y = imagenet.load_val_images(root / "data", len(FAKE_COLOURS))
    resnet = resnet50(weights=None).eval()
    mean, std = torch.tensor(imagenet.MEAN).view(3, 1, 1), torch.tensor(imagenet.STD).view(3, 1, 1)
    fit_last_layer(resnet, lambda m: m((x - mean) / std), y)
    unet = adm.ADMUNet(SMALL_ADM).eval()
    folder = root / "models" / "imagenet"
    folder.mkdir(parents=True)
    torch.save(resnet.state_dict(), folder / imagenet.RESNET_FILE)
    diffusion = adm.save_safetensors(unet.state_dict(), folder / "small_adm.safetensors", SMALL_ADM)
    return dict(root=root, unet=unet, resnet=resnet, names=names[:len(FAKE_COLOURS)],
                model_dir=str(root / "models"), data_dir=str(root / "data"),
                diffusion_model=str(diffusion), colours=FAKE_COLOURS)


@pytest.fixture(scope="session")
def fake_imagenet(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """:func:`make_fake_imagenet` in a temporary folder, once per test session."""
    return make_fake_imagenet(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """Randomly initialised (seeded) digits models saved where `digits.load` looks."""
    root = tmp_path_factory.mktemp("models")
    (root / "digits").mkdir()
    torch.manual_seed(0)
    save_file(digits.DigitsCNN().state_dict(), root / "digits" / digits.CLASSIFIER_FILE)
    save_file(digits.build_unet().state_dict(), root / "digits" / digits.UNET_FILE)
    return root
