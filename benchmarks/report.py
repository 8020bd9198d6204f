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
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError
from .metric_names import reported_metrics

RECORD_NAME = "record.json"
DEFAULT_REFERENCES = Path(__file__).resolve().parent / "results" / "references.yaml"
ERRORS = ("std", "sem", "ci95")
FORMATS = ("md", "csv", "latex")
ALPHA = 0.05


# --------------------------------------------------------------------------- loading


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


# --------------------------------------------------------------------------- statistics


def summary(values: list[float], error: str = "std") -> dict[str, float]:
    """Mean, the chosen error (std | sem | ci95 half-width) and n of a list of values."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n if n else float("nan")
    if n < 2:
        return {"mean": mean, "error": float("nan"), "n": n, "std": float("nan"), "sem": float("nan"), "ci95": float("nan")}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    sem = std / math.sqrt(n)
    ci95 = float(stats.t.ppf(0.975, n - 1)) * sem
    chosen = {"std": std, "sem": sem, "ci95": ci95}[error]
    return {"mean": mean, "error": chosen, "n": n, "std": std, "sem": sem, "ci95": ci95}


def paired_p_value(a: dict[int, float], b: dict[int, float]) -> float | None:
    """Two-sided paired t-test over the seeds both have; None with fewer than 2 matched seeds.

    Differences that are all equal (zero variance) give p = 0 if they are
    non-zero and p = 1 if they are zero, instead of scipy's nan.
    """
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    x, y = [a[s] for s in seeds], [b[s] for s in seeds]
    diffs = [u - v for u, v in zip(x, y)]
    if max(diffs) - min(diffs) < 1e-12:
        return 0.0 if abs(diffs[0]) > 1e-12 else 1.0
    return float(stats.ttest_rel(x, y).pvalue)


#: metrics in their own units (regression errors), not fractions shown in %
UNIT_METRICS = ("mse", "mae", "rmse")


def metric_scale(metric: str) -> float:
    """100 for metrics stored as fractions (shown in %), 1 for :data:`UNIT_METRICS` (``test/sum/mae``)."""
    return 1.0 if metric.rsplit("/", 1)[-1].lower() in UNIT_METRICS else 100.0


def lower_is_better(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1].lower() in UNIT_METRICS or any(
        word in metric.lower() for word in ("loss", "error", "err")
    )


# --------------------------------------------------------------------------- references


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


# --------------------------------------------------------------------------- Δm against single-task baselines

DELTA_M = "Δm"


def baseline_rows(row: Row, names: list[str], by_label: dict[str, Row]) -> list[Row]:
    """The baseline rows that serve ``row``: for each name, the row labelled ``P/name``
    with ``P`` the longest leading part of ``row``'s label (whole path components,
    possibly none) for which such a row exists.

    So with ``--delta-m single/left single/right``, ``multimnist/mtl/equal`` is
    compared with ``multimnist/single/left`` and ``multimnist/single/right``,
    and ``mtl/equal`` with ``single/left`` and ``single/right``.
    """
    parts = row.label.split("/")
    found = []
    for name in names:
        for cut in range(len(parts) - 1, -1, -1):
            candidate = by_label.get("/".join([*parts[:cut], name]))
            if candidate is not None:
                found.append(candidate)
                break
    return found


def add_delta_m(rows: list[Row], names: list[str]) -> dict[str, str]:
    """Set ``row.derived[DELTA_M]`` (seed → Δm %) on every row that has baselines for all its metrics.

    Each seed's task metrics are compared with the baselines' means over their
    seeds, so the mean over seeds equals Δm of the mean metrics, and the
    spread is the row's own seed-to-seed spread.  The task metrics are the
    row's reported columns; each must come from exactly one baseline (the
    single-task run of that task).  Returns ``label → why`` for the rows
    that get no Δm (baselines themselves, or a baseline not run yet).
    """
    from mtl.metrics import delta_m

    by_label = {r.label: r for r in rows}
    unknown = [n for n in names if not any(label == n or label.endswith("/" + n) for label in by_label)]
    if unknown:
        raise ConfigError(
            f"Δm baseline(s) {', '.join(unknown)} match no experiment in the report; "
            f"experiments: {', '.join(sorted(by_label))}"
        )
    skipped: dict[str, str] = {}
    for row in rows:
        baselines = baseline_rows(row, names, by_label)
        if row in baselines:
            skipped[row.label] = "baseline"
            continue
        metrics = metric_columns(row)
        reference: dict[str, float] = {}
        source: dict[str, str] = {}
        for base in baselines:
            for metric in metrics:
                values = base.values(metric)
                if not values:
                    continue
                if metric in reference:
                    raise ConfigError(
                        f"Δm for '{row.label}': both '{source[metric]}' and '{base.label}' report {metric}; "
                        "give one baseline per task"
                    )
                reference[metric] = sum(values.values()) / len(values)
                source[metric] = base.label
        missing = [m for m in metrics if m not in reference]
        if missing:
            skipped[row.label] = f"no baseline reports {', '.join(missing)}"
            continue
        per_seed = [row.values(m) for m in metrics]
        seeds = sorted(set.intersection(*(set(v) for v in per_seed)))
        higher = {m: not lower_is_better(m) for m in metrics}
        row.derived[DELTA_M] = {
            seed: delta_m({m: v[seed] for m, v in zip(metrics, per_seed)}, reference, higher) for seed in seeds
        }
    return skipped


# --------------------------------------------------------------------------- tables


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


def _digits(metric: str) -> int:
    """Decimals shown: 1 for percentages, 2 for errors in their own units (an MAE of 1.3 vs 1.4 matters)."""
    return 2 if metric != DELTA_M and metric_scale(metric) == 1.0 else 1


def _fmt(cell: Cell | None, digits: int = 1) -> str:
    if cell is None:
        return "n/a"
    if cell.n < 2 or math.isnan(cell.error):
        return f"{cell.mean:.{digits}f}"
    return f"{cell.mean:.{digits}f} ± {cell.error:.{digits}f}"


DELTA_M_TEXT = (
    "Δm: mean over the task columns of the relative change (%) from the single-task baseline(s) {names} "
    "found beside each row (mtl.metrics.delta_m; higher is better, Maninis et al. 2019, the LibMTL "
    "convention; Nash-MTL's Δm% is its negation). Each seed is compared with the baselines' mean over "
    "seeds; mean ± {error} over seeds."
)

ERROR_TEXT = {
    "std": "sample standard deviation",
    "sem": "standard error of the mean",
    "ci95": "half-width of the 95% confidence interval (t distribution)",
}


def _ref_columns(table: Table) -> list[str]:
    return [m for m in table.metrics if any(k[1] == m for k in table.references)]


def _citations(tables: list[Table]) -> list[Reference]:
    seen: list[Reference] = []
    for table in tables:
        for ref in table.references.values():
            if ref not in seen:
                seen.append(ref)
    return seen


def _titled(tables: list[Table], table: Table) -> bool:
    """Tables are titled by their dataset when there are several (a single table needs no title)."""
    return len(tables) > 1 and table.dataset is not None


def _file_prefix(tables: list[Table], table: Table) -> str:
    return f"{_safe(table.dataset)}_" if _titled(tables, table) else ""


def _published_cell(ref: Reference, number: int, ours: Cell | None) -> str:
    """The published value, its citation number and how far our mean is from it (ours − published)."""
    text = f"{ref.value:g} [{number}]"
    if ours is not None and not math.isnan(ours.mean):
        gap = ours.mean - ref.value
        text += f" (ours {'−' if gap < 0 else '+'}{abs(gap):.1f})"
    return text


def to_markdown(tables: list[Table]) -> str:
    cites = _citations(tables)
    lines = []
    for table in tables:
        if _titled(tables, table):
            lines.append(f"Dataset `{table.dataset}`:")
            lines.append("")
        refcols = _ref_columns(table)
        header = ["experiment", "n"]
        for m in table.metrics:
            header.append(m)
            if m in refcols:
                header.append("published")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * len(header)) + "|")
        for row in table.rows:
            cells = [row.label, str(len(row.records))]
            for m in table.metrics:
                cell = table.cells.get((row.label, m))
                text = _fmt(cell, _digits(m))
                if m == DELTA_M and cell is None and table.delta_m_notes.get(row.label) == "baseline":
                    text = "baseline"
                if cell is not None and cell.best:
                    text = f"**{text}**"
                if cell is not None and cell.significant:
                    text += " †"
                cells.append(text)
                if m in refcols:
                    ref = table.references.get((row.label, m))
                    cells.append(_published_cell(ref, cites.index(ref) + 1, cell) if ref else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    error = tables[0].error if tables else "std"
    lines.append(
        f"Accuracies in %, mean ± {ERROR_TEXT[error]} over seeds (n runs). Bold: best per column. "
        f"†: differs from the best significantly (paired t-test over matched seeds, p < {ALPHA})."
        + (" Published: the cited number, then our mean minus it (negative: we fall short)." if cites else "")
        + (" MSE/MAE columns are in the task's own units (lower is better)."
           if any(metric_scale(m) == 1.0 for t in tables for m in t.metrics if m != DELTA_M) else "")
    )
    names = sorted({n for t in tables for n in t.delta_m_baselines})
    if names:
        lines.append("")
        lines.append(DELTA_M_TEXT.format(names=", ".join(f"`{n}`" for n in names), error=ERROR_TEXT[error]))
        missing = {label: why for t in tables for label, why in t.delta_m_notes.items() if why != "baseline"}
        for label, why in missing.items():
            lines.append(f"No Δm for `{label}`: {why}.")
    if cites:
        lines.append("")
        lines.append("Published numbers:")
        for i, ref in enumerate(cites, 1):
            what = ", ".join(x for x in (ref.label, ref.setting) if x)
            lines.append(f"[{i}] {what}: {ref.value:g}. {ref.source}")
    all_rows = [row for table in tables for row in table.rows]
    groups = provenance(all_rows)
    if groups:
        lines.append("")
        lines.append("Hardware and training budget, as recorded by the runs:")
        lines.append("")
        lines.append("| hardware | budget per run | train time per run | experiments |")
        lines.append("|---|---|---|---|")
        for group in groups:
            seconds = "n/a" if group.seconds is None else f"{group.seconds:.0f} s"
            which = f"all {len(all_rows)}" if len(groups) == 1 else ", ".join(group.labels)
            lines.append(f"| {group.hardware} | {group.budget} | {seconds} | {which} |")
    return "\n".join(lines)


@dataclass
class Provenance:
    hardware: str
    budget: str
    labels: list[str]
    #: mean training seconds per run (None when no record says)
    seconds: float | None


def _hardware_text(record: dict) -> str:
    hw = record.get("hardware") or {}
    if not hw:
        return "not recorded"
    device = str(hw.get("device", "?"))
    # a run in reduced precision says so (records before the numerics field, and float32 runs, say nothing)
    precision = (record.get("numerics") or {}).get("precision")
    suffix = f", {precision} autocast" if precision and precision != "fp32" else ""
    if hw.get("gpu"):
        return f"{device}: {hw['gpu']}{suffix}"
    return (f"{device}: {hw.get('cpu', '?')}, {hw.get('cpu_count', '?')} cores, "
            f"{hw.get('torch_threads', '?')} torch thread(s){suffix}")


def _budget_text(record: dict) -> str:
    config = record.get("config") or {}
    train, data = config.get("train") or {}, config.get("data") or {}
    steps, epochs = record.get("steps"), record.get("epochs_run")
    if steps is None:
        return "not recorded"
    text = f"{steps} steps"
    if epochs:
        per_epoch = train.get("steps_per_epoch")
        each = f"{per_epoch} steps" if per_epoch else f"{steps // epochs} steps = one pass"
        text += f" ({epochs} epochs × {each})"
        if record.get("stopped_early"):
            text += ", stopped early"
    if data.get("batch_size"):
        text += f", batch {data['batch_size']}"
    if data.get("labels_per_class"):
        text += f", {data['labels_per_class']} labels per class"
    return text


def provenance(rows: list[Row]) -> list[Provenance]:
    """Rows grouped by the hardware and training budget their records state (one group per combination).

    A row whose seeds ran on different hardware or budgets appears in each group, marked with those seeds.
    """
    groups: dict[tuple[str, str], Provenance] = {}
    seconds: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        per_key: dict[tuple[str, str], list[int]] = {}
        for record in row.records:
            key = (_hardware_text(record), _budget_text(record))
            per_key.setdefault(key, []).append(record.get("seed", 0))
            if isinstance(record.get("train_seconds"), (int, float)):
                seconds.setdefault(key, []).append(float(record["train_seconds"]))
        for key, seeds in per_key.items():
            label = row.label if len(per_key) == 1 else f"{row.label} (seeds {', '.join(map(str, sorted(seeds)))})"
            groups.setdefault(key, Provenance(key[0], key[1], [], None)).labels.append(label)
    for key, group in groups.items():
        if seconds.get(key):
            group.seconds = sum(seconds[key]) / len(seconds[key])
    return list(groups.values())


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}", "^": r"\^{}", "~": r"\~{}"}


def _latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(tables: list[Table]) -> str:
    cites = _citations(tables)
    out = []
    for table in tables:
        if _titled(tables, table):
            out.append(f"% dataset {table.dataset}")
        refcols = _ref_columns(table)
        ncols = 2 + len(table.metrics) + len(refcols)
        out.append(r"\begin{tabular}{l" + "r" * (ncols - 1) + "}")
        out.append(r"\toprule")
        header = ["experiment", "$n$"]
        for m in table.metrics:
            header.append(r"$\Delta_m$ (\%)" if m == DELTA_M else r"\texttt{" + _latex_escape(m) + "}")
            if m in refcols:
                header.append("published")
        out.append(" & ".join(header) + r" \\")
        out.append(r"\midrule")
        for row in table.rows:
            cells = [_latex_escape(row.label), str(len(row.records))]
            for m in table.metrics:
                cell = table.cells.get((row.label, m))
                if cell is None:
                    text = "n/a"
                else:
                    text = _fmt(cell, _digits(m)).replace(" ± ", r" $\pm$ ")
                    if cell.best:
                        text = r"\textbf{" + text + "}"
                    if cell.significant:
                        text += r"$^\dagger$"
                cells.append(text)
                if m in refcols:
                    ref = table.references.get((row.label, m))
                    cells.append(f"{ref.value:g}$^{{[{cites.index(ref) + 1}]}}$" if ref else "")
            out.append(" & ".join(cells) + r" \\")
        out.append(r"\bottomrule")
        out.append(r"\end{tabular}")
        out.append("")
    error = tables[0].error if tables else "std"
    out.append(
        f"% Accuracies in %, mean $\\pm$ {ERROR_TEXT[error]} over seeds. Bold: best per column. "
        f"$\\dagger$: significantly different from the best (paired t-test, p < {ALPHA})."
    )
    for i, ref in enumerate(cites, 1):
        out.append(f"% [{i}] {ref.label} {ref.setting}: {ref.value:g}. {ref.source}")
    return "\n".join(out)


def to_csv(tables: list[Table]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["experiment", "metric", "n", "mean", "std", "sem", "ci95", "best", "significant_vs_best", "p_value",
         "published", "published_source", "seeds"]
    )
    for table in tables:
        for row in table.rows:
            for m in table.metrics:
                cell = table.cells.get((row.label, m))
                if cell is None:
                    continue
                s = summary(list(cell.values.values()))
                ref = table.references.get((row.label, m))
                writer.writerow(
                    [row.label, m, cell.n, f"{s['mean']:.4f}", _num(s["std"]), _num(s["sem"]), _num(s["ci95"]),
                     int(cell.best), int(cell.significant), "" if cell.p_value is None else f"{cell.p_value:.4g}",
                     "" if ref is None else f"{ref.value:g}", "" if ref is None else ref.source,
                     " ".join(str(k) for k in sorted(cell.values))]
                )
    return buffer.getvalue()


def _num(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.4f}"


RENDERERS = {"md": to_markdown, "csv": to_csv, "latex": to_latex}


# --------------------------------------------------------------------------- sweeps (selection)


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
    from .sweep import format_selection, select_configuration

    sections = []
    for path, manifest in find_manifests(folder):
        records = [r for _, r in find_records(path.parent)]
        for name, block in manifest.get("sweeps", {}).items():
            if block.get("selection"):
                result = select_configuration(records, block["selection"], experiments=list(block["experiments"]))
                sections.append(format_selection(name, result))
    return sections


# --------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _write_png(fig, path: Path) -> None:
    from .records import atomic_save_png  # imported here: the report module itself does not need torch

    atomic_save_png(fig, path)


def _axis_label(metric: str) -> str:
    return f"{metric} (%)" if metric_scale(metric) == 100.0 else metric


def _safe(name: str) -> str:
    name = name.replace(DELTA_M, "delta_m")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def plot_bars(tables: list[Table], out_dir: str | Path) -> list[Path]:
    """One bar chart per metric: mean per experiment with the table's error bars."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in tables:
        for metric in table.metrics:
            labels = [r.label for r in table.rows if (r.label, metric) in table.cells]
            if not labels:
                continue
            cells = [table.cells[(label, metric)] for label in labels]
            errors = [0.0 if math.isnan(c.error) else c.error for c in cells]
            fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(labels) + 2), 3.5))
            colors = ["tab:orange" if c.best else "tab:blue" for c in cells]
            ax.bar(range(len(labels)), [c.mean for c in cells], yerr=errors, capsize=3, color=colors)
            for label in labels:
                ref = table.references.get((label, metric))
                if ref is not None:
                    x = labels.index(label)
                    ax.plot([x - 0.4, x + 0.4], [ref.value, ref.value], "k--", linewidth=1)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
            ax.set_ylabel(_axis_label(metric))
            title = f"mean ± {table.error}" + (" (dashed: published)" if table.references else "")
            ax.set_title(f"{table.dataset}: {title}" if table.dataset else title, fontsize=8)
            fig.tight_layout()
            path = out_dir / f"bars_{_file_prefix(tables, table)}{_safe(metric)}.png"
            _write_png(fig, path)
            plt.close(fig)
            paths.append(path)
    return paths


