"""``mtlda report FOLDER``: tables, plots and TensorBoard hparams from every record under a folder.

What the tables hold: :mod:`benchmarks.report`; the validator and selection-protocol tables:
:mod:`benchmarks.validator_selection`, :mod:`benchmarks.selection_protocols`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..records import atomic_write_bytes
from ..report import DEFAULT_REFERENCES, ERRORS, FORMATS, load_references, make_report
from ..selection_protocols import curve_table, plot_test_curves, protocol_table
from ..tensorboard_hint import tensorboard_command
from ..validator_selection import validator_table
from .common import standalone_main


def _cmd_report(args) -> int:
    if args.curves and not args.plots:  # before anything is written
        raise SystemExit("mtlda report: --curves needs --plots DIR (the folder the curve PNGs are written to)")
    text = make_report(
        args.folder,
        fmt=args.format,
        error=args.error,
        references=None if args.no_references else (args.references or DEFAULT_REFERENCES),
        plots=args.plots,
        tensorboard=not args.no_tensorboard,
        delta_m=args.delta_m,
        paired_against=args.paired_against,
    )
    if args.validators:
        text += "\n\n## Checkpoint selection by each validator\n\n" + validator_table(args.folder, args.error)
    refs = [] if args.no_references else load_references(args.references or DEFAULT_REFERENCES)
    if args.protocols:
        text += "\n\n## Target test accuracy under each selection protocol\n\n" + protocol_table(args.folder, refs, args.error)
        if args.plots:
            plot_test_curves(args.folder, args.plots, refs)
    if args.curves:
        for metric in args.curves:
            table = curve_table(args.folder, metric)
            if table is None:
                how = ("records written since the engine keeps the epoch means of its training scalars" if metric.startswith("train/")
                       else "train with train.test_every_epoch=true" if metric.startswith("test/") else "check the name")
                raise SystemExit(f"mtlda report: --curves {metric}: no record under {args.folder} has this metric in "
                                 f"its per-epoch history ({how})")
            plot_test_curves(args.folder, args.plots, refs, metric)
            text += f"\n\n## Per-epoch {metric}\n\n" + table
    if args.output:
        atomic_write_bytes(args.output, (text + "\n").encode())
        print(f"report written to {args.output}")
    else:
        print(text)
    if args.plots:
        print(f"plots in {args.plots}", file=sys.stderr)
    if not args.no_tensorboard:
        print(f"hparams: {tensorboard_command(Path(args.folder) / 'hparams')}", file=sys.stderr)
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``report`` on an ``argparse`` sub-parser collection (``mtlda report``)."""
    p = subparsers.add_parser(
        "report",
        help="tabulate every record.json under a folder (mean ± error, best, significance, published numbers), plot, log hparams",
        description="Aggregate the run records under FOLDER into tables (one row per experiment, mean ± error over "
        "seeds and n); bold marks the best per column and a dagger the rows significantly different from it "
        "(paired t-test over matched seeds, p < 0.05). Published reference numbers are shown beside matching rows. "
        "Also writes PNG plots (--plots) and one TensorBoard hparams summary per run under FOLDER/hparams.",
    )
    p.add_argument("folder", help="folder holding run records (e.g. runs/quickstart)")
    p.add_argument("--format", choices=FORMATS, default="md", help="table format (default: md)")
    p.add_argument("--error", choices=ERRORS, default="std",
                   help="error shown after ±: sample std, standard error, or 95%% CI half-width (t distribution); default std")
    p.add_argument("--plots", help="write PNG plots (bars, learning curves, ablation deltas) to this folder")
    p.add_argument("--references", help=f"published numbers YAML (default: {DEFAULT_REFERENCES.relative_to(DEFAULT_REFERENCES.parents[2])})")
    p.add_argument("--no-references", action="store_true", help="show no published numbers")
    p.add_argument("--output", help="write the report to this file instead of printing it")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write FOLDER/hparams")
    p.add_argument("--delta-m", nargs="+", metavar="NAME",
                   help="add a Δm column (%%, higher is better; mtl.metrics.delta_m) against these single-task "
                   "baseline experiments, e.g. --delta-m single/left single/right; each row uses the baselines "
                   "found beside it (DATASET/single/left for DATASET/mtl/equal)")
    p.add_argument("--paired-against", nargs="+", metavar="NAME",
                   help="Markdown: compare every row with the row NAME beside it (same folder) over matched seeds: mean "
                   "difference, sem, paired t-test and the per-seed differences, e.g. --paired-against fp32 "
                   "(m2u/dann/bf16 vs m2u/dann/fp32) or --paired-against equal")
    p.add_argument("--validators", action="store_true",
                   help="domain adaptation: also tabulate the target accuracy at the epoch each unsupervised "
                   "validator picks, next to the oracle (benchmarks/validator_selection.py)")
    p.add_argument("--protocols", action="store_true",
                   help="domain adaptation, runs with train.test_every_epoch: target test accuracy of the last epoch, of "
                   "each validator's pick and of the best epoch on target test (TLLib's protocol), beside the published "
                   "number; with --plots also test-accuracy curves (benchmarks/selection_protocols.py)")
    p.add_argument("--curves", nargs="+", metavar="METRIC",
                   help="with --plots: for each named per-epoch metric, one curve plot per domain pair against source "
                   "images seen and a table (mean over seeds at ten evenly spaced epochs) in the report; test metrics "
                   "(train.test_every_epoch), validation metrics, or the epoch means of the logged training scalars, "
                   "e.g. --curves test/target/left/accuracy train/dann/domain_accuracy train/weight/domain")
    p.set_defaults(handler=_cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    """The report command on its own (``mtlda report``'s arguments, without the ``mtlda report`` prefix)."""
    return standalone_main("report", add_parser, argv)
