"""The custom world: your own test data, classifier and diffusion purifier, from one parameter
file (``world: custom``; docs/custom.md), run through the same sections 2-6 as the paper's.

- ``data``: a ``.npz`` (arrays ``images`` and ``labels``) or ``.pt`` file (a dict with those
  two tensors, or a pair) of images in [0,1] (N, C, H, W) (uint8 0..255 also) and integer
  labels; a folder with one sub-folder of images per class (the classes in sorted order,
  the images taken class by class in turn, resized to ``image_size`` and centre-cropped);
  or the CIFAR-10 python pickle ``.../cifar-10-batches-py/test_batch``. The first
  ``n_images`` are the test images.
- ``classifier``: a TorchScript (``torch.jit.save``) or ``torch.export`` (``.pt2``) file;
  ``robustbench:NAME`` (``robustbench:DATASET/THREAT/NAME``, default ``cifar10/Linf``) from
  ``model_dir`` in RobustBench's layout; ``torchvision:ARCH`` or ``module.path:factory`` (an
  ``nn.Module`` built by the factory) with the state dict ``classifier_weights``. It returns
  logits of [0,1] images after the normalisation ``mean``/``std``.
- ``diffusion_model``: a diffusers folder (``UNet2DModel`` and ``DDPMScheduler`` side by
  side, or a saved ``DDPMPipeline`` with ``unet/`` and ``scheduler/``) or a guided-diffusion
  checkpoint, read as the ImageNet world reads it (:mod:`.adm`, its linear 1000-step
  schedule). A model of another resolution than the images is fed resized images and its
  output resized back (as DiffPure does on ImageNet: ``World.model_size``).

Nothing is downloaded. Every file is looked at before it is read: a missing one raises
:class:`~.checkpoints.MissingFileError`, an HTML page (a failed download) or an unreadable
one :class:`~.checkpoints.BadFileError`, and files that do not fit each other or the
parameters :class:`MismatchError`; each names the parameter and the file.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from ..params import Params
from . import adm
from .checkpoints import BadFileError, MissingFileError, bad_file, import_robustbench, require

if TYPE_CHECKING:
    from . import Architecture, World

SOURCE = "the one who made it (docs/custom.md)"
PROBE = 4  # the first images every classifier is tried on at load
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


class MismatchError(ValueError):
    """Data, models and parameters of the custom world that do not fit each other."""


@contextlib.contextmanager
def about(key: str):
    """Errors raised inside name parameter ``key`` first (of the same type; a plain
    ``ValueError``, e.g. of :func:`~diffrob.worlds.check_data`, becomes a :class:`MismatchError`)."""
    try:
        yield
    except (BadFileError, MissingFileError, ValueError) as e:
        if str(e).startswith("parameter "):
            raise
        kind = MismatchError if type(e) is ValueError else type(e)
        raise kind(f"parameter {key!r}: {e}") from e


def refuse_html(path: Path) -> None:
    """:class:`BadFileError` if ``path`` is an HTML page, what a failed download leaves."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise BadFileError(f"{path.resolve()} is an HTML page, not the file: a download that "
                           f"failed (e.g. Google Drive's warning page); download it again, "
                           f"e.g. in a browser")


def present(spec: str, what: str) -> Path:
    """The file ``spec``: given, on disk and not an HTML page."""
    if not spec:
        raise MissingFileError(f"world 'custom' needs {what} (docs/custom.md)")
    path = require(spec, what, SOURCE)
    refuse_html(path)
    return path


# --- data ------------------------------------------------------------------------------

def _tensor(value) -> Tensor:
    return value if isinstance(value, Tensor) else torch.from_numpy(np.asarray(value))


def _unit_range(images: Tensor) -> Tensor:
    """uint8 images scaled to [0,1]; float images as they are (checked later)."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images


def read_array_file(path: Path, n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` images and labels of a ``.npz`` or ``.pt`` file."""
    expected = "images (N, C, H, W) and labels (N,)"
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                found = dict(f)
        else:
            found = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(found, (tuple, list)) and len(found) == 2:
                found = dict(images=found[0], labels=found[1])
    except Exception as e:  # noqa: BLE001 -- truncated or not such a file: name it
        raise bad_file(path, f"a {path.suffix} file of {expected}", SOURCE, e) from e
    if not isinstance(found, dict) or not {"images", "labels"} <= set(found):
        keys = sorted(found) if isinstance(found, dict) else type(found).__name__
        raise BadFileError(f"{path.resolve()}: expected the entries 'images' and 'labels', "
                           f"found {keys}")
    images, labels = _tensor(found["images"]), _tensor(found["labels"])
    if n > len(images):
        raise MismatchError(f"{path.resolve()} holds {len(images)} images, but n_images is {n}")
    labels = labels[:n].long() if not labels.is_floating_point() else labels[:n]
    return _unit_range(images[:n]), labels


