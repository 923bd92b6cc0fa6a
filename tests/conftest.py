"""Shared test settings, and the fake ImageNet world of the imagenet tests."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffrob.worlds import adm, imagenet

# One intra-op thread per test process: tiny models gain nothing from more, and
# oversubscribed threads on a shared 2-core machine slow everything down sharply.
torch.set_num_threads(int(os.environ.get("DIFFROB_TEST_THREADS", "1")))


# --- a fake ImageNet world: the real file layout and formats, random small models ----------

# The full ADM architecture at reduced width: the same levels and 566 keys, resblock
# up/down-sampling, scale-shift norm, attention at 32, 16 and 8 pixels.
SMALL_ADM = adm.ADMConfig(model_channels=32, num_head_channels=32)
FAKE_COLOURS = [(200, 100, 50), (10, 250, 130), (90, 90, 90), (240, 240, 20)]
FAKE_SIZES = [(333, 500), (256, 256), (400, 300), (300, 420)]  # (height, width) of the JPEGs


def make_fake_imagenet(root: Path) -> dict:
    """``model_dir`` with a ResNet-50 in torchvision's file, ``diffusion_model`` a random small ADM
    as converted safetensors (its architecture in the metadata), and ``data_dir`` with the first
    images of RobustBench's ImageNet list as flat-coloured JPEGs in the val layout.

    The ResNet is random except its last layer, which is fitted (least squares on the
    penultimate features) to give each fake image logit 5 for its label and 0 for the other
    classes: the chapters then have correctly classified images to attack and slice.
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
    fc, resnet.fc = resnet.fc, torch.nn.Identity()
    with torch.no_grad():
        mean, std = torch.tensor(imagenet.MEAN).view(3, 1, 1), torch.tensor(imagenet.STD).view(3, 1, 1)
        features = resnet((x - mean) / std).double()
        targets = 5.0 * torch.nn.functional.one_hot(y, 1000).double()
        fc.weight.copy_((torch.linalg.pinv(features) @ targets).T)
        fc.bias.zero_()
    resnet.fc = fc
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
