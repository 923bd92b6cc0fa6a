"""The paper's ImageNet world (Appendix B, Table 2, Table S4).

- data: the first ``n_images`` ImageNet validation images in RobustBench's
  evaluation order (``robustbench/helper_files/imagenet_test_image_ids.txt``,
  what ``robustbench.data.load_imagenet(n_examples=N)`` returns), read from the
  standard layout ``<data_dir>/imagenet/val/<wnid>/ILSVRC2012_val_*.JPEG``,
  labels from the sorted wnids, resized to 256 and centre-cropped to 224
  (RobustBench's ``Res256Crop224``), in [0,1];
- classifier: RobustBench's ImageNet ``Standard_R50``, i.e. torchvision's
  ResNet-50 with its ImageNet-1K v1 weights (``resnet50-0676ba61.pth``; RobustBench
  reports 76.52 % clean accuracy) behind RobustBench's normalisation layer, so
  it takes [0,1] images at 224;
- purifier: the unconditional 256x256 guided-diffusion model
  (``256x256_diffusion_uncond.pt``, :mod:`diffrob.worlds.adm`) with its linear
  1000-step schedule, learned variance (``learned_range``) and clipped x_0 as
  DiffPure runs it. Images are resized 224 -> 256 for the purifier and back
  (bilinear, as DiffPure's code base), via ``World.model_size``.

Nothing is downloaded: a missing file raises
:class:`~diffrob.worlds.checkpoints.MissingFileError` at once.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn

from ..params import Params
from . import adm
from .checkpoints import (MissingFileError, bad_file, check_all, first_present,
                          import_robustbench, missing, require)

if TYPE_CHECKING:
    from . import Architecture, World

DIFFUSION_FILE = "256x256_diffusion_uncond.pt"
DIFFUSION_SOURCE = ("openai/guided-diffusion: https://openaipublic.blob.core.windows.net/"
                    "diffusion/jul-2021/256x256_diffusion_uncond.pt (2.1 GB)")
RESNET_FILE = "resnet50-0676ba61.pth"
RESNET_SOURCE = ("torchvision (ResNet50_Weights.IMAGENET1K_V1, the weights of RobustBench's "
                 "Standard_R50): https://download.pytorch.org/models/resnet50-0676ba61.pth")
DATA_SOURCE = ("the ILSVRC2012 validation set (https://image-net.org, ILSVRC2012_img_val.tar, "
               "sorted into one folder per wnid, e.g. by the usual valprep.sh)")
IMAGE_SIZE, MODEL_SIZE = 224, 256
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build_scheduler() -> DDPMScheduler:
    """guided-diffusion's ``linear`` schedule for 1000 steps (betas 1e-4..0.02), learned range
    variance and clipped x_0 (``clip_denoised=True`` in DiffPure)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                         beta_end=0.02, variance_type="learned_range", clip_sample=True)


def build_classifier() -> nn.Module:
    """RobustBench's ``Standard_R50`` module, uninitialised: normalisation + torchvision ResNet-50."""
    import_robustbench()
    from robustbench.model_zoo.architectures.utils_architectures import normalize_model
    from torchvision.models import resnet50

    return normalize_model(resnet50(weights=None), MEAN, STD)


def classifier_path(model_dir: str | Path) -> Path:
    """torchvision's ``resnet50-0676ba61.pth`` in ``<model_dir>/imagenet/`` or the torch hub
    cache (where torchvision and RobustBench download it)."""
    folders = [Path(model_dir) / "imagenet", Path(torch.hub.get_dir()) / "checkpoints"]
    return first_present(RESNET_FILE, folders, "imagenet classifier (ResNet-50)", RESNET_SOURCE)


def load_classifier(model_dir: str | Path) -> nn.Module:
    """``Standard_R50`` with the weights of :func:`classifier_path`."""
    path = classifier_path(model_dir)
    model = build_classifier()
    try:
        model.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 -- truncated file, other architecture, ...
        raise bad_file(path, "torchvision's ResNet-50 state dict", RESNET_SOURCE, e) from e
    return model


def diffusion_path(model_dir: str | Path, spec: str = "") -> Path:
    """``spec`` (a ``.pt`` or converted ``.safetensors`` file) or, if '',
    ``<model_dir>/imagenet/256x256_diffusion_uncond.pt``; it must exist."""
    path = Path(spec) if spec else Path(model_dir) / "imagenet" / DIFFUSION_FILE
    return require(path, "imagenet diffusion model (guided diffusion 256x256 unconditional)",
                   DIFFUSION_SOURCE)


