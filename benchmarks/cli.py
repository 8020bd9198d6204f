"""Command line: ``mtlda run`` and ``mtlda list`` (also ``python -m benchmarks``)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .config import ConfigError
from .tensorboard_hint import tensorboard_command
from .user_errors import USER_ERRORS


def add_run_options(parser: argparse.ArgumentParser, seeds_help: str, only_help: str) -> None:
    """The options ``run`` and ``sweep`` share (after the command's own positional argument)."""
    parser.add_argument("overrides", nargs="*", help="dotted overrides applied to every run, e.g. train.epochs=3 method.name=dann")
    parser.add_argument("--seeds", type=int, nargs="+", help=seeds_help)
    parser.add_argument("--output", default="runs", help="root folder for run directories (default: runs)")
    parser.add_argument("--device", help="force a device: cpu, cuda, cuda:N, mps (default: auto)")
    parser.add_argument("--data-root", help="folder with real datasets (default: $MTLDA_DATA)")
    parser.add_argument("--only", nargs="+", help=only_help)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parallel = parser.add_mutually_exclusive_group()
    parallel.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="train N runs at once in local worker processes, max(1, cores // N) torch threads each and one GPU "
        "each (round-robin) when several exist (default: 1, sequential)",
    )
    parallel.add_argument(
        "--ray", nargs="?", const="", default=None, metavar="ADDRESS",
        help="run each run as a Ray task: on the cluster at ADDRESS (e.g. auto, ray://host:10001), or on a local "
        "Ray started for this command when no address is given (needs pip install 'mtlda[ray]')",
    )


def parallel_options(args) -> dict:
    """``--workers`` / ``--ray`` as keyword arguments for :func:`execute_and_print`."""
    if args.workers < 1:
        raise ConfigError(f"--workers is {args.workers}; it must be at least 1 (the number of runs trained at once)")
    return {"workers": args.workers, "ray_address": args.ray}


def run_overrides(args) -> list[str]:
    """Dotted overrides from the command line, with ``--device`` and ``--data-root`` folded in."""
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    return overrides


def execute_and_print(
    runs, out_dir: Path, progress: bool, footer: list[str], poll_seconds: float = 5.0,
    workers: int = 1, ray_address: str | None = None,
) -> int:
    """Run what has no record, write ``results.md`` atomically, print the table; 3 on a NaN/inf stop.

    Sequential by default; ``workers > 1``: local worker processes; ``ray_address``
    (``""`` for a local Ray): Ray tasks (see :mod:`benchmarks.parallel`).  Under
    ``torchrun`` each run is trained data-parallel by all ranks (see
    :mod:`benchmarks.distributed`) and only rank 0 writes and prints.
    """
    from . import distributed
    from .engine import NonFiniteLossError
    from .parallel import RunFailedError, execute_parallel, execute_ray
    from .records import atomic_write_bytes
    from .suite import summarise
    from .torchrun_runner import run_planned

    if distributed.launched_by_torchrun():
        if workers != 1 or ray_address is not None:
            raise ConfigError(
                "torchrun trains each run data-parallel over its processes; --workers/--ray run several runs at "
                "once; use one or the other"
            )
        replicas = distributed.init_from_env(runs[0].config.train.device if runs else "auto")
        try:
            records = run_planned(runs, replicas, poll_seconds=poll_seconds)
        except (NonFiniteLossError, distributed.DistributedUnsupportedError) as error:
            print(f"error (rank {replicas.rank}): {error}", file=sys.stderr)
            return 3 if isinstance(error, NonFiniteLossError) else 2
        finally:
            distributed.shutdown()
        if not replicas.is_main:
            return 0
    else:
        try:
            if ray_address is not None:
                records = execute_ray(runs, ray_address or None, progress=progress, poll_seconds=poll_seconds)
            else:
                records = execute_parallel(runs, workers, progress=progress, poll_seconds=poll_seconds)
        except NonFiniteLossError as error:
            print(f"error: {error}", file=sys.stderr)
            return 3
        except RunFailedError as error:
            print(f"error: {error}", file=sys.stderr)
            if error.user_error:
                return 2
            return 3 if error.cause.startswith(NonFiniteLossError.__name__) else 1
        except ImportError as error:
            if ray_address is None:
                raise
            print(f"error: {error}", file=sys.stderr)  # names the extra to install
            return 2
    table = summarise(records, runs)
    atomic_write_bytes(out_dir / "results.md", (table + "\n").encode())
    print()
    print(table)
    print()
    for line in footer:
        print(line)
    return 0


