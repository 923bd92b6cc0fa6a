"""The command line of the book's library.

  diffrob check     a world's card (data, model outputs, accuracy, alpha_bar at t*, cost),
                    and one line naming the parameter and the file for whatever does not fit
  diffrob fetch     the paper's checkpoints and data, on a machine with network
  diffrob plan      cost and GPU memory of the expensive stages, before running them
  diffrob attack    adversarial examples (sec. 4, Table S1), resumable, in shards
  diffrob evaluate  the r re-evaluations of sec. 4.2, then Table 1
  diffrob train       the models of an embedded world (digits, mnist)
  diffrob convert-adm the ImageNet checkpoint to safetensors

A mistake in the command or its files (an unknown parameter, a missing file, a damaged
store file) is reported in one line, with the closest valid names, and exit status 2;
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any


EMBEDDED = ("digits", "mnist")

# The first lines of a run would otherwise be third-party deprecation notices on import.
QUIET = (("ignore", FutureWarning, r"torch(\.|$)"),
         ("ignore", UserWarning, r"robustbench(\.|$)"))


class UsageError(Exception):
    """A mistake in the command line or in the files it names (not a bug)."""


def _is_user_error(err: BaseException) -> bool:
    """Missing or damaged files, wrong parameters (:class:`UsageError`), files of a custom
    world that do not fit together and refused store files."""
    from .store import StoreError
    from .worlds.checkpoints import BadFileError
    from .worlds.custom import MismatchError

    return isinstance(err, (UsageError, FileNotFoundError, StoreError, BadFileError,
                            MismatchError))


def _train(args: argparse.Namespace) -> None:
    import importlib

    from .worlds import embedded

    spec = importlib.import_module(f"diffrob.worlds.{args.world}").SPEC
    given = dict(seed=args.seed, ddpm_steps=args.ddpm_steps,
                 classifier_epochs=args.classifier_epochs)
    cfg = embedded.replace_config(spec.train, **given)
    facts = embedded.train(spec, Path(args.out or f"models/{args.world}"), cfg)
    print(json.dumps(facts, indent=2))


def _convert_adm(args: argparse.Namespace) -> None:
    from .worlds import adm

    print(adm.convert_to_safetensors(args.checkpoint, args.out))


def _plan(args: argparse.Namespace) -> None:
    import pandas as pd

    from . import plan
    from .worlds import architecture

    p = _params(args)
    units = plan.unit_costs(architecture(p.world, p))
    costs = plan.table(p, args.tflops, args.gpu_gb, units=units)
    hours = plan.hours_column(args.tflops)
    number = "{:,.3f}".format
    formats = {"diffusion evaluations": "{:,}".format, "PFLOP": number, hours: number,
               "GB per call": number, "fits": lambda v: v or "-"}
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(costs.to_string(formatters=formats, na_rep="-"))
    print(f"\nin all: {costs['PFLOP'].sum():,.1f} PFLOP, {costs[hours].sum():,.2f} GPU hours at "
          f"{args.tflops:g} TFLOP/s sustained (--tflops).")
    note = (f"GB per call: activation memory of one forward/backward of 'rows per call' rows "
            f"through every diffusion step; 'fits': beside the weights ({units.weights / 1e9:.2f} "
            f"GB) in {args.gpu_gb:g} GB (--gpu-gb). '-': the stage keeps no such graph (BPDA's "
            f"gradient skips the diffusion model; evaluations need no gradient).")
    print(textwrap.fill(note, width=100))
    for advice in _memory_advice(p, costs, args.gpu_gb - units.weights / 1e9):
        print(advice)


def _check(args: argparse.Namespace) -> None:
    """The world's card (:func:`diffrob.worlds.custom_check.card`), then its cost (``plan``);
    a mismatch stops it in one line naming the parameter, its file and the parameter file."""
    from . import worlds
    from .worlds import custom_check

    p = _params(args)
    try:
        world = worlds.from_params(p)
        lines = custom_check.card(world)
    except Exception as err:
        if not _is_user_error(err) or isinstance(err, UsageError):
            raise
        raise type(err)(f"{args.params}: {err}") from None
    print("\n".join(lines))
    print()
    _plan(args)


def _memory_advice(p, costs, free_gb: float) -> list[str]:
    """For each stage that does not fit: the setting to lower, and the largest value that fits
    (memory grows linearly with the rows of one call)."""
    lines = []
    for stage, row in costs[costs["fits"] == "no"].iterrows():
        rows_fit = math.floor(row["rows per call"] * free_gb / row["GB per call"])
        if stage.startswith("compression/"):
            lines.append(f"{stage} does not fit: set -p jacobian_chunk {max(rows_fit, 1)} "
                         f"(now {p.jacobian_chunk}).")
        elif rows_fit >= p.batch_size:
            lines.append(f"{stage} does not fit: set -p eot_batch {rows_fit // p.batch_size} "
                         f"(now {p.eot_batch or f'0, all {p.eot}'}; rows per call = batch_size x eot_batch; the "
                         f"result is the same up to float rounding).")
        else:
            lines.append(f"{stage} does not fit: set -p eot_batch 1 -p batch_size "
                         f"{max(rows_fit, 1)} (now {p.batch_size}; changes the batches, so "
                         f"the results are stored apart).")
    return lines


def _params(args: argparse.Namespace):
    from . import params

    overrides = {k: params.parse_override(k, v) for k, v in args.set}
    try:
        return params.load(args.params, **overrides)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(err) from None


def run_stage(stage: str, params_dict: dict[str, Any], names: list[str],
              shard: str | None) -> list[str]:
    """Run the ``attack`` or ``evaluate`` stage for ``names`` (one shard); the job submitit runs.

    Returns the store folders written. Every batch is computed at most once and
    written atomically, so this can be rerun, run per shard, or killed at any time.
    """
    from . import params, stages, worlds

    p = params.Params(**params_dict)
    world = worlds.from_params(p)
    for name in names:
        if stage == "attack":
            stages.adversarial(world, name, shard=shard)
        else:
            stages.evaluations(world, name, shard=shard)
    return [str(p.store_dir / stage / n) for n in names]


def _stage(args: argparse.Namespace) -> None:
    from . import stages

    from . import attacks

    p = _params(args)
    names = args.names or (list(p.attacks) if args.command == "attack"
                           else ["clean", *p.attacks])
    for name in names:  # every name checked before any batch is computed
        if not (args.command == "evaluate" and name == "clean"):
            try:
                attacks.get(name)
            except ValueError as err:
                raise UsageError(f"--{'attack' if args.command == 'attack' else 'source'}: "
                                 f"{err}") from None
    if args.shard is not None and args.submitit:
        raise UsageError("--shard and --submitit exclude each other: --jobs n submits "
                         "the shards 0/n .. n-1/n")
    try:
        stages.parse_shard(args.shard)  # fail early on a bad --shard
    except ValueError as err:
        raise UsageError(f"--{err}") from None
    if args.submitit:
        _submit(args, p, names)
    else:
        for folder in run_stage(args.command, p.as_dict(), names, args.shard):
            print(f"done: {folder}")
    if args.command == "evaluate" and args.shard is None and not args.submitit:
        from . import worlds
        from .fuzzy import runs

        print(runs.table_1(worlds.from_params(p), names, progress=False).round(2).to_string())


def _submit(args: argparse.Namespace, p, names: list[str]) -> None:
    """One submitit job per shard k/n (Slurm, or the local executor with ``--submitit local``)."""
    import submitit

    executor = submitit.AutoExecutor(folder=args.folder,
                                     cluster="local" if args.submitit == "local" else None)
    executor.update_parameters(timeout_min=args.timeout_min, name=f"diffrob-{args.command}",
                               gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task,
                               **({"slurm_partition": args.slurm_partition}
                                  if args.slurm_partition else {}))
    jobs = [executor.submit(run_stage, args.command, p.as_dict(), names, f"{k}/{args.jobs}")
            for k in range(args.jobs)]
    print(f"submitted {len(jobs)} jobs: {[j.job_id for j in jobs]} (logs in {args.folder})")
    for job in jobs:
        for folder in job.result():
            print(f"done (job {job.job_id}): {folder}")


def _overrides(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument("--params", required=True, help=f"parameter file, e.g. {example}")
    parser.add_argument("-p", "--set", nargs=2, action="append", default=[],
                        metavar=("KEY", "VALUE"),
                        help="override one parameter (value read as YAML), as papermill's -p; "
                             "repeatable. Keys, defaults and ranges: lib/diffrob/params.py")


class _KeepNames(argparse.HelpFormatter):
    """Help text wrapped between words only, so attack names such as apgd-dlr-eot stay whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def _stage_parser(sub, name: str, help: str, names_help: str) -> None:
    a = sub.add_parser(name, help=help, description=help, formatter_class=_KeepNames)
    _overrides(a, "params/cifar10.yaml")
    a.add_argument("--attack" if name == "attack" else "--source", dest="names", nargs="+",
                   help=names_help)
    a.add_argument("--shard", help="k/n: only the batches i with i %% n == k (k = 0..n-1)")
    a.add_argument("--submitit", choices=("slurm", "local"),
                   help="submit --jobs shards through submitit (Slurm, or local processes)")
    a.add_argument("--jobs", type=int, default=1,
                   help="with --submitit: number of shards, one job each (default: %(default)s)")
    a.add_argument("--folder", default="submitit_logs",
                   help="with --submitit: folder of the jobs' logs and pickles (default: %(default)s)")
    a.add_argument("--timeout-min", type=int, default=24 * 60,
                   help="with --submitit: time limit of each job, minutes (default: %(default)s)")
    a.add_argument("--gpus-per-node", type=int, default=0, help="with --submitit: GPUs per job (default: %(default)s)")
    a.add_argument("--cpus-per-task", type=int, default=2, help="with --submitit: CPUs per job (default: %(default)s)")
    a.add_argument("--slurm-partition", default="",
                   help="with --submitit slurm: the partition ('' = the cluster's default)")
    a.set_defaults(run=_stage)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffrob", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train an embedded world's classifier and DDPM "
                                      "(deterministic, CPU, resumable)")
    t.add_argument("world", choices=EMBEDDED, help="the embedded world")
    t.add_argument("--out", help="folder for the safetensors + card (default: models/WORLD)")
    t.add_argument("--seed", type=int, help="seed of every random draw (default: 0)")
    t.add_argument("--ddpm-steps", type=int, help="DDPM training steps (default: the world's, "
                                                  "2000 digits, 3000 mnist)")
    t.add_argument("--classifier-epochs", type=int, help="classifier epochs (default: the "
                                                         "world's, 40 digits, 30 mnist)")
    t.set_defaults(run=_train)

    c = sub.add_parser("convert-adm", help="convert 256x256_diffusion_uncond.pt to safetensors "
                                           "(one time, checked against the official keys)")
    c.add_argument("checkpoint", help="the official guided-diffusion .pt file")
    c.add_argument("--out", help="default: beside it, suffix .safetensors")
    c.set_defaults(run=_convert_adm)

    for name, run, help in (
            ("plan", _plan, "FLOPs, GPU hours and memory of the attack, evaluate and Jacobian "
                            "stages, before running them (nothing downloaded)"),
            ("check", _check, "load the world and print its card (data, model outputs, clean "
                              "and purified accuracy on the first images, alpha_bar at t*, "
                              "the plan's cost); stop on anything that does not fit")):
        c = sub.add_parser(name, help=help, description=help)
        _overrides(c, "params/custom.example.yaml" if name == "check" else "params/imagenet.yaml")
        c.add_argument("--tflops", type=float, default=100.0, help="sustained TFLOP/s of one GPU (default: %(default)s)")
        c.add_argument("--gpu-gb", type=float, default=80.0, help="memory of one GPU, GB (default: %(default)s)")
        c.set_defaults(run=run)

    from . import fetch

    fetch.add_parser(sub)

    from .attacks.registry import NAMES

    _stage_parser(sub, "attack", "generate adversarial examples (sec. 4, Table S1), resumable",
                  f"attacks among {' '.join(NAMES)} (default: params 'attacks')")
    _stage_parser(sub, "evaluate", "r re-evaluations of the purified system (sec. 4.2)",
                  f"'clean' and/or attacks among {' '.join(NAMES)} "
                  f"(default: clean + params 'attacks')")
    return p


def main(argv: list[str] | None = None) -> None:
    """Run one subcommand; a user error (:func:`_is_user_error`) exits 2 with one line."""
    for action, category, module in QUIET:
        warnings.filterwarnings(action, category=category, module=module)
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")  # not its advice to install accelerate
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except Exception as err:
        if not _is_user_error(err):
            raise
        print(f"diffrob {args.command}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main(sys.argv[1:])
