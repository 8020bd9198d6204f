"""The multi-task trade-off picture: each weighting strategy as one point, the single-task networks as another.

With classification tasks and a regression task, the x axis is the mean
classification accuracy and the y axis the regression error (drawn with
lower values higher up), so up and to the right is better on both and a
strategy's position says which task it favours.  Error bars: sample
standard deviation over seeds.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Point:
    """Per-seed values of one strategy (or of the single-task networks) on the two axes."""

    label: str
    x: Sequence[float]
    y: Sequence[float]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def tradeoff_figure(points: Sequence[Point], reference: Point, x_label: str, y_label: str,
                    highlight: Mapping[str, str] | None = None):
    """Scatter of ``points`` (mean ± std over seeds) with ``reference`` (the single-task networks) as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not points:
        raise ValueError("no strategies to draw")
    highlight = dict(highlight or {})
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    for i, point in enumerate(points):
        (x, x_err), (y, y_err) = _mean_std(point.x), _mean_std(point.y)
        colour = highlight.get(point.label, f"C{i % 10}")
        ax.errorbar(x, y, xerr=x_err, yerr=y_err, fmt="o", color=colour, capsize=3, markersize=6, label=point.label)
    (x, x_err), (y, y_err) = _mean_std(reference.x), _mean_std(reference.y)
    ax.errorbar(x, y, xerr=x_err, yerr=y_err, fmt="*", color="k", markersize=13, capsize=3, label=reference.label)
    ax.legend(fontsize=8, loc="best")
    ax.invert_yaxis()  # lower error is better: up and to the right is better on both axes
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"{y_label}\n(lower is better, drawn upwards)")
    ax.grid(alpha=0.3)
    ax.set_title("mean ± std over seeds; ★ one single-task network per task", fontsize=9)
    fig.tight_layout()
    return fig
