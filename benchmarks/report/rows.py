"""Finding run records under a folder and grouping them into report rows (one per experiment)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError
from ..metric_names import reported_metrics
from .stats import metric_scale


RECORD_NAME = "record.json"


@dataclass
class Row:
    label: str
    records: list[dict]
    config: dict = field(default_factory=dict)
    #: columns computed from other columns (Δm): column → seed → value, already in %
    derived: dict[str, dict[int, float]] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(r["seed"] for r in self.records)

    def values(self, metric: str) -> dict[int, float]:
        """seed → value: in % for fractions (accuracies are stored as fractions), in the metric's
        own units for errors such as MSE and MAE (:func:`metric_scale`); derived columns as they are."""
        if metric in self.derived:
            return dict(self.derived[metric])
        scale = metric_scale(metric)
        return {r["seed"]: scale * float(r["metrics"][metric]) for r in self.records if metric in r["metrics"]}


def find_records(folder: str | Path) -> list[tuple[Path, dict]]:
    """Every complete run record under ``folder`` (the hparams output folder is skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"report folder not found: {folder}")
    out = []
    for path in sorted(folder.rglob(RECORD_NAME)):
        if "hparams" in path.relative_to(folder).parts[:1]:
            continue
        try:
            out.append((path, json.loads(path.read_text())))
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not a valid record ({error})") from error
    return out


def row_label(folder: Path, record_path: Path) -> str:
    run_dir = record_path.parent
    rel = run_dir.relative_to(folder)
    parts = rel.parts[:-1] if re.fullmatch(r"seed\d+", rel.parts[-1] if rel.parts else "") else rel.parts
    return "/".join(parts) or folder.name


def collect_rows(folder: str | Path) -> list[Row]:
    folder = Path(folder)
    rows: dict[str, Row] = {}
    for path, record in find_records(folder):
        label = row_label(folder, path)
        row = rows.setdefault(label, Row(label, [], record.get("config", {})))
        row.records.append(record)
    return list(rows.values())


def metric_columns(row: Row) -> tuple[str, ...]:
    return reported_metrics(row.records[0])
