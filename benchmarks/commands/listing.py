"""``mtlda list [WHAT]``: the datasets, methods, weightings, networks, validators and extra terms by name."""
from __future__ import annotations

import argparse

from adapt.validators import VALIDATORS

from ..config import _schema
from ..datasets import DATASETS
from ..registry import ARCHITECTURES, BACKBONE_ENTRIES, METHODS, REGULARIZERS, SELFSUP, WEIGHTINGS

SECTIONS = ("datasets", "methods", "weightings", "backbones", "architectures", "validators", "selfsup", "regularizers")


def _cmd_list(args) -> int:
    default_validators = _schema().train.validators
    sections = {
        "datasets": {n: f"[{e.kind}] {e.description}" for n, e in DATASETS.items()},
        "methods": {n: e.summary for n, e in METHODS.items()},
        "weightings": {n: e.summary for n, e in WEIGHTINGS.items()},
        "backbones": {n: e.summary for n, e in BACKBONE_ENTRIES.items()},
        "architectures": {n: e.summary for n, e in ARCHITECTURES.items()},
        "validators": {n: _validator_line(n, cls, default_validators) for n, cls in VALIDATORS.items()},
        "selfsup": {n: e.summary for n, e in SELFSUP.items()},
        "regularizers": {n: e.summary for n, e in REGULARIZERS.items()},
    }
    for section in [args.what] if args.what else sections:
        print(f"{section}:")
        width = max(16, *map(len, sections[section]))  # one column per section, however long its names
        for name, summary in sections[section].items():
            print(f"  {name:<{width}} {summary}")
    return 0


def _validator_line(name: str, cls, defaults) -> str:
    default = " [computed by default]" if name in defaults else ""
    return f"{cls.summary}{default}"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``list`` on an ``argparse`` sub-parser collection (``mtlda list``)."""
    p = subparsers.add_parser(
        "list", help="list datasets, methods, weightings, backbones, architectures, model-selection validators, "
        "self-supervised objectives (selfsup) and fine-tuning regularisers"
    )
    p.add_argument("what", nargs="?", choices=list(SECTIONS))
    p.set_defaults(handler=_cmd_list)
    return p
