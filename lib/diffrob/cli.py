"""The command line: ``diffrob train-digits | attack | evaluate ...``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _train_digits(args: argparse.Namespace) -> None:
    from .worlds import digits

    cfg = digits.TrainConfig(seed=args.seed, ddpm_steps=args.ddpm_steps,
                             classifier_epochs=args.classifier_epochs)
    facts = digits.train(Path(args.out), cfg)
    print(json.dumps(facts, indent=2))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffrob", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train-digits", help="train the embedded digits classifier and DDPM")
    t.add_argument("--out", default="models/digits", help="folder for the safetensors + card")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--ddpm-steps", type=int, default=4000)
    t.add_argument("--classifier-epochs", type=int, default=40)
    t.set_defaults(run=_train_digits)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
