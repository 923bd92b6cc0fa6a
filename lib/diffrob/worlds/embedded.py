"""What the embedded worlds (``digits`` 8x8, ``mnist`` 28x28) share: a schedule, the shipped
safetensors, deterministic and resumable training on a CPU, and the model card.

Each embedded world is an :class:`EmbeddedWorld`: its data split, its classifier, its UNet's
size and its schedule. The DDPM has the CIFAR-10 model's form (diffusers ``UNet2DModel`` +
``DDPMScheduler``: linear betas, epsilon prediction, clipped x_0, fixed-large variance) on a
shorter schedule whose noise level after the world's t* steps equals the CIFAR-10 model's after
its t* = 100 of 1000 (alpha_bar = 0.897), so the paper's t* = 0.1 (sec. 2, Appendix B) carries
over: ``digits`` 10 of 100 steps, ``mnist`` 5 of 50 (half the diffusion calls of every attack
on a 12x larger image).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..params import Params

if TYPE_CHECKING:
    from . import Architecture, World

CIFAR10_ALPHA_BAR = 0.8970  # google/ddpm-cifar10-32 after t* = 100 of its 1000 steps


def linear_schedule(steps: int, beta_start: float, beta_end: float) -> dict:
    """DDPMScheduler's arguments: the CIFAR-10 model's form with ``steps`` linear betas."""
    return dict(num_train_timesteps=steps, beta_schedule="linear", beta_start=beta_start,
                beta_end=beta_end, prediction_type="epsilon", clip_sample=True,
                variance_type="fixed_large")


# beta_end solves alpha_bar(t*) = 0.8970 for the world's t*.
SCHEDULER = linear_schedule(100, 1e-3, 0.2164)          # digits: t* = 10
CLASSIFIER_FILE, UNET_FILE, CARD_FILE = "classifier.safetensors", "ddpm.safetensors", "README.md"
FACTS_FILE, STATE_FILE = "training.json", "training_state.pt"


@dataclass(frozen=True)
class TrainConfig:
    """How both models of an embedded world are trained (``diffrob train WORLD``)."""

    seed: int = 0
    classifier_epochs: int = 40
    classifier_lr: float = 2e-3
    classifier_shift: int = 1      # random shifts of up to this many pixels
    ddpm_steps: int = 2000
    ddpm_batch: int = 256
    ddpm_lr: float = 2e-3
    ema: float = 0.995
    checkpoint_every: int = 250    # DDPM steps between resumable training states


def replace_config(cfg: TrainConfig, **given: int | None) -> TrainConfig:
    """``cfg`` with the settings given (``None`` keeps the default)."""
    return dataclasses.replace(cfg, **{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class EmbeddedWorld:
    """An embedded world: its data, its classifier and its UNet, all small enough for a CPU."""

    name: str
    image_shape: tuple[int, int, int]
    split: Callable[[], tuple[Tensor, Tensor, Tensor, Tensor]]  # x_train, y_train, x_test, y_test
    classifier: Callable[[], nn.Module]
    unet: dict                     # UNet2DModel's arguments
    scheduler: dict                # DDPMScheduler's arguments (:func:`linear_schedule`)
    t_star: int                    # the steps whose noise level is the paper's t* = 0.1
    train: TrainConfig
    data_card: str                 # the model card's paragraph on the data and the split

    def build_unet(self) -> UNet2DModel:
        return UNet2DModel(**self.unet)

    def build_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler(**self.scheduler)

    def architecture(self) -> Architecture:
        from . import Architecture

        return Architecture(self.build_unet(), self.classifier(), self.image_shape)


def load(spec: EmbeddedWorld, p: Params) -> World:
    """The World: the first ``p.n_images`` test images and the shipped models."""
    from . import World, check_data, prepare, resolve_device

    folder = Path(p.model_dir) / spec.name
    for name in (CLASSIFIER_FILE, UNET_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{spec.name} model {name} not found in {folder.resolve()}; it ships with the "
                f"project (models/{spec.name}/) or is made by "
                f"`diffrob train {spec.name} --out {folder}`")
    device = resolve_device(p.device)
    classifier, unet = spec.classifier(), spec.build_unet()
    for model, name in ((classifier, CLASSIFIER_FILE), (unet, UNET_FILE)):
        try:
            model.load_state_dict(load_file(folder / name))
        except Exception as e:  # noqa: BLE001 -- any failure: a damaged or foreign file
            raise ValueError(f"{folder / name}: not a {spec.name} {name.split('.')[0]} "
                             f"({type(e).__name__}: {e}); restore it from the repository or "
                             f"retrain with `diffrob train {spec.name}`") from e
    _, _, x_test, y_test = spec.split()
    for key in ("n_images", "jacobian_images"):  # sec. 6 reads its own first N (compression)
        if getattr(p, key) > len(y_test):
            raise ValueError(f"parameter '{key}': the {spec.name} test split has {len(y_test)} "
                             f"images, got {getattr(p, key)}")
    check_data(x_test, y_test, f"the {spec.name} test split", n_classes=10)
    return World(spec.name, x_test[:p.n_images].to(device), y_test[:p.n_images].to(device),
                 prepare(classifier, device, p), prepare(unet, device, p), spec.build_scheduler(), p,
                 class_names=[str(d) for d in range(10)])


# --- training (deterministic, CPU, resumable) -------------------------------------------

def train_classifier(spec: EmbeddedWorld, cfg: TrainConfig, x: Tensor, y: Tensor) -> nn.Module:
    """Adam on the training split with random shifts of up to ``cfg.classifier_shift`` pixels."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = spec.classifier()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.classifier_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.classifier_epochs)
    s = cfg.classifier_shift
    for _ in tqdm(range(cfg.classifier_epochs), desc=f"{spec.name} classifier"):
        for idx in torch.randperm(len(y), generator=g).split(64):
            shift = torch.randint(-s, s + 1, (2,), generator=g).tolist()
            xb = torch.roll(x[idx], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def train_ddpm(spec: EmbeddedWorld, cfg: TrainConfig, x: Tensor,
               state_file: Path | None = None) -> UNet2DModel:
    """The epsilon-prediction loss of Ho et al. (2020) on [-1,1] images, with an EMA of weights.

    Every ``cfg.checkpoint_every`` steps the whole training state (weights, EMA, optimiser,
    learning-rate schedule, random generator) is written atomically to ``state_file``; a run
    that finds it resumes there and ends with the same bits as an uninterrupted one.
    """
    g = torch.Generator().manual_seed(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    unet, scheduler = spec.build_unet(), spec.build_scheduler()
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.ddpm_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.ddpm_lr, total_steps=cfg.ddpm_steps,
                                                pct_start=0.05)
    start = 0
    if state_file is not None and state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        if state["config"] != asdict(cfg):
            raise ValueError(f"{state_file} was written by a training with other settings "
                             f"({state['config']}); delete it to start afresh")
        unet.load_state_dict(state["unet"])
        ema, start = state["ema"], state["step"]
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        g.set_state(state["generator"])
    ab = scheduler.alphas_cumprod
    x = 2 * x - 1
    bar = tqdm(range(start, cfg.ddpm_steps), desc=f"{spec.name} ddpm", initial=start,
               total=cfg.ddpm_steps)
    for step in bar:
        x0 = x[torch.randint(len(x), (cfg.ddpm_batch,), generator=g)]
        k = torch.randint(len(ab), (cfg.ddpm_batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        a = ab[k].view(-1, 1, 1, 1)
        loss = F.mse_loss(unet(a.sqrt() * x0 + (1 - a).sqrt() * eps, k).sample, eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for name, value in unet.state_dict().items():
                if value.is_floating_point():
                    ema[name].lerp_(value, 1 - cfg.ema)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        done = step + 1
        if state_file is not None and done % cfg.checkpoint_every == 0 and done < cfg.ddpm_steps:
            _save_state(state_file, dict(config=asdict(cfg), step=done, unet=unet.state_dict(),
                                         ema=ema, opt=opt.state_dict(),
                                         sched=sched.state_dict(), generator=g.get_state()))
    unet.load_state_dict(ema)
    return unet.eval()


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def sample_grid(spec: EmbeddedWorld, unet: UNet2DModel, n: int = 64, seed: int = 0) -> Tensor:
    """Ancestral DDPM samples from pure noise through every step (the model card's grid)."""
    from ..purifiers import Purifier

    purifier = Purifier(unet, spec.build_scheduler(), "reverse",
                        spec.scheduler["num_train_timesteps"])
    return purifier.sample((n, *spec.image_shape), torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample_quality(classifier: nn.Module, samples: Tensor, x_test: Tensor) -> dict:
    """How digit-like the samples are, seen by the classifier: its mean top-class confidence on
    the samples and on as many test images, and the Frechet distance between the two sets in
    the classifier's logit space (10-d; 0 for identical distributions)."""
    from scipy import linalg

    def stats(x: Tensor) -> tuple[np.ndarray, float]:
        logits = classifier(x).double()
        return logits.numpy(), logits.softmax(1).max(1).values.mean().item()

    a, conf_samples = stats(samples)
    b, conf_test = stats(x_test[:len(samples)])
    mu_a, mu_b, ca, cb = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(ca @ cb).real
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * covmean))
    return dict(confidence_samples=round(conf_samples, 4), confidence_test=round(conf_test, 4),
                frechet_logits=round(fd, 3), n_samples=len(samples))


def train(spec: EmbeddedWorld, out: Path, cfg: TrainConfig | None = None) -> dict:
    """Train both models of ``spec``, save them as safetensors and write the model card.

    Deterministic: one thread and torch's deterministic algorithms (both restored after).
    Resumable: an interrupted run started again with the same ``out`` and ``cfg`` continues
    the DDPM from its last training state (``out/training_state.pt``, deleted at the end).
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # one thread: the same bits on any machine, and no oversubscription
    try:
        return _train(spec, out, cfg or spec.train)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(spec: EmbeddedWorld, out: Path, cfg: TrainConfig) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = spec.split()
    t0 = time.time()
    classifier = train_classifier(spec, cfg, x_train, y_train)
    t_classifier = time.time() - t0
    with torch.no_grad():
        accuracy = (classifier(x_test).argmax(1) == y_test).float().mean().item()
    t0 = time.time()
    unet = train_ddpm(spec, cfg, x_train, out / STATE_FILE)
    t_ddpm = time.time() - t0
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()},
              out / CLASSIFIER_FILE)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, out / UNET_FILE)
    samples = sample_grid(spec, unet)
    facts = dict(config=asdict(cfg), test_accuracy=accuracy, n_train=len(y_train),
                 n_test=len(y_test), classifier_seconds=round(t_classifier, 1),
                 ddpm_seconds=round(t_ddpm, 1), torch=torch.__version__,
                 classifier_parameters=sum(p.numel() for p in classifier.parameters()),
                 unet_parameters=sum(p.numel() for p in unet.parameters()),
                 sample_quality=sample_quality(classifier, samples, x_test))
    _write_card(spec, out, facts, samples)
    (out / STATE_FILE).unlink(missing_ok=True)
    return facts


def _write_card(spec: EmbeddedWorld, out: Path, facts: dict, samples: Tensor) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    grid = make_grid(samples, nrow=8, padding=1, pad_value=1.0)[0].numpy()
    zoom = max(1, 64 // spec.image_shape[-1])
    plt.imsave(out / "samples.png", np.kron(grid, np.ones((zoom, zoom))), cmap="gray",
               vmin=0, vmax=1)
    (out / FACTS_FILE).write_text(json.dumps(facts, indent=2) + "\n")
    cfg, q = facts["config"], facts["sample_quality"]
    ab, s = spec.build_scheduler().alphas_cumprod, spec.scheduler
    (out / CARD_FILE).write_text(f"""# The `{spec.name}` models

Made by `diffrob train {spec.name} --out models/{spec.name}` (seed {cfg['seed']},
torch {facts['torch']}, CPU, one thread, `torch.use_deterministic_algorithms(True)`); the
numbers below are in `{FACTS_FILE}`.

**Data.** {spec.data_card} {facts['n_train']} training and {facts['n_test']} test images;
the world's test images are the first `n_images` of the test split.

**Classifier** (`{CLASSIFIER_FILE}`): `{type(spec.classifier()).__name__}`,
{facts['classifier_parameters']:,} parameters; Adam (lr {cfg['classifier_lr']}, cosine),
{cfg['classifier_epochs']} epochs of batch 64 with random shifts of up to
{cfg['classifier_shift']} pixel(s); {facts['classifier_seconds']} s.
**Test accuracy {100 * facts['test_accuracy']:.2f} %** on all {facts['n_test']} test images.

**DDPM** (`{UNET_FILE}`): diffusers `UNet2DModel`, {spec.unet['block_out_channels']}
channels, {facts['unet_parameters']:,} parameters, epsilon prediction; `DDPMScheduler` with
{s['num_train_timesteps']} steps of linear betas {s['beta_start']}..{s['beta_end']},
`clip_sample` true, `variance_type` fixed_large: the CIFAR-10 model's form on a
{1000 // s['num_train_timesteps']}x shorter schedule. Its alpha_bar after {spec.t_star} steps is
{ab[spec.t_star - 1]:.4f}, the CIFAR-10 model's after 100 steps is {CIFAR10_ALPHA_BAR}, so
t* = {spec.t_star} here is the paper's t* = 0.1. AdamW (one-cycle, peak lr
{cfg['ddpm_lr']}), {cfg['ddpm_steps']} steps of batch {cfg['ddpm_batch']}, EMA {cfg['ema']}
of the weights; {facts['ddpm_seconds']} s.

Ancestral samples from pure noise ({s['num_train_timesteps']} reverse steps, seed 0):

![samples](samples.png)

**Sample quality**, seen by the classifier above on {q['n_samples']} samples and as many test
images: mean top-class confidence {q['confidence_samples']:.3f} on the samples against
{q['confidence_test']:.3f} on test images; Frechet distance between the two sets in the
classifier's 10-d logit space {q['frechet_logits']:.2f} (0 for identical distributions).
""")
