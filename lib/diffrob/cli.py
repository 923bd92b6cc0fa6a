"""The command line: ``diffrob train | convert-adm | plan | attack | evaluate ...``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


EMBEDDED = ("digits", "mnist")


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

    p = _params(args)
    costs = plan.table(p, args.tflops, args.gpu_gb)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(costs.round(3).to_string(na_rep=""))
    hours = costs[plan.hours_column(args.tflops)].sum()
    print(f"\nin all: {costs['PFLOP'].sum():.4g} PFLOP, {hours:.4g} GPU hours at "
          f"{args.tflops:g} TFLOP/s sustained (--tflops); 'fits': the full-gradient rows of "
          f"one call beside the weights in {args.gpu_gb:g} GB (--gpu-gb; eot_batch sets the rows)")


def _params(args: argparse.Namespace):
    from . import params

    overrides = {k: params.parse_override(k, v) for k, v in args.set}
    return params.load(args.params, **overrides)


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

    p = _params(args)
    names = args.names or (list(p.attacks) if args.command == "attack"
                           else ["clean", *p.attacks])
    stages.parse_shard(args.shard)  # fail early on a bad --shard
    if args.submitit:
        _submit(args, p, names)
    else:
        for folder in run_stage(args.command, p.as_dict(), names, args.shard):
            print(f"done: {folder}")
    if args.command == "evaluate" and args.shard is None and not args.submitit:
        from . import worlds

        print(stages.fuzzy_table(worlds.from_params(p), names, progress=False)
              .round(2).to_string())


def _submit(args: argparse.Namespace, p, names: list[str]) -> None:
    """One submitit job per shard k/n (Slurm, or the local executor with ``--submitit local``)."""
    import submitit

    if args.shard is not None:
        raise ValueError("--shard and --submitit exclude each other: --jobs n submits "
                         "the shards 0/n .. n-1/n")
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


def _stage_parser(sub, name: str, help: str, names_help: str) -> None:
    a = sub.add_parser(name, help=help)
    a.add_argument("--params", required=True, help="parameter file, e.g. params/digits.yaml")
    a.add_argument("-p", "--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="override a parameter (YAML value), as papermill's -p")
    a.add_argument("--attack" if name == "attack" else "--source", dest="names", nargs="+",
                   help=names_help)
    a.add_argument("--shard", help="k/n: only the batches i with i %% n == k (k = 0..n-1)")
    a.add_argument("--submitit", choices=("slurm", "local"),
                   help="submit --jobs shards through submitit (Slurm, or local processes)")
    a.add_argument("--jobs", type=int, default=1, help="number of shards submitted")
    a.add_argument("--folder", default="submitit_logs", help="submitit's log folder")
    a.add_argument("--timeout-min", type=int, default=24 * 60)
    a.add_argument("--gpus-per-node", type=int, default=0)
    a.add_argument("--cpus-per-task", type=int, default=2)
    a.add_argument("--slurm-partition", default="")
    a.set_defaults(run=_stage)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffrob", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an embedded world's classifier and DDPM "
                                      "(deterministic, CPU, resumable)")
    t.add_argument("world", choices=EMBEDDED, help="the embedded world")
    t.add_argument("--out", help="folder for the safetensors + card (default: models/WORLD)")
    t.add_argument("--seed", type=int, help="random seed (default 0)")
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

    c = sub.add_parser("plan", help="FLOPs, GPU hours and memory of the attack, evaluate and "
                                     "Jacobian stages, before running them (nothing downloaded)")
    c.add_argument("--params", required=True, help="parameter file, e.g. params/imagenet.yaml")
    c.add_argument("-p", "--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="override a parameter (YAML value), as papermill's -p")
    c.add_argument("--tflops", type=float, default=100.0, help="sustained TFLOP/s of one GPU")
    c.add_argument("--gpu-gb", type=float, default=80.0, help="memory of one GPU, GB")
    c.set_defaults(run=_plan)

    _stage_parser(sub, "attack", "generate adversarial examples (sec. 4, Table S1), resumable",
                  "attacks among bpda bpda-eot pgd pgd-eot (default: params 'attacks')")
    _stage_parser(sub, "evaluate", "r re-evaluations of the purified system (sec. 4.2)",
                  "'clean' and/or attacks (default: clean + params 'attacks')")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
