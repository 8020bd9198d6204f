"""``mtlda demo`` (also ``python -m benchmarks.quickstart``, ``make demo``): the quick start.

What it trains and draws: :mod:`benchmarks.quickstart`.
"""
from __future__ import annotations

import argparse

from ..quickstart import run_demo
from .common import standalone_main


def _cmd_demo(args) -> int:
    result = run_demo(args.output, args.seeds, args.overrides, args.workers, progress=not args.no_progress,
                      all_seeds=args.all_seeds)
    print()
    print(result.tables)
    print()
    print(f"Tables saved to {result.suite_dir / 'results.md'}; per-run records: {result.suite_dir}/**/seed*/record.json")
    for path in result.pictures:
        print(f"Picture: {path}")
    print(f"TensorBoard (scalars of every run, and both pictures under Images): {result.tensorboard}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo", help="the quick start: moons domain adaptation and multidigits-sum weighting, tables and pictures",
        description="Run configs/suites/quickstart.yaml (complete runs are reused), print both tables, "
        "write the two pictures and log them to TensorBoard.",
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides applied to every run, e.g. train.threads=1")
    parser.add_argument("--output", default="runs", help="root folder for run directories (default: runs)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds to run (default: the suite's, 0 1 2)")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="train N runs at once (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--all-seeds", action="store_true",
                        help="draw every seed's decision boundaries (one row per seed) instead of the lowest seed's")
    parser.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.quickstart ...`` (``make demo``): the demo command on its own."""
    return standalone_main("demo", add_parser, argv)