def plot_task_pairs(tables: list[Table], out_dir: str | Path) -> list[Path]:
    """For tables with two task columns: one point per experiment (mean, error bars on both axes).

    Rows reporting only one of the two (single-task baselines) are drawn as a
    dashed line at their mean, so points above and right of both lines beat them.
    """
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in tables:
        tasks = [m for m in table.metrics if m != DELTA_M]
        if len(tasks) != 2:
            continue
        x_metric, y_metric = tasks
        both = [r.label for r in table.rows if (r.label, x_metric) in table.cells and (r.label, y_metric) in table.cells]
        if not both:
            continue
        fig, ax = plt.subplots(figsize=(6, 5))
        for label in both:
            cx, cy = table.cells[(label, x_metric)], table.cells[(label, y_metric)]
            ax.errorbar(cx.mean, cy.mean, xerr=0.0 if math.isnan(cx.error) else cx.error,
                        yerr=0.0 if math.isnan(cy.error) else cy.error, fmt="o", markersize=4, capsize=2)
            ax.annotate(label, (cx.mean, cy.mean), fontsize=6, xytext=(3, 3), textcoords="offset points")
        for row in table.rows:
            only_x = (row.label, x_metric) in table.cells and (row.label, y_metric) not in table.cells
            only_y = (row.label, y_metric) in table.cells and (row.label, x_metric) not in table.cells
            if only_x:
                ax.axvline(table.cells[(row.label, x_metric)].mean, color="k", linestyle="--", linewidth=0.8)
                ax.annotate(row.label, (table.cells[(row.label, x_metric)].mean, 0.02), xycoords=("data", "axes fraction"),
                            fontsize=6, rotation=90)
            if only_y:
                ax.axhline(table.cells[(row.label, y_metric)].mean, color="k", linestyle="--", linewidth=0.8)
                ax.annotate(row.label, (0.02, table.cells[(row.label, y_metric)].mean), xycoords=("axes fraction", "data"),
                            fontsize=6)
        ax.set_xlabel(_axis_label(x_metric))
        ax.set_ylabel(_axis_label(y_metric))
        title = f"mean ± {table.error} over seeds; dashed: single-task rows"
        ax.set_title(f"{table.dataset}: {title}" if table.dataset else title, fontsize=8)
        fig.tight_layout()
        path = out_dir / f"tasks_{_file_prefix(tables, table)}{_safe(x_metric)}_vs_{_safe(y_metric)}.png"
        _write_png(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_learning_curves(rows: list[Row], out_dir: str | Path) -> list[Path]:
    """Validation metrics per epoch from the records' ``history``: mean over seeds, one line per experiment."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = sorted({k for row in rows for r in row.records for h in r.get("history", []) for k in h if k.startswith("val/")})
    paths = []
    for metric in metrics:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        drawn = 0
        for row in rows:
            per_epoch: dict[int, list[float]] = {}
            for r in row.records:
                for h in r.get("history", []):
                    if metric in h:
                        per_epoch.setdefault(int(h["epoch"]), []).append(metric_scale(metric) * float(h[metric]))
            if not per_epoch:
                continue
            epochs = sorted(per_epoch)
            ax.plot([e + 1 for e in epochs], [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs], marker=".", label=row.label)
            drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("epoch")
        ax.set_ylabel(_axis_label(metric))
        ax.legend(fontsize=6)
        fig.tight_layout()
        path = out_dir / f"curves_{_safe(metric)}.png"
        _write_png(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def ablation_groups(rows: list[Row]) -> dict[str, tuple[Row, list[Row]]]:
    """``prefix → (base row, variant rows)`` for every ``<prefix>/base`` row."""
    by_label = {r.label: r for r in rows}
    groups = {}
    for label, row in by_label.items():
        if label == "base" or label.endswith("/base"):
            prefix = label[: -len("base")]
            variants = [r for r in rows if r.label.startswith(prefix) and r.label != label and "/" not in r.label[len(prefix):]]
            if variants:
                groups[prefix.rstrip("/") or "."] = (row, variants)
    return groups


def ablation_deltas(rows: list[Row], metric: str) -> dict[str, dict[str, dict[str, float]]]:
    """Per ablation group: variant → mean difference to the base over matched seeds (pp), its sem, n, p."""
    out = {}
    for prefix, (base, variants) in ablation_groups(rows).items():
        b = base.values(metric)
        entries = {}
        for variant in variants:
            v = variant.values(metric)
            seeds = sorted(set(v) & set(b))
            if not seeds:
                continue
            diffs = [v[s] - b[s] for s in seeds]
            s = summary(diffs, "sem")
            entries[variant.label] = {"delta": s["mean"], "sem": s["sem"], "n": len(seeds), "p": paired_p_value(v, b)}
        if entries:
            out[prefix] = entries
    return out


def plot_ablations(rows: list[Row], tables: list[Table], out_dir: str | Path) -> list[Path]:
    """Horizontal bars: each ablation's change vs the base (percentage points, ± sem over matched seeds)."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    metrics = [m for t in tables for m in t.metrics]
    for metric in dict.fromkeys(metrics):
        for prefix, entries in ablation_deltas(rows, metric).items():
            labels = list(entries)
            deltas = [entries[k]["delta"] for k in labels]
            errs = [0.0 if math.isnan(entries[k]["sem"]) else entries[k]["sem"] for k in labels]
            fig, ax = plt.subplots(figsize=(5.5, 0.5 * len(labels) + 1.5))
            colors = ["tab:red" if d < 0 else "tab:green" for d in deltas]
            ax.barh(range(len(labels)), deltas, xerr=errs, color=colors, capsize=3)
            ax.axvline(0.0, color="k", linewidth=0.8)
            ax.set_yticks(range(len(labels)))
            ax.set_yticklabels([k[len(prefix) + 1:] if k.startswith(prefix + "/") else k for k in labels], fontsize=7)
            ax.set_xlabel(f"Δ {metric} vs base (pp, ± sem)")
            ax.set_title(prefix, fontsize=8)
            fig.tight_layout()
            path = out_dir / f"ablation_{_safe(prefix)}_{_safe(metric)}.png"
            _write_png(fig, path)
            plt.close(fig)
            paths.append(path)
    return paths


# --------------------------------------------------------------------------- TensorBoard hparams


def _flat(config: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        elif isinstance(value, bool) or isinstance(value, (int, float, str)):
            out[name] = value
        elif value is not None:
            out[name] = str(value)
    return out


def write_hparams(folder: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """One TensorBoard hparams summary per run under ``<folder>/hparams/<experiment>/seed<k>``."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    folder = Path(folder)
    out_dir = Path(out_dir) if out_dir else folder / "hparams"
    written = []
    for path, record in find_records(folder):
        run = row_label(folder, path)
        run_dir = out_dir / run / f"seed{record.get('seed', 0)}"
        params = _flat(record.get("config", {}))
        params["experiment"] = run
        metrics = {f"final/{k}": float(v) for k, v in record.get("metrics", {}).items() if isinstance(v, (int, float))}
        # the same run written again replaces its old event file instead of adding a duplicate
        if run_dir.exists():
            for old in run_dir.glob("events.out.tfevents.*"):
                old.unlink()
        writer = SummaryWriter(log_dir=str(run_dir))
        experiment, start, end = hparams(params, metrics)
        writer.file_writer.add_summary(experiment)
        writer.file_writer.add_summary(start)
        writer.file_writer.add_summary(end)
        for name, value in metrics.items():
            writer.add_scalar(name, value, 0)
        writer.close()
        written.append(run_dir)
    return written


# --------------------------------------------------------------------------- top level


def make_report(
    folder: str | Path,
    fmt: str = "md",
    error: str = "std",
    references: str | Path | None = DEFAULT_REFERENCES,
    plots: str | Path | None = None,
    tensorboard: bool = True,
    delta_m: list[str] | None = None,
) -> str:
    """The report text (tables, plus sweep selections for Markdown); plots and hparams as side effects.

    ``delta_m``: baseline experiment names for a Δm column (:func:`add_delta_m`).
    """
    if fmt not in RENDERERS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    rows = collect_rows(folder)
    if not rows:
        raise ConfigError(f"no {RECORD_NAME} found under {folder}")
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
            deltas = ablation_deltas(rows, metric)
            for prefix, entries in deltas.items():
                text += f"\n\nAblation '{prefix}' vs its base, {metric} (percentage points over matched seeds):\n\n"
                text += "| variant | Δ | ± sem | n | p (paired t) |\n|---|---|---|---|---|\n"
                for label, e in entries.items():
                    p = "n/a" if e["p"] is None else f"{e['p']:.3g}"
                    sem = "n/a" if math.isnan(e["sem"]) else f"{e['sem']:.1f}"
                    text += f"| {label} | {e['delta']:+.1f} | {sem} | {e['n']} | {p} |\n"
    if plots:
        plot_bars(tables, plots)
        plot_task_pairs(tables, plots)
        plot_learning_curves(rows, plots)
        plot_ablations(rows, tables, plots)
    if tensorboard:
        write_hparams(folder)
    return text
