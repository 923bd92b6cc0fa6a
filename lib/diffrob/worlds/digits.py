"""The embedded miniature world: scikit-learn's 8x8 digits, a small CNN and a small DDPM.

Nothing is downloaded: the data ship with scikit-learn and the two models
(``models/digits/*.safetensors``) are trained by ``diffrob train digits``,
deterministically on a CPU. What it shares with ``mnist`` (the schedule on which t* = 10 is
the paper's t* = 0.1, loading, training, the model card) is in :mod:`.embedded`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..params import Params
from . import embedded
from .embedded import CARD_FILE, CLASSIFIER_FILE, SCHEDULER, UNET_FILE, TrainConfig

__all__ = ["CARD_FILE", "CLASSIFIER_FILE", "SCHEDULER", "UNET_FILE", "DigitsCNN", "SPEC",
           "TrainConfig", "architecture", "build_scheduler", "build_unet", "load", "split",
           "train"]

SPLIT_SEED = 0
TEST_FRACTION = 0.25


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


SPEC = embedded.EmbeddedWorld(
    name="digits", image_shape=(1, 8, 8), split=split, classifier=DigitsCNN,
    unet=dict(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
              block_out_channels=(32, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
              up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8),
    scheduler=SCHEDULER, t_star=10, train=TrainConfig(),
    data_card="scikit-learn's `load_digits` (1797 images, 8x8, 16 grey levels, scaled to "
              f"[0,1]), split by `train_test_split(test_size={TEST_FRACTION}, "
              f"random_state={SPLIT_SEED}, stratify=labels)`:")


def build_unet():
    return SPEC.build_unet()


def build_scheduler():
    return SPEC.build_scheduler()


def architecture():
    return SPEC.architecture()


def load(p: Params):
    """The digits World: the first ``p.n_images`` test images and the shipped models."""
    return embedded.load(SPEC, p)


def train(out: Path, cfg: TrainConfig = SPEC.train) -> dict:
    """Train both digits models (see :func:`.embedded.train`)."""
    return embedded.train(SPEC, out, cfg)