def load_diffusion(model_dir: str | Path, spec: str = "",
                   device: torch.device | str = "cpu") -> adm.ADMUNet:
    """The guided-diffusion UNet of :func:`diffusion_path`, loaded as it is (the official
    architecture, or the one a converted safetensors file names: :func:`adm.file_config`)."""
    path = diffusion_path(model_dir, spec)
    try:
        return adm.load_adm(path, device)
    except Exception as e:  # noqa: BLE001 -- truncated file, other architecture, ...
        raise bad_file(path, "the guided-diffusion 256x256 unconditional UNet (the official .pt "
                       "or its `diffrob convert-adm` safetensors)", DIFFUSION_SOURCE, e) from e


def _robustbench_file(name: str) -> Path:
    spec = importlib.util.find_spec("robustbench")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the imagenet world needs robustbench (pip install 'diffrob[paper]')")
    return Path(spec.submodule_search_locations[0]) / "helper_files" / name


def val_files(data_dir: str | Path, n: int) -> list[tuple[Path, int]]:
    """(path, label) of the first ``n`` images of RobustBench's ImageNet evaluation list."""
    ids = _robustbench_file("imagenet_test_image_ids.txt").read_text().split()
    if n > len(ids):
        raise ValueError(f"parameter 'n_images': RobustBench's ImageNet list has {len(ids)} "
                         f"images, got {n}")
    wnid_to_label = json.loads(_robustbench_file("imagenet_class_to_id_map.json").read_text())
    root = Path(data_dir) / "imagenet" / "val"
    return [(root / name, wnid_to_label[name.split("/")[0]]) for name in ids[:n]]


def check_val_files(files: list[tuple[Path, int]]) -> None:
    """:class:`MissingFileError` naming the first absent image and how many are absent."""
    absent = [path for path, _ in files if not path.is_file()]
    if absent:
        error = missing("ImageNet validation image", absent[0].name, [absent[0].parent],
                        DATA_SOURCE)
        raise MissingFileError(f"{error} ({len(absent)} of the first {len(files)} images of "
                               f"RobustBench's list are missing)")


def load_val_images(data_dir: str | Path, n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` validation images (N, 3, 224, 224) in [0,1] and their labels."""
    from PIL import Image
    from torchvision import transforms

    res256crop224 = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(IMAGE_SIZE),
                                        transforms.ToTensor()])
    files = val_files(data_dir, n)
    check_val_files(files)
    from . import check_data

    images = []
    for path, _ in files:
        try:
            with Image.open(path) as im:
                images.append(res256crop224(im.convert("RGB")))
        except Exception as e:  # noqa: BLE001 -- truncated or not an image: name the file
            raise bad_file(path, "an ImageNet validation JPEG", DATA_SOURCE, e) from e
    x, y = torch.stack(images), torch.tensor([label for _, label in files], dtype=torch.long)
    check_data(x, y, f"ImageNet validation images in {Path(data_dir) / 'imagenet' / 'val'}", 1000)
    return x, y


def class_names() -> list[str]:
    """The 1000 ImageNet class names in label order (torchvision's list)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def architecture() -> Architecture:
    """The 256x256 unconditional ADM and ``Standard_R50``, uninitialised."""
    from . import Architecture

    return Architecture(adm.ADMUNet(adm.UNCOND_256), build_classifier(),
                        (3, IMAGE_SIZE, IMAGE_SIZE), MODEL_SIZE)


def load(p: Params) -> World:
    """The paper's ImageNet World from ``p.data_dir``, ``p.model_dir``, ``p.diffusion_model``.

    All files are checked first; every missing one is named in one error."""
    from . import World, prepare, resolve_device

    device = resolve_device(p.device)
    check_all(lambda: classifier_path(p.model_dir),
              lambda: diffusion_path(p.model_dir, p.diffusion_model),
              lambda: check_val_files(val_files(p.data_dir, p.n_images)))
    x, y = load_val_images(p.data_dir, p.n_images)
    classifier = load_classifier(p.model_dir)
    diffusion = load_diffusion(p.model_dir, p.diffusion_model, device)
    return World("imagenet", x.to(device), y.to(device), prepare(classifier, device, p),
                 prepare(diffusion, device, p), build_scheduler(), p,
                 class_names=class_names(), model_size=MODEL_SIZE)
