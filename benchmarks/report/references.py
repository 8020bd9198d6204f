"""Published numbers (``benchmarks/results/references.yaml``) matched to report rows."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError
from .rows import Row


DEFAULT_REFERENCES = Path(__file__).resolve().parents[1] / "results" / "references.yaml"


@dataclass
class Reference:
    value: float
    source: str
    column: str
    label: str = ""
    setting: str = ""
    row: list[str] = field(default_factory=lambda: ["*"])
    match: dict[str, Any] = field(default_factory=dict)

    def applies_to(self, row: Row) -> bool:
        import fnmatch

        if not any(fnmatch.fnmatchcase(row.label, pattern) for pattern in self.row):
            return False
        for dotted, wanted in self.match.items():
            node: Any = row.config
            for part in dotted.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            allowed = wanted if isinstance(wanted, list) and not (isinstance(node, list)) else [wanted]
            if node not in allowed:
                return False
        return True


def load_references(path: str | Path | None) -> list[Reference]:
    """Published numbers: ``references:`` entries with value, source, column and row/match."""
    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"references file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    entries = data.get("references", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a top-level 'references:' list")
    out = []
    for i, entry in enumerate(entries):
        missing = [k for k in ("value", "source", "column") if k not in (entry or {})]
        if missing:
            raise ConfigError(f"{path}: references[{i}] lacks {', '.join(missing)}")
        unknown = sorted(set(entry) - {"value", "source", "column", "label", "setting", "row", "match", "note"})
        if unknown:
            raise ConfigError(f"{path}: references[{i}] has unknown key(s) {unknown}")
        rows = entry.get("row", ["*"])
        out.append(
            Reference(
                value=float(entry["value"]),
                source=str(entry["source"]),
                column=str(entry["column"]),
                label=str(entry.get("label", "")),
                setting=str(entry.get("setting", "")),
                row=[rows] if isinstance(rows, str) else list(rows),
                match=dict(entry.get("match") or {}),
            )
        )
    return out
