"""Task specifications: what a head predicts, its loss and its metrics.

A task spec is pure data plus three functions (``make_head``, ``loss``,
``metrics``), so the same spec drives a model in a user's own loop and in the
benchmark harness.  Every metric dictionary names its primary metric and
whether higher is better, which the Δm computation and early stopping need.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class TaskSpec:
    """Base class; subclasses fix the output size, loss and metrics."""

    name: str

    #: name of the metric used for model selection and Δm
    primary_metric: str = "accuracy"
    #: direction of the primary metric
    higher_is_better: bool = True
    #: the keys :meth:`metrics` returns, known before any output exists (to check metric names in configs)
    metric_names: ClassVar[tuple[str, ...]] = ()

    @property
    def output_size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_head(self, in_features: int) -> nn.Module:
        """A linear head; architectures that want deeper heads build their own."""
        return nn.Linear(in_features, self.output_size)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class ClassificationTask(TaskSpec):
    """Single-label classification with cross-entropy; metric: accuracy."""

    num_classes: int = 2
    label_smoothing: float = 0.0
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy",)

    @property
    def output_size(self) -> int:
        return self.num_classes

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output, target, label_smoothing=self.label_smoothing)

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        return {"accuracy": (output.argmax(dim=1) == target).float().mean().item()}


@dataclass(frozen=True)
class MultiLabelTask(TaskSpec):
    """Independent binary labels (binary classification when ``num_labels=1``).

    Loss: mean binary cross-entropy on logits.  Metrics: element-wise
    accuracy at threshold 0 on the logits and exact-match (subset) accuracy.
    """

    num_labels: int = 1
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy", "subset_accuracy")

    @property
    def output_size(self) -> int:
        return self.num_labels

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(output, target.reshape(output.shape).float())

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        predicted = output > 0
        truth = target.reshape(output.shape) > 0.5
        correct = predicted == truth
        return {
            "accuracy": correct.float().mean().item(),
            "subset_accuracy": correct.all(dim=1).float().mean().item(),
        }


@dataclass(frozen=True)
class RegressionTask(TaskSpec):
    """Real-valued targets with mean squared error; metrics: MSE and MAE (lower is better)."""

    dim: int = 1
    primary_metric: str = "mse"
    higher_is_better: bool = False
    metric_names: ClassVar[tuple[str, ...]] = ("mse", "mae")

    @property
    def output_size(self) -> int:
        return self.dim

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(output, target.reshape(output.shape).to(output.dtype))

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        diff = output - target.reshape(output.shape).to(output.dtype)
        return {"mse": diff.pow(2).mean().item(), "mae": diff.abs().mean().item()}


TASK_KINDS: dict[str, type[TaskSpec]] = {
    "classification": ClassificationTask,
    "multilabel": MultiLabelTask,
    "binary": MultiLabelTask,
    "regression": RegressionTask,
}


def accumulate_metrics(task: TaskSpec, outputs: list[Tensor], targets: list[Tensor]) -> dict[str, float]:
    """Metrics over a whole split from per-batch outputs (concatenated, so exact)."""
    return task.metrics(torch.cat(outputs), torch.cat(targets))
