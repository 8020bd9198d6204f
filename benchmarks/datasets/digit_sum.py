"""``multidigits-sum``: the embedded two-digit canvases with a third task of another kind and scale.

The canvases and the ``left`` / ``right`` classification tasks are exactly
``multidigits``'s (:func:`benchmarks.datasets.embedded.load_multidigits`:
two scikit-learn 8×8 digits on a 12×12 canvas, after the MultiMNIST
construction of Sener & Koltun, NeurIPS 2018).  The third task, ``sum``,
regresses ``left + right`` (0–18) in raw units with mean squared error, so its
loss starts near 100 while the cross-entropies start near log 10 ≈ 2.3: tasks
whose loss scales differ by orders of magnitude, the situation loss weighting
is for (Kendall et al., CVPR 2018, weigh a regression and classifications the
same way).  ``sum_scale`` multiplies the regression target (default 1, raw
digit units); the reported metrics (MSE, MAE) are in those scaled units.
Deterministic for ``data.data_seed``.
"""
from __future__ import annotations

from mtl.tasks import RegressionTask

from .base import ImageDataset, ImageSplit
from .embedded import load_multidigits


def load_multidigits_sum(data_seed: int = 0, sum_scale: float = 1.0) -> ImageDataset:
    if not sum_scale > 0:
        raise ValueError(f"sum_scale must be positive, got {sum_scale}")
    base = load_multidigits(data_seed)

    def with_sum(split: ImageSplit) -> ImageSplit:
        total = (split.labels["left"] + split.labels["right"]).float() * float(sum_scale)
        return ImageSplit(split.images, {**split.labels, "sum": total})

    tasks = {**base.tasks, "sum": RegressionTask(name="sum")}
    return ImageDataset(
        "multidigits-sum", with_sum(base.train), with_sum(base.test), tasks,
        "two overlaid 8×8 digits: left and right digit (classification) and their sum (regression, raw units)",
    )
