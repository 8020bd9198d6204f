"""``mtlda extend CONFIG --from SHORT``: continue finished shorter runs to the config's longer budget."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError
from ..extend import plan_extensions, seed_extension
from ..suite import is_suite_file, plan_single, plan_suite
from .common import run_overrides


def _cmd_extend(args) -> int:
    overrides = run_overrides(args)
    if is_suite_file(args.config):
        _, runs = plan_suite(args.config, args.output, args.seeds, overrides + ["train.progress_bar=false"], args.only)
    else:
        if args.only:
            raise ConfigError("--only applies to suite files")
        _, runs = plan_single(args.config, args.output, args.seeds, overrides)
    if Path(args.source).resolve() == Path(args.output).resolve():
        raise ConfigError("--from and --output name the same folder: extend into a new --output")
    extensions = plan_extensions(runs, Path(args.source), Path(args.output))  # all checked, nothing written yet
    for extension in extensions:
        seed_extension(extension)
        print(f"{extension.run.run_dir}: continues {extension.source_dir} after epoch {extension.source_epochs} "
              f"of {extension.run.config.train.epochs}", flush=True)
    print("Now train the rest with `mtlda run` and the same arguments (without --from).")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``extend`` on an ``argparse`` sub-parser collection (``mtlda extend``)."""
    p = subparsers.add_parser(
        "extend",
        help="continue shorter runs to a longer train.epochs when nothing in the config depends on the run's length",
        description="Seed new run folders with the checkpoints of shorter runs of the same configuration "
        "(same config, overrides and data root, only train.epochs raised), so that `mtlda run` trains only the "
        "missing epochs. Refused when the lr schedule, a method's coefficient ramp or fine-tuning phases run over "
        "the fraction of the run done: then the shorter run is not a prefix of the longer one.",
    )
    p.add_argument("config", help="experiment YAML or suite YAML, with the longer train.epochs")
    p.add_argument("overrides", nargs="*", help="dotted overrides, as given to the shorter runs (train.epochs raised)")
    p.add_argument("--from", dest="source", required=True, help="the --output folder of the shorter runs")
    p.add_argument("--output", default="runs", help="root folder for the extended runs (default: runs)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds to extend (default: the suite's, or train.seed)")
    p.add_argument("--only", nargs="+", help="extend only these experiments of a suite")
    p.add_argument("--device", help="the device the shorter runs were given, if any")
    p.add_argument("--data-root", help="folder with real datasets (default: $MTLDA_DATA)")
    p.set_defaults(handler=_cmd_extend)
    return p
