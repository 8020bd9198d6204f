"""What the subcommands share: run options, overrides, running planned runs and printing their table."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import distributed
from ..config import ConfigError
from ..engine import NonFiniteLossError
from ..parallel import RunFailedError, execute_parallel, execute_ray
from ..records import atomic_write_bytes
from ..suite import is_suite_file, plan_single, plan_suite, summarise
from ..torchrun_runner import run_planned
from ..user_errors import USER_ERRORS


def add_plan_options(parser: argparse.ArgumentParser, seeds_help: str, only_help: str) -> None:
    """The options that decide which runs a command plans, and so their configs and folders (``run``, ``sweep``,
    ``extend``), after the command's own positional argument."""
    parser.add_argument("overrides", nargs="*", help="dotted overrides applied to every run, e.g. train.epochs=3 method.name=dann")
    parser.add_argument("--seeds", type=int, nargs="+", help=seeds_help)
    parser.add_argument("--output", default="runs", help="root folder for run directories (default: runs)")
    parser.add_argument("--device", help="force a device: cpu, cuda, cuda:N, mps (default: auto)")
    parser.add_argument("--data-root", help="folder with real datasets (default: $MTLDA_DATA)")
    parser.add_argument("--only", nargs="+", help=only_help)


def add_run_options(parser: argparse.ArgumentParser, seeds_help: str, only_help: str) -> None:
    """The options ``run`` and ``sweep`` share: :func:`add_plan_options`, the progress bar and parallelism."""
    add_plan_options(parser, seeds_help, only_help)
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


def plan_config_runs(args) -> tuple[str, list]:
    """The runs of ``args.config`` — a suite, or one experiment config over seeds — as ``run`` and ``extend`` plan them."""
    overrides = run_overrides(args)
    if is_suite_file(args.config):
        return plan_suite(args.config, args.output, args.seeds, overrides + ["train.progress_bar=false"], args.only)
    if args.only:
        raise ConfigError("--only applies to suite files")
    return plan_single(args.config, args.output, args.seeds, overrides)


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


def handle(args) -> int:
    """Call the parsed subcommand's handler; a user error is one ``error:`` line and exit code 2."""
    try:
        return args.handler(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def standalone_main(command: str, add_parser, argv: list[str] | None = None) -> int:
    """``python -m benchmarks.<module> ...``: run one subcommand without the ``mtlda`` prefix."""
    parser = argparse.ArgumentParser(prog="mtlda")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return handle(parser.parse_args([command, *(sys.argv[1:] if argv is None else argv)]))
