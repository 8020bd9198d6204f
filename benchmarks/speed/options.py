"""Command-line options the step-timing benchmarks share."""
from __future__ import annotations

import argparse

import torch


def add_timing_options(parser: argparse.ArgumentParser, steps: int) -> None:
    """``--rounds``, ``--steps`` (timed steps per round; default ``steps``), ``--device`` and ``--threads``."""
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds over the settings (default: 5)")
    parser.add_argument("--steps", type=int, default=steps, help=f"timed steps per round (default: {steps})")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps (default: auto)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's CPU threads when ``--threads`` was given."""
    if args.threads:
        torch.set_num_threads(args.threads)