def read_image_folder(folder: Path, n: int, size: int, channels: int
                      ) -> tuple[Tensor, Tensor, list[str]]:
    """The first ``n`` images of a folder with one sub-folder per class, class by class in turn
    (image 0 of every class, then image 1, ...), and the class names in sorted order."""
    from PIL import Image
    from torchvision import transforms

    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    files = [sorted(f for f in (folder / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
             for c in classes]
    order = [(label, fs[j]) for j in range(max(map(len, files), default=0))
             for label, fs in enumerate(files) if j < len(fs)]
    if not order:
        raise MissingFileError(f"{folder.resolve()}: no images in sub-folders (one per class)")
    if n > len(order):
        raise MismatchError(f"{folder.resolve()} holds {len(order)} images, but n_images is {n}")
    resize = ([transforms.Resize(size), transforms.CenterCrop(size)] if size else [])
    to_tensor = transforms.Compose([*resize, transforms.ToTensor()])
    images = []
    for _, path in order[:n]:
        try:
            with Image.open(path) as im:
                images.append(to_tensor(im.convert("L" if channels == 1 else "RGB")))
        except Exception as e:  # noqa: BLE001 -- truncated or not an image
            raise bad_file(path, "an image", SOURCE, e) from e
    shapes = sorted({tuple(x.shape) for x in images})
    if len(shapes) > 1:
        raise MismatchError(f"{folder.resolve()}: images of different sizes {shapes[:3]}; set "
                            f"image_size to resize them")
    return torch.stack(images), torch.tensor([label for label, _ in order[:n]]), classes


def load_data(p: Params, n: int) -> tuple[Tensor, Tensor, list[str], Path]:
    """The first ``n`` test images of ``p.data`` in [0,1], labels, class names, the path."""
    from . import cifar10, check_data

    if not p.data:
        raise MissingFileError("world 'custom' needs the test data (docs/custom.md)")
    path = Path(p.data).expanduser()
    classes: list[str] = []
    if path.is_dir():
        x, y, classes = read_image_folder(path, n, p.image_size, p.channels)
    else:
        path = present(p.data, "test data (.npz, .pt, an image folder or the CIFAR-10 pickle)")
        if path.name == cifar10.TEST_BATCH.name and path.parent.name == cifar10.TEST_BATCH.parent.name:
            x, y = cifar10.load_test_set(path.parent.parent, n)
            classes = list(cifar10.CLASSES)
        elif path.suffix in (".npz", ".pt", ".pth"):
            x, y = read_array_file(path, n)
        else:
            raise BadFileError(f"{path.resolve()}: expected a .npz or .pt file, a folder of "
                               f"class folders or cifar-10-batches-py/test_batch")
    check_data(x, y, str(path.resolve()), p.n_classes or sys.maxsize)
    return x, y, classes, path


# --- classifier ------------------------------------------------------------------------

class Classifier(nn.Module):
    """The user's classifier on [0,1] images: ``model((x - mean) / std)``, logits out.

    It stays in evaluation mode (a TorchScript or exported graph has no training mode)."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = model
        self.normalised = bool(mean or std)
        if self.normalised:
            c = max(len(mean), len(std))
            self.register_buffer("mean", torch.tensor(mean or [0.0] * c).view(-1, 1, 1))
            self.register_buffer("std", torch.tensor(std or [1.0] * c).view(-1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean) / self.std if self.normalised else x)

    @property
    def model_name(self) -> str:
        """The user's model's class (a TorchScript module's original one), for chapter 1."""
        return getattr(self.model, "original_name", type(self.model).__name__)

    def train(self, mode: bool = True) -> "Classifier":
        self.training = mode
        return self


def _state_dict(p: Params) -> dict:
    path = present(p.classifier_weights, "the classifier's weights (classifier_weights)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise bad_file(path, "a state dict (torch.save of model.state_dict())", SOURCE, e) from e


def _with_weights(model: nn.Module, p: Params) -> nn.Module:
    if p.classifier_weights:
        state = _state_dict(p)
        try:
            model.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 -- another architecture
            raise bad_file(p.classifier_weights, f"the state dict of {p.classifier}", SOURCE,
                           e) from e
    return model.eval()


def _robustbench(name: str, p: Params) -> nn.Module:
    dataset, threat, name = (["cifar10", "Linf"] + name.split("/"))[-3:]
    path = present(str(Path(p.model_dir) / dataset / threat / f"{name}.pt"),
                   f"RobustBench's {dataset}/{threat} model {name} in model_dir")
    import_robustbench()
    from robustbench.utils import load_model

    try:
        return load_model(name, model_dir=p.model_dir, dataset=dataset, threat_model=threat)
    except Exception as e:  # noqa: BLE001 -- truncated file, other architecture, ...
        raise bad_file(path, f"RobustBench's {dataset}/{threat} {name}", SOURCE, e) from e


def _file_classifier(p: Params, device: torch.device | str) -> nn.Module:
    path = present(p.classifier, "a TorchScript or torch.export file")
    try:
        if path.suffix == ".pt2":
            return torch.export.load(path).module().to(device)
        with warnings.catch_warnings():  # torch's notice that TorchScript is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(path, map_location=device).eval()
    except Exception as e:  # noqa: BLE001 -- truncated, or not TorchScript / torch.export
        raise bad_file(path, "a TorchScript (torch.jit.save) or torch.export (.pt2) file",
                       SOURCE, e) from e


def load_classifier(p: Params, device: torch.device | str) -> Classifier:
    """The classifier of ``p.classifier`` on ``device`` behind ``p.mean``/``p.std``."""
    kind, _, rest = p.classifier.partition(":")
    if kind == "robustbench":
        model = _robustbench(rest, p).to(device)
    elif kind == "torchvision":
        from torchvision import models

        model = _with_weights(models.get_model(rest, weights=None,
                                               **({"num_classes": p.n_classes} if p.n_classes
                                                  else {})), p).to(device)
    elif rest and re.fullmatch(r"[\w.]+", kind) and not Path(p.classifier).exists():
        try:
            factory = getattr(importlib.import_module(kind), rest)
        except (ImportError, AttributeError) as e:
            raise MismatchError(f"cannot import {rest} from {kind} ({e})") from None
        model = _with_weights(factory(), p).to(device)
    else:
        model = _file_classifier(p, device)
    return Classifier(model, p.mean, p.std).to(device)


def check_logits(logits: Tensor, n: int, n_classes: int, what: str) -> None:
    """:class:`MismatchError` unless ``logits`` are ``n`` finite rows of ``n_classes`` logits
    (0: any number); probabilities (rows summing to 1, values in [0,1]) are refused."""
    if logits.ndim != 2 or len(logits) != n or (n_classes and logits.shape[1] != n_classes):
        want = f"({n}, {n_classes or 'classes'})"
        raise MismatchError(f"{what}: expected outputs {want}, got {tuple(logits.shape)}")
    if not bool(torch.isfinite(logits).all()):
        raise MismatchError(f"{what}: non-finite outputs (NaN or infinite)")
    rows = logits.double().sum(1)
    if bool(((logits >= 0) & (logits <= 1)).all()) and bool(((rows - 1).abs() < 1e-3).all()):
        raise MismatchError(f"{what}: its outputs look like probabilities (every row sums to 1, "
                            f"all values in [0,1]); the world expects logits: leave out the "
                            f"final softmax")


# --- diffusion model -------------------------------------------------------------------

def _diffusers(folder: Path):
    from diffusers import DDPMScheduler, UNet2DModel

    unet = folder / "unet" if (folder / "unet").is_dir() else folder
    sched = folder / "scheduler" if (folder / "scheduler").is_dir() else folder
    present(str(unet / "config.json"), "the UNet2DModel's config.json")
    weights = [unet / w for w in DIFFUSERS_WEIGHTS if (unet / w).is_file()]
    present(str(weights[0] if weights else unet / DIFFUSERS_WEIGHTS[0]), "the UNet's weights")
    config = present(str(sched / "scheduler_config.json"), "the DDPMScheduler's config")
    try:
        model = UNet2DModel.from_pretrained(unet)
    except Exception as e:  # noqa: BLE001 -- whatever diffusers raises, name the folder
        raise bad_file(weights[0], "a diffusers UNet2DModel (config.json and weights)", SOURCE,
                       e) from e
    try:
        scheduler = DDPMScheduler.from_pretrained(sched)
    except Exception as e:  # noqa: BLE001
        raise bad_file(config, "a DDPMScheduler config", SOURCE, e) from e
    c = model.config
    return model, scheduler, config, (c.in_channels, c.out_channels, c.sample_size)


def _guided(path: Path):
    from . import imagenet

    try:
        model = adm.load_adm(path)
    except Exception as e:  # noqa: BLE001 -- truncated file, other architecture, ...
        raise bad_file(path, "a guided-diffusion UNet (the official .pt or its `diffrob "
                       "convert-adm` safetensors)", SOURCE, e) from e
    cfg = model.cfg
    return model, imagenet.build_scheduler(), path, (cfg.in_channels, cfg.out_channels,
                                                      cfg.image_size)


def load_diffusion(p: Params):
    """(eps-model, DDPMScheduler, the scheduler's file, (in, out channels, resolution))."""
    path = Path(p.diffusion_model).expanduser()
    if p.diffusion_model and path.is_dir():
        return _diffusers(path)
    return _guided(present(p.diffusion_model, "a diffusers folder or a guided-diffusion "
                           "checkpoint"))


# --- the world -------------------------------------------------------------------------

def check_fit(p: Params, image_shape: tuple[int, ...], data: Path, channels: tuple[int, int, int],
              scheduler, scheduler_file: Path) -> None:
    """:class:`MismatchError` naming the parameters and files that do not fit: channels and
    size of the data, of the diffusion model and of the parameters, t* and the schedule,
    the normalisation."""
    c, h, w = image_shape
    data = data.resolve()
    if p.channels and c != p.channels:
        raise MismatchError(f"parameter 'channels': {p.channels}, but the images of 'data' "
                            f"({data}) have {c}")
    if p.image_size and (h, w) != (p.image_size, p.image_size):
        raise MismatchError(f"parameter 'image_size': {p.image_size}, but the images of 'data' "
                            f"({data}) are {h}x{w}")
    model_in, model_out, _ = channels
    if model_in != c or model_out not in (c, 2 * c):
        raise MismatchError(f"parameter 'diffusion_model' ({Path(p.diffusion_model).resolve()}):"
                            f" {model_in} input and {model_out} output channels, but the images "
                            f"of 'data' ({data}) have {c} (expected {c} in, {c} or {2 * c} out)")
    steps = len(scheduler.alphas_cumprod)
    if not 1 <= p.t_star <= steps:
        raise MismatchError(f"parameter 't_star': {p.t_star}, but the scheduler of "
                            f"'diffusion_model' ({scheduler_file.resolve()}) has {steps} "
                            f"training steps (t* must be 1..{steps})")
    for key in ("mean", "std"):
        values = getattr(p, key)
        if values and len(values) not in (1, c):
            raise MismatchError(f"parameter {key!r}: {len(values)} values for images of {c} "
                                f"channel(s) ('data': {data})")
    if any(s <= 0 for s in p.std):
        raise MismatchError(f"parameter 'std': expected positive values, got {p.std}")


def load(p: Params) -> World:
    """The custom World: the first ``p.n_images`` of ``p.data``, ``p.classifier`` and
    ``p.diffusion_model``, checked against each other (module docstring)."""
    from . import World, prepare, resolve_device

    device = resolve_device(p.device)
    with about("data"):
        x, y, classes, data = load_data(p, p.n_images)
    with about("diffusion_model"):
        diffusion, scheduler, scheduler_file, channels = load_diffusion(p)
    check_fit(p, tuple(x.shape[1:]), data, channels, scheduler, scheduler_file)
    with about("classifier"):
        classifier = load_classifier(p, device)
    probe = x[:PROBE].to(device)
    what = f"parameter 'classifier' ({p.classifier}) on the images of 'data' ({data.resolve()})"
    try:
        with torch.no_grad():
            logits = classifier(probe)
    except Exception as e:  # noqa: BLE001 -- wrong channels, size or dtype for this model
        raise MismatchError(f"{what}: it fails on {tuple(probe.shape)} "
                            f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})"
                            ) from None
    check_logits(logits, len(probe), p.n_classes, what)
    n_classes = logits.shape[1]
    if int(y.max()) >= n_classes:
        raise MismatchError(f"parameter 'data' ({data.resolve()}): labels up to {int(y.max())}, "
                            f"but 'classifier' ({p.classifier}) has {n_classes} classes")
    size = channels[2] if channels[2] != x.shape[-1] else None
    return World("custom", x.to(device), y.to(device), prepare(classifier, device, p),
                 prepare(diffusion, device, p), scheduler, p,
                 class_names=classes or [str(k) for k in range(n_classes)], model_size=size)


def architecture(p: Params) -> Architecture:
    """The custom world's two models read from their files and moved to the meta device (no
    compute), and the data's image shape: what :mod:`diffrob.plan` counts."""
    from . import Architecture

    with about("data"):
        x, _, _, _ = load_data(p, 1)
    with about("diffusion_model"):
        diffusion, _, _, channels = load_diffusion(p)
    with about("classifier"):
        classifier = load_classifier(p, "meta")
    size = channels[2] if channels[2] != x.shape[-1] else None
    return Architecture(diffusion.to("meta"), classifier, tuple(x.shape[1:]), size)
