"""Sweep selections in a report: the configuration a validation metric picks, and the oracle beside it."""
from __future__ import annotations

import json
from pathlib import Path

from ..selection import format_selection, select_configuration
from .rows import find_records


def find_manifests(folder: str | Path) -> list[tuple[Path, dict]]:
    folder = Path(folder)
    out = []
    for path in sorted(folder.rglob("sweeps.json")):
        try:
            out.append((path, json.loads(path.read_text())))
        except json.JSONDecodeError:
            continue
    return out


def selection_sections(folder: str | Path) -> list[str]:

    sections = []
    for path, manifest in find_manifests(folder):
        records = [r for _, r in find_records(path.parent)]
        for name, block in manifest.get("sweeps", {}).items():
            if block.get("selection"):
                result = select_configuration(records, block["selection"], experiments=list(block["experiments"]))
                sections.append(format_selection(name, result))
    return sections
