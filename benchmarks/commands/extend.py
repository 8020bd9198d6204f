"""``mtlda extend CONFIG --from SHORT``: continue finished shorter runs to the config's longer budget."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError
from ..extend import plan_extensions, seed_extension
from .common import add_plan_options, plan_config_runs


def _cmd_extend(args) -> int:
    _, runs = plan_config_runs(args)  # exactly as `mtlda run` plans them: same configs, hashes and folders
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
    p.add_argument("--from", dest="source", required=True, help="the --output folder of the shorter runs")
    add_plan_options(p, "seeds to extend (default: the suite's, or train.seed)", "extend only these experiments of a suite")
    p.set_defaults(handler=_cmd_extend)
    return p
