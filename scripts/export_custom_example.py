"""Export the mnist world's own models and test data in the custom world's formats.

    python scripts/export_custom_example.py                 # into results/custom_example/
    python scripts/export_custom_example.py --out DIR
    diffrob check --params params/custom.example.yaml       # then the card of the export

Writes the DDPM as a saved diffusers ``DDPMPipeline`` (``ddpm/unet``, ``ddpm/scheduler``),
the classifier as TorchScript (``classifier.pt``) and the 1000 test images with their labels
as ``mnist_test.npz`` (images float32 in [0,1], (N, 1, 28, 28); labels int64). Run as
``world: custom`` (``params/custom.example.yaml``), they give the mnist world's results
(docs/custom.md; ``tests/test_world_custom.py`` checks it).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMPipeline
from safetensors.torch import load_file

from diffrob.worlds import embedded, mnist

OUT = Path("results/custom_example")


def export(out: Path = OUT, model_dir: Path = Path("models")) -> dict[str, Path]:
    """Write the three files of the example into ``out``; returns their paths by parameter."""
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(model_dir) / "mnist"
    unet = mnist.SPEC.build_unet()
    unet.load_state_dict(load_file(folder / embedded.UNET_FILE))
    DDPMPipeline(unet=unet, scheduler=mnist.SPEC.build_scheduler()).save_pretrained(out / "ddpm")
    classifier = mnist.MnistCNN()
    classifier.load_state_dict(load_file(folder / embedded.CLASSIFIER_FILE))
    with warnings.catch_warnings():  # torch.jit.script's deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(classifier.eval()), out / "classifier.pt")
    _, _, x_test, y_test = mnist.split()
    np.savez(out / "mnist_test.npz", images=x_test.numpy(), labels=y_test.numpy())
    return {"diffusion_model": out / "ddpm", "classifier": out / "classifier.pt",
            "data": out / "mnist_test.npz"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="folder (default: %(default)s)")
    parser.add_argument("--model-dir", type=Path, default=Path("models"),
                        help="where models/mnist/ lives (default: %(default)s)")
    args = parser.parse_args()
    for key, path in export(args.out, args.model_dir).items():
        print(f"{key}: {path}")


if __name__ == "__main__":
    main()
