"""Worlds: a data set, a classifier and a diffusion model that belong together.

``load("digits")`` needs nothing but installed packages; ``load("cifar10")``
and ``load("imagenet")`` read the paper's checkpoints from local files and
fail at once, naming the missing file, when they are absent; ``world: custom``
reads your own data, classifier and diffusion model from the files its parameters
name (:mod:`.custom`). Every world's test data pass :func:`check_data` when loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..params import Params, load as load_params
from ..purifiers import Purifier, check_images


@dataclass
class World:
    """Test images in [0,1] (N, C, H, W) with labels, a classifier and a diffusion model.

    ``classifier`` takes [0,1] images and returns logits; ``diffusion`` is an
    eps-model ``(x_t, k) -> eps`` on [-1,1] images with its ``scheduler``.
    """

    name: str
    images: Tensor
    labels: Tensor
    classifier: nn.Module
    diffusion: nn.Module
    scheduler: Any
    params: Params
    class_names: list[str] = field(default_factory=list)
    model_size: int | None = None  # the diffusion model's resolution, if not the images'

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def purifier(self, method: str | None = None, t_star: int | None = None) -> Purifier:
        """The purifier of ``params.purifier`` / ``params.t_star`` unless given."""
        p = self.params
        return Purifier(self.diffusion, self.scheduler, method or p.purifier,
                        t_star or p.t_star, image_shape=self.image_shape,
                        model_size=self.model_size, checkpointing=p.checkpointing,
                        autocast=p.autocast)

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int | None = None) -> Tensor:
        """Class predictions of the bare classifier, in batches."""
        check_images(x, self.image_shape, self.device)
        if x.dtype != self.images.dtype:
            raise ValueError(f"images: expected {self.images.dtype} like the world's test "
                             f"images, got {x.dtype}")
        bs = batch_size or self.params.batch_size
        return torch.cat([self.classifier(x[i:i + bs]).argmax(1) for i in range(0, len(x), bs)])

    def batches(self) -> list[tuple[int, slice]]:
        """(batch index, row slice) of the test images: the i of eq. 9."""
        bs, n = self.params.batch_size, len(self.images)
        return [(i, slice(i * bs, min((i + 1) * bs, n))) for i in range((n + bs - 1) // bs)]


def check_data(images: Tensor, labels: Tensor, source: str, n_classes: int) -> None:
    """``ValueError`` naming ``source`` unless ``images`` is a non-empty float (N, C, H, W)
    batch of finite values in [0,1] and ``labels`` N int64 class indices in 0..n_classes-1."""
    if not (isinstance(images, Tensor) and images.is_floating_point() and images.ndim == 4
            and len(images)):
        what = (f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor)
                else type(images).__name__)
        raise ValueError(f"{source}: expected float images (N, C, H, W) with N >= 1, got {what}")
    if not bool(torch.isfinite(images).all()) or images.min() < 0 or images.max() > 1:
        raise ValueError(f"{source}: expected pixel values in [0,1] (0..255 in the file), got "
                         f"range [{images.min().item():.4g}, {images.max().item():.4g}]")
    if not (isinstance(labels, Tensor) and labels.dtype == torch.long and labels.ndim == 1):
        what = (f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor)
                else type(labels).__name__)
        raise ValueError(f"{source}: expected int64 labels (N,), got {what}")
    if len(labels) != len(images):
        raise ValueError(f"{source}: {len(images)} images but {len(labels)} labels")
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if len(bad):
        raise ValueError(f"{source}: expected labels in 0..{n_classes - 1}, got "
                         f"{sorted(set(bad.tolist()))[:5]}")


@dataclass
class Architecture:
    """A world's classifier and diffusion model without weights, for cost and memory plans
    (:mod:`diffrob.plan`); ``image_shape`` and ``model_size`` as in :class:`World`."""

    diffusion: nn.Module
    classifier: nn.Module
    image_shape: tuple[int, int, int]
    model_size: int | None = None


def architecture(name: str, p: Params | None = None) -> Architecture:
    """The real architectures of world ``name``, on the meta device: no compute. The paper's
    and the embedded worlds' are built without weights or files; the custom world's are read
    from the files that its parameters ``p`` name (:func:`.custom.architecture`)."""
    module = importlib.import_module(f"{__name__}.{name}")
    if name == "custom":
        if p is None:
            raise ValueError("the custom world's architecture is read from its files: give "
                             "its parameters")
        return module.architecture(p)
    with torch.device("meta"):
        return module.architecture()


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare(model: nn.Module, device: torch.device, params: Params) -> nn.Module:
    """Evaluation mode, frozen weights, and the optional GPU speed-ups of ``params``."""
    model = model.to(device).eval().requires_grad_(False)
    if params.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if params.compile:
        model = torch.compile(model)
    return model


def load(name: str = "digits", **params: Any) -> World:
    """Load a World by name; ``params`` are fields of :class:`diffrob.params.Params`."""
    p = load_params(None, **{**params, "world": name})
    return from_params(p)


def from_params(p: Params) -> World:
    """Load the World that ``p.world`` names with the rest of ``p`` (:func:`settled`)."""
    module = importlib.import_module(f"{__name__}.{p.world}")
    return module.load(settled(p))


def settled(p: Params) -> Params:
    """``p`` as its results are computed and filed on this machine: ``autocast`` resolved for
    the device (:func:`resolve_autocast`). The chapters' parameters and their world's are this
    one set, so a claim is filed under the digest that the Summary looks up."""
    return p.replace(autocast=resolve_autocast(p.autocast, resolve_device(p.device)))


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA GPU with bf16, a CPU with AVX-512
    BF16 or AMX. Elsewhere bf16 is emulated: a digits PGD-EOT step under bf16 autocast ran 12x
    slower than in float32 on an AVX2-only CPU (docs/benchmarks.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        capabilities = getattr(torch.cpu, "get_capabilities", dict)()
        return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    return False


def resolve_autocast(name: str, device: torch.device) -> str:
    """'auto' is bf16 where ``device`` computes it natively (:func:`native_bf16`), else none;
    any other value is kept."""
    if name != "auto":
        return name
    return "bf16" if native_bf16(device) else "none"
