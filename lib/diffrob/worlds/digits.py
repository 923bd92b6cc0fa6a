"""The embedded miniature world: scikit-learn's 8x8 digits, a small CNN and a small DDPM.

Nothing is downloaded: the data ship with scikit-learn and the two models
(``models/digits/*.safetensors``) are trained by ``diffrob train-digits``,
deterministically on a CPU. The DDPM has the CIFAR-10 model's form (linear
betas, epsilon prediction, clipped x_0, fixed-large variance) on a 100-step
schedule whose noise level after t* = 10 steps equals the CIFAR-10 model's
after its t* = 100 (alpha_bar = 0.897), so the paper's t* = 0.1 carries over.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
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

SPLIT_SEED = 0
TEST_FRACTION = 0.25
SCHEDULER = dict(num_train_timesteps=100, beta_schedule="linear", beta_start=1e-3,
                 beta_end=0.2164, prediction_type="epsilon", clip_sample=True,
                 variance_type="fixed_large")
UNET = dict(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
            block_out_channels=(32, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)
CLASSIFIER_FILE, UNET_FILE, CARD_FILE = "classifier.safetensors", "ddpm.safetensors", "README.md"


def split() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The fixed train/test split of ``sklearn.datasets.load_digits``: images in [0,1], (N,1,8,8)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION,
                                           random_state=SPLIT_SEED, stratify=data.target)
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digits; takes [0,1] images, returns logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
                                  nn.Linear(128, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def build_unet() -> UNet2DModel:
    return UNet2DModel(**UNET)


def build_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULER)


def architecture() -> Architecture:
    from . import Architecture

    return Architecture(build_unet(), DigitsCNN(), (1, 8, 8))


def load(p: Params) -> World:
    """The digits World: the first ``p.n_images`` test images and the shipped models."""
    from . import World, prepare, resolve_device

    folder = Path(p.model_dir) / "digits"
    for name in (CLASSIFIER_FILE, UNET_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"digits model {name} not found in {folder.resolve()}; it ships with the "
                f"project (models/digits/) or is made by `diffrob train-digits --out {folder}`")
    device = resolve_device(p.device)
    classifier, unet = DigitsCNN(), build_unet()
    classifier.load_state_dict(load_file(folder / CLASSIFIER_FILE))
    unet.load_state_dict(load_file(folder / UNET_FILE))
    _, _, x_test, y_test = split()
    if p.n_images > len(y_test):
        raise ValueError(f"parameter 'n_images': the digits test split has {len(y_test)} "
                         f"images, got {p.n_images}")
    from . import check_data

    check_data(x_test[:p.n_images], y_test[:p.n_images], "sklearn.datasets.load_digits", 10)
    return World("digits", x_test[:p.n_images].to(device), y_test[:p.n_images].to(device),
                 prepare(classifier, device, p), prepare(unet, device, p), build_scheduler(), p,
                 class_names=[str(d) for d in range(10)])


# --- training (deterministic, CPU) ------------------------------------------------------

@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    classifier_epochs: int = 40
    classifier_lr: float = 2e-3
    ddpm_steps: int = 2000
    ddpm_batch: int = 256
    ddpm_lr: float = 2e-3
    ema: float = 0.995


def train_classifier(cfg: TrainConfig, x: Tensor, y: Tensor) -> DigitsCNN:
    """Adam on the training split with one-pixel random shifts."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.classifier_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.classifier_epochs)
    for _ in tqdm(range(cfg.classifier_epochs), desc="classifier"):
        for idx in torch.randperm(len(y), generator=g).split(64):
            shift = torch.randint(-1, 2, (2,), generator=g).tolist()
            xb = torch.roll(x[idx], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def train_ddpm(cfg: TrainConfig, x: Tensor) -> UNet2DModel:
    """The epsilon-prediction loss of Ho et al. (2020) on [-1,1] images, with an EMA of weights."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    unet, scheduler = build_unet(), build_scheduler()
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.ddpm_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.ddpm_lr, total_steps=cfg.ddpm_steps,
                                                pct_start=0.05)
    ab = scheduler.alphas_cumprod
    x = 2 * x - 1
    for _ in (bar := tqdm(range(cfg.ddpm_steps), desc="ddpm")):
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
    unet.load_state_dict(ema)
    return unet.eval()


def sample_grid(unet: UNet2DModel, n: int = 64, seed: int = 0) -> Tensor:
    """Ancestral DDPM samples from pure noise through all 100 steps (the model card's grid)."""
    from ..purifiers import Purifier

    purifier = Purifier(unet, build_scheduler(), "reverse", SCHEDULER["num_train_timesteps"])
    return purifier.sample((n, 1, 8, 8), torch.Generator().manual_seed(seed))


def train(out: Path, cfg: TrainConfig = TrainConfig()) -> dict:
    """Train both digits models, save them as safetensors and write the model card.

    Deterministic: one thread and torch's deterministic algorithms (both restored after).
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # one thread: the same bits on any machine, and no oversubscription
    try:
        return _train(out, cfg)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(out: Path, cfg: TrainConfig) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = split()
    t0 = time.time()
    classifier = train_classifier(cfg, x_train, y_train)
    t_classifier = time.time() - t0
    with torch.no_grad():
        accuracy = (classifier(x_test).argmax(1) == y_test).float().mean().item()
    t0 = time.time()
    unet = train_ddpm(cfg, x_train)
    t_ddpm = time.time() - t0
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()},
              out / CLASSIFIER_FILE)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, out / UNET_FILE)
    facts = dict(config=cfg.__dict__, test_accuracy=accuracy, n_train=len(y_train),
                 n_test=len(y_test), classifier_seconds=round(t_classifier, 1),
                 ddpm_seconds=round(t_ddpm, 1), torch=torch.__version__,
                 classifier_parameters=sum(p.numel() for p in classifier.parameters()),
                 unet_parameters=sum(p.numel() for p in unet.parameters()))
    _write_card(out, facts, sample_grid(unet))
    return facts


def _write_card(out: Path, facts: dict, samples: Tensor) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    grid = make_grid(samples, nrow=8, padding=1, pad_value=1.0)[0].numpy()
    plt.imsave(out / "samples.png", np.kron(grid, np.ones((8, 8))), cmap="gray", vmin=0, vmax=1)
    (out / "training.json").write_text(json.dumps(facts, indent=2) + "\n")
    ab = build_scheduler().alphas_cumprod
    (out / CARD_FILE).write_text(f"""# The `digits` models

Made by `diffrob train-digits --out models/digits` (seed {facts['config']['seed']},
torch {facts['torch']}, CPU, one thread, `torch.use_deterministic_algorithms(True)`); the
numbers below are in `training.json`.

**Data.** scikit-learn's `load_digits` (1797 images, 8x8, 16 grey levels, scaled to
[0,1]), split by `train_test_split(test_size={TEST_FRACTION}, random_state={SPLIT_SEED},
stratify=labels)`: {facts['n_train']} training and {facts['n_test']} test images. The
world's test images are the first `n_images` of the test split.

**Classifier** (`{CLASSIFIER_FILE}`): `DigitsCNN`, three 3x3 conv layers (32, 64, 64
channels, one max-pool) and a 128-unit hidden layer, {facts['classifier_parameters']:,}
parameters; Adam (lr {facts['config']['classifier_lr']}, cosine), {facts['config']['classifier_epochs']}
epochs of batch 64 with one-pixel random shifts; {facts['classifier_seconds']} s.
**Test accuracy {100 * facts['test_accuracy']:.2f} %** on all {facts['n_test']} test images.

**DDPM** (`{UNET_FILE}`): diffusers `UNet2DModel` {UNET['block_out_channels']} channels,
{facts['unet_parameters']:,} parameters, epsilon prediction; `DDPMScheduler` with
{SCHEDULER['num_train_timesteps']} steps of linear betas {SCHEDULER['beta_start']}..{SCHEDULER['beta_end']},
`clip_sample` true, `variance_type` fixed_large: the CIFAR-10 model's form on a 10x
shorter schedule. Its alpha_bar after 10 steps is {ab[9]:.4f}, the CIFAR-10 model's after
100 steps is 0.8970, so t* = 10 here is the paper's t* = 0.1. AdamW (one-cycle, peak lr
{facts['config']['ddpm_lr']}), {facts['config']['ddpm_steps']} steps of batch {facts['config']['ddpm_batch']},
EMA {facts['config']['ema']} of the weights; {facts['ddpm_seconds']} s.

Ancestral samples from pure noise (100 reverse steps, seed 0):

![samples](samples.png)
""")
