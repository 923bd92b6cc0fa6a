"""The paper's CIFAR-10 world (Appendix B, Table S1).

- data: the first ``n_images`` of the CIFAR-10 test set, read from the
  original python pickle ``<data_dir>/cifar-10-batches-py/test_batch`` (the
  layout torchvision and RobustBench use), in [0,1];
- classifier: RobustBench's ``Standard`` WideResNet-28-10 (clean accuracy
  94.78 %, [0,1] inputs, no normalisation layer), through
  ``robustbench.utils.load_model`` from ``<model_dir>/cifar10/Linf/Standard.pt``;
- purifier: the DDPM CIFAR-10 checkpoint of Ho et al. (2020) as diffusers'
  ``google/ddpm-cifar10-32`` (linear betas 1e-4..0.02, 1000 steps, epsilon
  prediction, clipped x_0, fixed-large variance), ``UNet2DModel`` and
  ``DDPMScheduler`` from a local folder or the local Hugging Face cache.

Nothing is downloaded: a missing file raises
:class:`~diffrob.worlds.checkpoints.MissingFileError` at once.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DModel
from torch import Tensor

from ..params import Params
from .checkpoints import (MissingFileError, bad_file, check_all, import_robustbench, missing,
                          require)

if TYPE_CHECKING:
    from . import Architecture, World

HUB_ID = "google/ddpm-cifar10-32"
# Its config.json as published on the hub (https://huggingface.co/google/ddpm-cifar10-32),
# minus the "_class_name"/"_diffusers_version" bookkeeping keys: the architecture that
# ``load_diffusion`` reads from the local folder, for random-weight tests and benchmarks.
UNET_CONFIG = {
    "act_fn": "silu", "attention_head_dim": None, "block_out_channels": [128, 256, 256, 256],
    "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06,
    "norm_num_groups": 32, "out_channels": 3, "sample_size": 32,
    "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}
CLASSIFIER = "Standard"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]
TEST_BATCH = Path("cifar-10-batches-py") / "test_batch"
WEIGHTS = ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"]
DATA_SOURCE = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract it into the "
               "data folder), or torchvision.datasets.CIFAR10(data_dir, train=False, "
               "download=True) on a machine with network")
CLASSIFIER_SOURCE = ("RobustBench: robustbench.utils.load_model('Standard', model_dir=..., "
                     "dataset='cifar10', threat_model='Linf') on a machine with network "
                     "downloads it there (Google Drive id 1t98aEuzeTL8P7Kpd5DIrCoCL21BNZUhC)")


def diffusion_folders(spec: str = "") -> tuple[Path, Path]:
    """(UNet folder, scheduler folder) of the diffusers DDPM ``spec``, all files checked.

    ``spec`` is a local folder (the hub snapshot layout with ``config.json``,
    ``diffusion_pytorch_model.*`` and ``scheduler_config.json`` side by side,
    or a saved pipeline with ``unet/`` and ``scheduler/``) or a hub id looked
    up in the local Hugging Face cache only; '' means ``google/ddpm-cifar10-32``.
    """
    spec = spec or HUB_ID
    folder = Path(spec).expanduser()
    source = f"https://huggingface.co/{HUB_ID} (`hf download {HUB_ID}` fills the cache)"
    if not folder.is_dir():
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", spec):
            raise MissingFileError(f"cifar10 diffusion model: folder {folder.resolve()} not "
                                   f"found; give a local folder or a hub id like {HUB_ID!r}")
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            folder = Path(snapshot_download(spec, local_files_only=True))
        except LocalEntryNotFoundError:
            raise missing(f"cifar10 diffusion model {spec!r} (config.json, {WEIGHTS[0]}, "
                          f"scheduler_config.json)", spec, [Path(constants.HF_HUB_CACHE)],
                          source) from None
    unet = folder / "unet" if (folder / "unet").is_dir() else folder
    sched = folder / "scheduler" if (folder / "scheduler").is_dir() else folder
    require(unet / "config.json", "cifar10 diffusion model config", source)
    if not any((unet / w).is_file() for w in WEIGHTS):
        raise missing("cifar10 diffusion model weights", WEIGHTS[0], [unet], source)
    require(sched / "scheduler_config.json", "cifar10 diffusion scheduler", source)
    return unet, sched


def load_diffusion(spec: str = "") -> tuple[UNet2DModel, DDPMScheduler]:
    """``(UNet2DModel, DDPMScheduler)`` from local files (see :func:`diffusion_folders`)."""
    unet_dir, sched_dir = diffusion_folders(spec)
    try:
        unet = UNet2DModel.from_pretrained(unet_dir)
    except Exception as e:  # noqa: BLE001 -- whatever diffusers raises, name the folder
        raise bad_file(unet_dir, f"the diffusers UNet2DModel of {HUB_ID} (config.json and "
                       f"{WEIGHTS[0]})", f"https://huggingface.co/{HUB_ID}", e) from e
    try:
        return unet, DDPMScheduler.from_pretrained(sched_dir)
    except Exception as e:  # noqa: BLE001
        raise bad_file(sched_dir / "scheduler_config.json", "a DDPMScheduler config",
                       f"https://huggingface.co/{HUB_ID}", e) from e


def classifier_path(model_dir: str | Path) -> Path:
    """``<model_dir>/cifar10/Linf/Standard.pt``, RobustBench's place for it; it must exist."""
    return require(Path(model_dir) / "cifar10" / "Linf" / f"{CLASSIFIER}.pt",
                   "cifar10 classifier (RobustBench Standard WideResNet-28-10)",
                   CLASSIFIER_SOURCE)


