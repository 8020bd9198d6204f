"""``mtlda analyze RUN_DIR``: proxy A-distance, t-SNE, per-class accuracy and confusion of a finished run."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..analysis import analyze_run


def _cmd_analyze(args) -> int:
    result = analyze_run(args.run_dir, args.output, max_samples=args.max_samples, checkpoint=args.checkpoint,
                         device=args.device)
    out = Path(args.output) if args.output else Path(args.run_dir) / "analysis"
    print(f"{args.run_dir} ({result['checkpoint']}.pt): proxy A-distance {result['proxy_a_distance']:.3f}, "
          f"source accuracy {result['accuracy']['source']:.4f}, target accuracy {result['accuracy']['target']:.4f}")
    print(f"wrote {out / 'analysis.json'}, {out / 'tsne.png'}, {out / 'confusion.png'}; figures logged to {Path(args.run_dir) / 'tb'}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``analyze RUN_DIR [--checkpoint best|last] [--max-samples N] [--output DIR] [--device D]``."""
    parser = subparsers.add_parser(
        "analyze",
        help="analyse a finished domain-adaptation run: proxy A-distance, t-SNE, per-class accuracy, confusion",
        description="Rebuild a finished run from its record.json, load a checkpoint and write analysis.json, "
        "tsne.png and confusion.png (default folder RUN_DIR/analysis); the figures also go to RUN_DIR/tb.",
    )
    parser.add_argument("run_dir", help="a run folder holding record.json and checkpoints/")
    parser.add_argument("--checkpoint", choices=["best", "last"], help="default: the run's train.select")
    parser.add_argument("--max-samples", type=int, default=2000,
                        help="features per domain for the A-distance and t-SNE (default: 2000)")
    parser.add_argument("--output", help="output folder (default: RUN_DIR/analysis)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N, mps (default: the run's train.device)")
    parser.set_defaults(handler=_cmd_analyze)
    return parser
