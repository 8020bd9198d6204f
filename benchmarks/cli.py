"""The ``mtlda`` entry point (also ``python -m benchmarks``); the subcommands live in :mod:`benchmarks.commands`."""
from __future__ import annotations

import sys

from .commands import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
