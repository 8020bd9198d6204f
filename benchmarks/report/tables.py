"""Report tables: cells of mean ± error over seeds per (row, metric), best and significance marks."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..config import ConfigError
from .delta_m import DELTA_M, add_delta_m
from .references import Reference
from .rows import Row, metric_columns
from .stats import ALPHA, ERRORS, lower_is_better, metric_scale, paired_p_value, summary


@dataclass
class Cell:
    mean: float
    error: float
    n: int
    values: dict[int, float]
    best: bool = False
    significant: bool = False
    p_value: float | None = None


@dataclass
class Table:
    metrics: tuple[str, ...]
    rows: list[Row]
    cells: dict[tuple[str, str], Cell]
    references: dict[tuple[str, str], Reference]
    error: str
    #: rows without a Δm value, and why ("baseline", or the missing baseline metrics)
    delta_m_notes: dict[str, str] = field(default_factory=dict)
    #: the baseline names Δm was asked for (empty: no Δm column)
    delta_m_baselines: tuple[str, ...] = ()
    #: what the rows trained on: the multi-task dataset (config data.dataset) or the
    #: domain-adaptation pair "source→target", when the records say
    dataset: str | None = None


def _dataset(row: Row) -> str | None:
    """What the row's numbers are measured on: the multi-task dataset, or the source→target pair."""
    data = row.config.get("data") if isinstance(row.config, dict) else None
    if not isinstance(data, dict):
        return None
    if data.get("dataset"):
        return data["dataset"]
    if data.get("source") and data.get("target"):
        return f"{data['source']}→{data['target']}"
    return None


def build_tables(
    rows: list[Row], error: str = "std", references: list[Reference] | None = None, delta_m: list[str] | None = None,
    columns: tuple[str, ...] | None = None,
) -> list[Table]:
    """One table per set of reported metrics and dataset, with best-per-column and significance marks.

    Rows of different multi-task datasets (``data.dataset``) or domain-adaptation
    pairs (``data.source``→``data.target``) go to separate tables, so "best" and
    the significance tests compare like with like.

    With ``delta_m`` (baseline experiment names, see :func:`add_delta_m`) the
    tables get a Δm column, marked best and tested like the metric columns.

    ``columns``: one set of metric columns for every row instead of each row's reported
    metrics, so single-task baselines share a table with the multi-task rows (their
    other cells read n/a).
    """
    if error not in ERRORS:
        raise ConfigError(f"unknown error measure {error!r}; choose one of {', '.join(ERRORS)}")
    notes = add_delta_m(rows, list(delta_m)) if delta_m else {}
    grouped: dict[tuple[tuple[str, ...], str | None], list[Row]] = {}
    for row in rows:
        grouped.setdefault((tuple(columns) if columns else metric_columns(row), _dataset(row)), []).append(row)
    tables = []
    for (metrics, dataset), members in grouped.items():
        if delta_m and any(DELTA_M in r.derived or r.label in notes for r in members):
            metrics = (*metrics, DELTA_M)
        cells: dict[tuple[str, str], Cell] = {}
        for row in members:
            for metric in metrics:
                values = row.values(metric)
                if values:
                    s = summary(list(values.values()), error)
                    cells[(row.label, metric)] = Cell(s["mean"], s["error"], s["n"], values)
        for metric in metrics:
            present = [(row.label, cells[(row.label, metric)]) for row in members if (row.label, metric) in cells]
            if not present:
                continue
            sign = -1 if lower_is_better(metric) else 1
            best_label, best = max(present, key=lambda item: sign * item[1].mean)
            for label, cell in present:
                if label == best_label or cell.mean == best.mean:
                    cell.best = True
                    continue
                cell.p_value = paired_p_value(cell.values, best.values)
                cell.significant = cell.p_value is not None and cell.p_value < ALPHA
        refs = {}
        for ref in references or []:
            if ref.column in metrics:
                for row in members:
                    if ref.applies_to(row):
                        refs.setdefault((row.label, ref.column), ref)
        table_notes = {r.label: notes[r.label] for r in members if r.label in notes} if DELTA_M in metrics else {}
        tables.append(
            Table(metrics, members, cells, refs, error, table_notes, tuple(delta_m or ()) if DELTA_M in metrics else (), dataset)
        )
    return tables


def metric_digits(metric: str) -> int:
    """Decimals shown: 1 for percentages, 2 for errors in their own units (an MAE of 1.3 vs 1.4 matters)."""
    return 2 if metric != DELTA_M and metric_scale(metric) == 1.0 else 1


def format_cell(cell: Cell | None, digits: int = 1) -> str:
    if cell is None:
        return "n/a"
    if cell.n < 2 or math.isnan(cell.error):
        return f"{cell.mean:.{digits}f}"
    return f"{cell.mean:.{digits}f} ± {cell.error:.{digits}f}"


def has_title(tables: list[Table], table: Table) -> bool:
    """Tables are titled by their dataset when there are several (a single table needs no title)."""
    return len(tables) > 1 and table.dataset is not None


def file_prefix(tables: list[Table], table: Table) -> str:
    return f"{safe_filename(table.dataset)}_" if has_title(tables, table) else ""


def safe_filename(name: str) -> str:
    name = name.replace(DELTA_M, "delta_m")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def value_cell(values: list[float], error: str = "std") -> Cell | None:
    """mean ± ``error`` over ``values`` as a :class:`Cell`; None when there are no values."""
    if not values:
        return None
    s = summary(values, error)
    return Cell(s["mean"], s["error"], s["n"], {})


def mean_error_text(values: list[float], error: str = "std", empty: str = "n/a") -> str:
    """``mean ± error`` with one decimal (the value alone for one run; ``empty`` for none)."""
    cell = value_cell(values, error)
    return empty if cell is None else format_cell(cell)


def markdown_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines: the header, its rule, one line per row of cell texts."""
    return ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|",
            *("| " + " | ".join(cells) + " |" for cells in rows)]