def load_classifier(model_dir: str | Path) -> torch.nn.Module:
    """RobustBench's ``Standard`` WRN-28-10 from :func:`classifier_path`.

    The file is checked first, so RobustBench never tries its Google Drive download.
    """
    path = classifier_path(model_dir)
    import_robustbench()
    from robustbench.utils import load_model

    try:
        return load_model(CLASSIFIER, model_dir=str(model_dir), dataset="cifar10",
                          threat_model="Linf")
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path.resolve()}: RobustBench could not read it ({str(e).splitlines()[0]}). "
            f"If the file is an HTML page, the Google Drive download failed (a known "
            f"RobustBench problem): download it in a browser instead. If torch refuses it "
            f"under weights_only=True, re-save its state dict once as plain tensors "
            f"(docs/worlds.md).") from e
    except Exception as e:  # noqa: BLE001 -- truncated file, other architecture, ...
        raise bad_file(path, "the state dict of RobustBench's Standard WideResNet-28-10",
                       CLASSIFIER_SOURCE, e) from e


def test_set_path(data_dir: str | Path) -> Path:
    """``<data_dir>/cifar-10-batches-py/test_batch``; it must exist."""
    return require(Path(data_dir) / TEST_BATCH, "CIFAR-10 test set", DATA_SOURCE)


def load_test_set(data_dir: str | Path, n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` CIFAR-10 test images (N, 3, 32, 32) in [0,1] and their labels,
    checked (:func:`~diffrob.worlds.check_data`): one error names the file for anything amiss."""
    from . import check_data

    path = test_set_path(data_dir)
    expected = "the CIFAR-10 python test batch (a pickled dict with 'data' and 'labels')"
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        raw, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    except Exception as e:  # noqa: BLE001 -- truncated or not a pickle: name the file
        raise bad_file(path, expected, DATA_SOURCE, e) from e
    if raw.ndim != 2 or raw.shape[1] != 3 * 32 * 32:
        raise bad_file(path, expected, DATA_SOURCE, f"'data' of shape {raw.shape}, not (N, 3072)")
    if raw.size and (raw.dtype.kind not in "iu" or raw.min() < 0 or raw.max() > 255):
        raise bad_file(path, expected, DATA_SOURCE, f"'data' of {raw.dtype} in "
                       f"[{raw.min()}, {raw.max()}], not integers 0..255")
    if labels.shape != (len(raw),) or labels.dtype.kind not in "iu":
        raise bad_file(path, expected, DATA_SOURCE, f"{len(raw)} images but 'labels' of "
                       f"{labels.dtype} {labels.shape}")
    if n > len(raw):
        raise ValueError(f"parameter 'n_images': {path} holds {len(raw)} images, got {n}")
    x = torch.from_numpy(raw[:n].astype(np.uint8).reshape(n, 3, 32, 32).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels[:n].astype(np.int64))
    check_data(x, y, str(path), len(CLASSES))
    return x, y


def architecture() -> Architecture:
    """``google/ddpm-cifar10-32``'s UNet and RobustBench's WideResNet-28-10, uninitialised."""
    from . import Architecture

    import_robustbench()
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    return Architecture(UNet2DModel(**UNET_CONFIG), WideResNet(depth=28, widen_factor=10),
                        (3, 32, 32))


def load(p: Params) -> World:
    """The paper's CIFAR-10 World from ``p.data_dir``, ``p.model_dir``, ``p.diffusion_model``.

    All files are checked first; every missing one is named in one error."""
    from . import World, prepare, resolve_device

    check_all(lambda: test_set_path(p.data_dir), lambda: classifier_path(p.model_dir),
              lambda: diffusion_folders(p.diffusion_model))
    x, y = load_test_set(p.data_dir, p.n_images)
    classifier = load_classifier(p.model_dir)
    unet, scheduler = load_diffusion(p.diffusion_model)
    device = resolve_device(p.device)
    return World("cifar10", x.to(device), y.to(device), prepare(classifier, device, p),
                 prepare(unet, device, p), scheduler, p, class_names=list(CLASSES))
