"""Result reports: every ``record.json`` under a folder → tables, plots, TensorBoard hparams.

Rows are experiments (a run folder's path relative to the report folder,
without ``seed<k>``), columns the records' ``report`` metrics.  Cells are mean
± an error (sample std, standard error, or the 95% confidence half-width from
the t distribution) over seeds, with n.  Per column the best row is bold; a
dagger marks rows whose difference from the best is significant across
seeds (paired t-test over the seeds both rows ran, ``scipy.stats.ttest_rel``,
p < 0.05; needs at least two matched seeds).  Published numbers from a
references file (``benchmarks/results/references.yaml``) are put beside the
rows they describe, with their citations.  Sweeps with a selection rule (from
``<suite>/sweeps.json``) get the configuration chosen on validation data and
the test-label oracle as an upper bound.

Multi-task rows can get a Δm column (``--delta-m NAME ...``): the mean over
the reported task metrics of the relative improvement over single-task
baselines, :func:`mtl.metrics.delta_m` (percent, higher is better).  NAME
is a baseline experiment's label, looked up beside each row (see
:func:`baseline_rows`), so one folder can hold several datasets, each with
its own baselines.  Every report ends with the hardware and training budget
the records say each row's figures came from.

``mtlda report FOLDER [--format md|csv|latex] [--error std|sem|ci95] [--plots DIR] [--references FILE] [--delta-m NAME ...]``

The package, one module per concern: :mod:`.rows` (finding records, grouping them into rows),
:mod:`.stats` (mean ± error, paired t-tests, metric units), :mod:`.references` (published
numbers), :mod:`.delta_m`, :mod:`.tables` (cells, best and significance marks), :mod:`.formats`
(Markdown, LaTeX, CSV), :mod:`.provenance` (hardware and budget per row), :mod:`.selections`
(sweep selections), :mod:`.plots` and :mod:`.hparams`; :func:`make_report` ties them together.
The ``mtlda report`` command itself is :mod:`benchmarks.commands.report`.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..config import ConfigError
from .delta_m import DELTA_M, add_delta_m, baseline_rows
from .formats import FORMATS, RENDERERS, to_csv, to_latex, to_markdown
from .hparams import write_hparams
from .plots import ablation_deltas, ablation_groups, plot_ablations, plot_bars, plot_learning_curves, plot_task_pairs
from .provenance import Provenance, provenance
from .references import DEFAULT_REFERENCES, Reference, load_references
from .rows import RECORD_NAME, Row, collect_rows, find_records, metric_columns, row_label
from .selections import find_manifests, selection_sections
from .stats import ALPHA, ERRORS, lower_is_better, metric_scale, paired_p_value, summary
from .tables import Cell, Table, build_tables, format_cell

__all__ = [
    "ALPHA", "DEFAULT_REFERENCES", "DELTA_M", "ERRORS", "FORMATS", "RECORD_NAME", "RENDERERS",
    "Cell", "Provenance", "Reference", "Row", "Table",
    "ablation_deltas", "ablation_groups", "add_delta_m", "baseline_rows", "build_tables", "collect_rows",
    "find_manifests", "find_records", "format_cell", "load_references", "lower_is_better", "make_report",
    "metric_columns", "metric_scale", "paired_p_value", "plot_ablations", "plot_bars", "plot_learning_curves",
    "plot_task_pairs", "provenance", "row_label", "selection_sections", "summary", "to_csv", "to_latex",
    "to_markdown", "write_hparams",
]


def make_report(
    folder: str | Path,
    fmt: str = "md",
    error: str = "std",
    references: str | Path | None = DEFAULT_REFERENCES,
    plots: str | Path | None = None,
    tensorboard: bool = True,
    delta_m: list[str] | None = None,
    paired_against: list[str] | None = None,
) -> str:
    """The report text (tables, plus sweep selections for Markdown); plots and hparams as side effects.

    ``delta_m``: baseline experiment names for a Δm column (:func:`add_delta_m`).
    ``paired_against``: row names (last label component, e.g. ``fp32`` or ``equal``); Markdown gets,
    per metric, every row beside such a row compared with it over matched seeds (:func:`ablation_deltas`).
    """
    if fmt not in RENDERERS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    rows = collect_rows(folder)
    if not rows:
        raise ConfigError(f"no {RECORD_NAME} found under {folder}")
    missing = [name for name in paired_against or [] if not ablation_groups(rows, name)]
    if missing:
        raise ConfigError(f"--paired-against {' '.join(missing)}: no row of that name has rows beside it under {folder} "
                          f"(rows: {', '.join(sorted(r.label for r in rows))})")
    if references is not None and Path(references) == DEFAULT_REFERENCES and not DEFAULT_REFERENCES.is_file():
        references = None
    refs = load_references(references)
    tables = build_tables(rows, error, refs, delta_m)
    text = RENDERERS[fmt](tables)
    if fmt == "md":
        sections = selection_sections(folder)
        if sections:
            text += "\n\n" + "\n\n".join(sections)
        for metric in dict.fromkeys(m for t in tables for m in t.metrics if m != DELTA_M):
            for prefix, entries in ablation_deltas(rows, metric).items():
                text += f"\n\nAblation '{prefix}' vs its base, {metric} (percentage points over matched seeds):\n\n"
                text += "| variant | Δ | ± sem | n | p (paired t) |\n|---|---|---|---|---|\n"
                text += "".join(_markdown_row(_delta_cells(label, e, digits=1)) for label, e in entries.items())
            for name in paired_against or []:
                text += paired_section(rows, metric, name)
    if plots:
        plot_bars(tables, plots)
        plot_task_pairs(tables, plots)
        plot_learning_curves(rows, plots)
        plot_ablations(rows, tables, plots)
    if tensorboard:
        write_hparams(folder)
    return text


def _delta_cells(label: str, entry: dict, digits: int) -> list[str]:
    """Row label, mean difference, its sem, n and the paired-t p of one :func:`ablation_deltas` entry."""
    p = "n/a" if entry["p"] is None else f"{entry['p']:.3g}"
    sem = "n/a" if math.isnan(entry["sem"]) else f"{entry['sem']:.{digits}f}"
    return [label, f"{entry['delta']:+.{digits}f}", sem, str(entry["n"]), p]


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |\n"


def paired_section(rows, metric: str, name: str) -> str:
    """Markdown: each row beside a ``<prefix>/<name>`` row minus that row, seed by seed (paired t-test)."""
    text = ""
    for prefix, entries in ablation_deltas(rows, metric, name).items():
        base = name if prefix == "." else f"{prefix}/{name}"
        text += f"\n\nPaired against {base}, {metric} (differences over matched seeds):\n\n"
        text += "| row | Δ mean | ± sem | n | p (paired t) | Δ per seed |\n|---|---|---|---|---|---|\n"
        for label, e in entries.items():
            seeds = ", ".join(f"{seed}: {d:+.2f}" for seed, d in e["per_seed"].items())
            text += _markdown_row([*_delta_cells(label, e, digits=2), seeds])
    return text
