"""``mtlda sweep SUITE``: a suite's sweep blocks (grid, random search, ablation) and explicit experiments.

How sweep blocks expand and how a configuration is selected: :mod:`benchmarks.sweep`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..suite import plan_suite, write_manifest
from .common import add_run_options, execute_and_print, parallel_options, run_overrides, standalone_main


def _cmd_sweep(args) -> int:
    options = parallel_options(args)  # checked before anything is planned or written
    overrides = run_overrides(args) + ["train.progress_bar=false"]
    name, runs = plan_suite(args.suite, args.output, args.seeds, overrides, args.only)
    out_dir = Path(args.output) / name
    if args.dry_run:
        print(f"{name}: {len(runs)} run(s) planned → {out_dir}")
        for run in runs:
            changes = " ".join(run.overrides) or "(base)"
            print(f"  {run.experiment}  seed {run.seed}  {changes}")
        return 0
    print(f"{name}: {len(runs)} run(s) → {out_dir}", flush=True)
    write_manifest(out_dir, runs)
    footer = [f"Table saved to {out_dir / 'results.md'}; full report: mtlda report {out_dir}"]
    return execute_and_print(runs, out_dir, not args.no_progress, footer, poll_seconds=args.poll, **options)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sweep`` on an ``argparse`` sub-parser collection (``mtlda sweep``)."""
    p = subparsers.add_parser(
        "sweep",
        help="run a suite's sweeps (grid, random search, ablation) and explicit experiments, safely in parallel",
        description="Expand a suite's sweep blocks (grid / seeded random search / one-at-a-time ablation) together "
        "with its explicit experiments, then run every (experiment, seed) that has no record yet. Each run is "
        "guarded by a lock on <run_dir>/.lock, so several runners may work on one suite at once; interrupted runs "
        "resume from checkpoints/last.pt. Sweeps with a 'selection' rule report the configuration chosen by a "
        "validation metric (and the test-label oracle as an upper bound).",
    )
    p.add_argument("suite", help="suite YAML with 'sweeps' blocks and/or an 'experiments' list")
    add_run_options(
        p,
        "seeds to run (default: each block's or the suite's)",
        "run only experiments matching these names or globs (e.g. 'ablation/*')",
    )
    p.add_argument("--dry-run", action="store_true", help="list the planned runs and their overrides; train nothing")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between checks on runs locked by another runner (default: 5)")
    p.set_defaults(handler=_cmd_sweep)
    return p


def main(argv: list[str] | None = None) -> int:
    """The sweep command on its own (``mtlda sweep``'s arguments, without the ``mtlda sweep`` prefix)."""
    return standalone_main("sweep", add_parser, argv)
