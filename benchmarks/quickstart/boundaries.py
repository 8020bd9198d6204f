"""Decision boundaries of trained two-dimensional domain-adaptation runs, side by side.

The picture of Ganin et al. (JMLR 2016, §5.1, their Fig. 2) for the
inter-twinning moons: for each method, the region each class is predicted in,
the boundary between them, the labelled source points and the target test
points coloured by their true class, so a target point on the wrong side of
the line is a mistake one can see.  Target labels colour the picture only;
nothing here feeds back into training or selection.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..datasets.base import ImageSplit
from ..problems.base import collect_outputs

CLASS_COLOURS = ("tab:blue", "tab:orange")


@dataclass
class Panel:
    """One trained run to draw: ``title`` above, ``problem`` a DomainAdaptationProblem with its weights loaded."""

    title: str
    problem: object


def _points(split: ImageSplit) -> np.ndarray:
    if split.images.dtype != torch.float32 or tuple(split.images.shape[1:]) != (2, 1, 1):
        raise ValueError(f"decision boundaries need 2-D points (N, 2, 1, 1 float32), got {tuple(split.images.shape)}")
    return split.images.view(-1, 2).numpy()


def class_one_probability(problem, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """P(class 1) of ``problem``'s model at every point of the grid ``xs × ys`` (as deployed on the target)."""
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)
    split = ImageSplit(torch.from_numpy(grid).view(-1, 2, 1, 1), {})
    (task,) = problem.tasks
    with problem.target_statistics():
        outputs, _, _ = collect_outputs(problem.model, split, problem.preprocess, 8192, problem.device)
    logits = outputs[task]
    if logits.shape[1] != 2:
        raise ValueError(f"decision boundaries need a two-class task, '{task}' has {logits.shape[1]} outputs")
    return logits.softmax(dim=1)[:, 1].reshape(len(ys), len(xs)).cpu().numpy()


def decision_boundary_figure(panels: list[Panel] | list[list[Panel]], resolution: int = 200):
    """A matplotlib figure: one panel per run, in the order given; a list of lists draws one row per list."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    grid = [list(row) for row in panels] if panels and isinstance(panels[0], (list, tuple)) else [list(panels)]
    if not grid or not all(grid):
        raise ValueError("no runs to draw")
    panels = [panel for row in grid for panel in row]
    data = []
    for panel in panels:
        p = panel.problem
        (task,) = p.tasks
        data.append((_points(p.source_train), p.source_train.labels[task].numpy(),
                     _points(p.target_test), p.target_test.labels[task].numpy()))
    every = np.concatenate([np.concatenate([s, t]) for s, _, t, _ in data])
    low, high = every.min(axis=0) - 0.4, every.max(axis=0) + 0.4
    xs, ys = np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution)
    columns = max(len(row) for row in grid)
    fig, axes = plt.subplots(len(grid), columns, figsize=(3.6 * columns, 3.1 * len(grid) + 0.3), squeeze=False)
    regions = ListedColormap(["#c6dbef", "#fdd0a2"])  # light blue / light orange: predicted class 0 / 1
    cells = [axes[r][c] for r, row in enumerate(grid) for c in range(len(row))]
    for ax in axes.flat:
        if not any(ax is cell for cell in cells):
            ax.set_visible(False)
    for ax, panel, (source, source_y, target, target_y) in zip(cells, panels, data):
        probability = class_one_probability(panel.problem, xs, ys)
        ax.contourf(xs, ys, probability, levels=[0.0, 0.5, 1.0], cmap=regions)
        ax.contour(xs, ys, probability, levels=[0.5], colors="k", linewidths=1.2)
        for c, colour in enumerate(CLASS_COLOURS):
            ax.scatter(*source[source_y == c].T, s=5, c=colour, alpha=0.35, linewidths=0)
            ax.scatter(*target[target_y == c].T, s=9, c=colour, marker="x", linewidths=0.8)
        ax.set_title(panel.title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        plt.Line2D([], [], ls="", marker="o", color="grey", alpha=0.5, label="source (labelled, training)"),
        plt.Line2D([], [], ls="", marker="x", color="grey", label="target (test; colour = true class)"),
        plt.Line2D([], [], color="k", label="decision boundary"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.3 / (3.1 * len(grid) + 0.3), 1, 1))
    return fig