def _cmd_run(args) -> int:
    from .suite import is_suite_file, plan_single, plan_suite, write_manifest

    options = parallel_options(args)  # checked before anything is planned or written
    overrides = run_overrides(args)
    if is_suite_file(args.config):
        name, runs = plan_suite(args.config, args.output, args.seeds, overrides + ["train.progress_bar=false"], args.only)
    else:
        if args.only:
            raise ConfigError("--only applies to suite files")
        name, runs = plan_single(args.config, args.output, args.seeds, overrides)
    out_dir = Path(args.output) / name
    if os.environ.get("RANK", "0") == "0":  # under torchrun: once, from rank 0
        print(f"{name}: {len(runs)} run(s) → {out_dir}", flush=True)
    write_manifest(out_dir, runs)
    layout = "<experiment>/seed<k>" if is_suite_file(args.config) else "seed<k>"
    footer = [
        f"Table saved to {out_dir / 'results.md'}; per-run records: {out_dir}/{layout}/record.json",
        f"TensorBoard logs: {tensorboard_command(out_dir)}",
    ]
    return execute_and_print(runs, out_dir, not args.no_progress, footer, **options)


def _cmd_list(args) -> int:
    from adapt.validators import VALIDATORS

    from .config import _schema
    from .datasets import DATASETS
    from .registry import ARCHITECTURES, BACKBONE_ENTRIES, METHODS, REGULARIZERS, SELFSUP, WEIGHTINGS

    default_validators = _schema().train.validators
    sections = {
        "datasets": {n: f"[{e.kind}] {e.description}" for n, e in DATASETS.items()},
        "methods": {n: e.summary for n, e in METHODS.items()},
        "weightings": {n: e.summary for n, e in WEIGHTINGS.items()},
        "backbones": {n: e.summary for n, e in BACKBONE_ENTRIES.items()},
        "architectures": {n: e.summary for n, e in ARCHITECTURES.items()},
        "validators": {n: _validator_line(n, cls, default_validators) for n, cls in VALIDATORS.items()},
        "selfsup": {n: e.summary for n, e in SELFSUP.items()},
        "regularizers": {n: e.summary for n, e in REGULARIZERS.items()},
    }
    for section in [args.what] if args.what else sections:
        print(f"{section}:")
        for name, summary in sections[section].items():
            print(f"  {name:<16} {summary}")
    return 0


def _validator_line(name: str, cls, defaults) -> str:
    default = " [computed by default]" if name in defaults else ""
    return f"{cls.summary}{default}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtlda", description="Multi-task learning and domain adaptation benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run one experiment config or a suite file (experiments × seeds), then print a results table",
        description="Run an experiment config or a suite. Complete runs (with a record.json) are skipped; "
        "interrupted runs resume from their last checkpoint.",
    )
    run.add_argument("config", help="experiment YAML or suite YAML (a suite has an 'experiments' list)")
    add_run_options(run, "seeds to run (default: the suite's, or train.seed)", "run only these experiments of a suite")
    run.set_defaults(handler=_cmd_run)

    lister = sub.add_parser(
        "list", help="list datasets, methods, weightings, backbones, architectures, model-selection validators, "
        "self-supervised objectives (selfsup) and fine-tuning regularisers"
    )
    lister.add_argument(
        "what", nargs="?",
        choices=["datasets", "methods", "weightings", "backbones", "architectures", "validators", "selfsup", "regularizers"],
    )
    lister.set_defaults(handler=_cmd_list)

    from . import analysis, report, sweep

    sweep.add_parser(sub)
    report.add_parser(sub)
    analysis.add_parser(sub)
    return parser


def standalone_main(command: str, add_parser, argv: list[str] | None = None) -> int:
    """``python -m benchmarks.<module> ...``: run one subcommand without the ``mtlda`` prefix."""
    parser = argparse.ArgumentParser(prog="mtlda")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([command, *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.handler(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("MTLDA_LOGLEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
