"""The command line, one module per subcommand: ``mtlda run | extend | list | sweep | report | analyze | demo``.

This package sits on top of the harness: the subcommands import the modules that plan, run and report,
and nothing below imports them back (``tests/test_import_graph.py`` checks it).  :mod:`.common` holds
what they share (run options, overrides, running planned runs and printing their table).
"""
from __future__ import annotations

import argparse
import logging
import os

from . import analyze, demo, extend, listing, report, run, sweep
from .common import handle

SUBCOMMANDS = (run, extend, listing, sweep, report, analyze, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtlda", description="Multi-task learning and domain adaptation benchmarks.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("MTLDA_LOGLEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    return handle(build_parser().parse_args(argv))
