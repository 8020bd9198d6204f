"""Report plots: bars, task-pair trade-offs, learning curves and ablation deltas (PNG)."""
from __future__ import annotations

import math
from pathlib import Path

from .delta_m import DELTA_M
from .rows import Row
from .stats import metric_scale, paired_difference
from .tables import Table, file_prefix, safe_filename


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_png(fig, path: Path) -> None:
    from ..records import atomic_save_png  # imported here: the report module itself does not need torch

    atomic_save_png(fig, path)


def _axis_label(metric: str) -> str:
    return f"{metric} (%)" if metric_scale(metric) == 100.0 else metric


def plot_bars(tables: list[Table], out_dir: str | Path) -> list[Path]:
    """One bar chart per metric: mean per experiment with the table's error bars."""
    plt = pyplot()
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
            path = out_dir / f"bars_{file_prefix(tables, table)}{safe_filename(metric)}.png"
            write_png(fig, path)
            plt.close(fig)
            paths.append(path)
    return paths


def plot_task_pairs(tables: list[Table], out_dir: str | Path) -> list[Path]:
    """For tables with two task columns: one point per experiment (mean, error bars on both axes).

    Rows reporting only one of the two (single-task baselines) are drawn as a
    dashed line at their mean, so points above and right of both lines beat them.
    """
    plt = pyplot()
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
        path = out_dir / f"tasks_{file_prefix(tables, table)}{safe_filename(x_metric)}_vs_{safe_filename(y_metric)}.png"
        write_png(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_learning_curves(rows: list[Row], out_dir: str | Path) -> list[Path]:
    """Validation metrics per epoch from the records' ``history``: mean over seeds, one line per experiment."""
    plt = pyplot()
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
        path = out_dir / f"curves_{safe_filename(metric)}.png"
        write_png(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def ablation_groups(rows: list[Row], base_name: str = "base") -> dict[str, tuple[Row, list[Row]]]:
    """``prefix → (base row, variant rows)`` for every ``<prefix>/<base_name>`` row; the variants are the
    rows beside it (``<prefix>/<other>``, one level, so ``m2u/dann/fp32`` is compared with
    ``m2u/dann/bf16`` but not with ``m2mm/dann/bf16``)."""
    by_label = {r.label: r for r in rows}
    groups = {}
    for label, row in by_label.items():
        if label == base_name or label.endswith("/" + base_name):
            prefix = label[: -len(base_name)]
            variants = [r for r in rows if r.label.startswith(prefix) and r.label != label and "/" not in r.label[len(prefix):]]
            if variants:
                groups[prefix.rstrip("/") or "."] = (row, variants)
    return groups


def ablation_deltas(rows: list[Row], metric: str, base_name: str = "base") -> dict[str, dict[str, dict]]:
    """Per group of :func:`ablation_groups`: variant → mean difference to the base over matched seeds (in the
    metric's display unit: percentage points for accuracies), its sem, n, paired-t p and the per-seed differences."""
    out = {}
    for prefix, (base, variants) in ablation_groups(rows, base_name).items():
        b = base.values(metric)
        entries = {}
        for variant in variants:
            difference = paired_difference(variant.values(metric), b)  # Row.values is in display units already
            if difference is not None:
                entries[variant.label] = difference
        if entries:
            out[prefix] = entries
    return out


def plot_ablations(rows: list[Row], tables: list[Table], out_dir: str | Path) -> list[Path]:
    """Horizontal bars: each ablation's change vs the base (percentage points, ± sem over matched seeds)."""
    plt = pyplot()
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
            path = out_dir / f"ablation_{safe_filename(prefix)}_{safe_filename(metric)}.png"
            write_png(fig, path)
            plt.close(fig)
            paths.append(path)
    return paths
