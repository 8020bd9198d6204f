"""``mtlda run CONFIG``: one experiment config or a suite (experiments × seeds), then its results table."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..suite import is_suite_file, write_manifest
from ..tensorboard_hint import tensorboard_command
from .common import add_run_options, execute_and_print, parallel_options, plan_config_runs


def _cmd_run(args) -> int:
    options = parallel_options(args)  # checked before anything is planned or written
    name, runs = plan_config_runs(args)
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


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``run`` on an ``argparse`` sub-parser collection (``mtlda run``)."""
    p = subparsers.add_parser(
        "run",
        help="run one experiment config or a suite file (experiments × seeds), then print a results table",
        description="Run an experiment config or a suite. Complete runs (with a record.json) are skipped; "
        "interrupted runs resume from their last checkpoint.",
    )
    p.add_argument("config", help="experiment YAML or suite YAML (a suite has an 'experiments' list)")
    add_run_options(p, "seeds to run (default: the suite's, or train.seed)", "run only these experiments of a suite")
    p.set_defaults(handler=_cmd_run)
    return p
