"""A *problem* turns data and a model into named loss terms and evaluation metrics.

Domain adaptation and multi-task learning differ only here; the engine that
consumes the terms is shared.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mtl.model import MultiTaskModel
from mtl.tasks import TaskSpec

from ..batching import Preprocess, iterate_in_order
from ..datasets.base import ImageSplit


class Problem(nn.Module):
    """Base class: holds the model (and any method networks) as submodules."""

    model: MultiTaskModel

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def training_terms(self, progress: float, step: int = 0) -> tuple[dict[str, Tensor], Tensor]:
        """One training batch → (named loss terms, shared representation).

        ``progress`` ∈ [0, 1] is the fraction of the run done, ``step`` the absolute step
        (schedules that do not scale with the run's length read the latter)."""
        raise NotImplementedError

    #: True when the problem performs its own optimiser step (see :meth:`update_step`)
    owns_update: bool = False

    def update_step(self, progress: float, optimizer) -> dict[str, Tensor]:
        raise NotImplementedError

    def evaluate(self, split: str) -> dict[str, float]:
        raise NotImplementedError

    def metric_names(self, split: str) -> list[str] | None:
        """The keys :meth:`evaluate` returns for ``split``, known before training (None: not known)."""
        return None

    def term_names(self) -> list[str]:
        """Names of the loss terms :meth:`training_terms` returns, known before training."""
        return list(self.tasks)

    def diagnostics(self) -> dict[str, float]:
        return {}

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.model.shared_parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        shared = {id(p) for p in self.shared_parameters()}
        return [p for p in self.parameters() if id(p) not in shared]

    def batcher_state(self) -> dict:
        return {}

    def load_batcher_state(self, state: dict) -> None:
        pass


@torch.no_grad()
def collect_outputs(
    model, split, preprocess: Preprocess, batch_size: int, device, workers: int = 0, with_features: bool = False
) -> tuple[dict[str, Tensor], Tensor | None, dict[str, Tensor]]:
    """One in-order pass in eval mode → (outputs per head, features or None, labels per task), on the device.

    Only the labels the split carries come back, so a split stripped of its
    labels yields none.  The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    outputs: dict[str, list[Tensor]] = {}
    labels: dict[str, list[Tensor]] = {}
    features: list[Tensor] = []
    try:
        for images, batch_labels in iterate_in_order(split, batch_size, device, workers):
            if with_features:
                predictions, batch_features = model(preprocess(images), return_features=True)
                features.append(batch_features.float().flatten(1))
            else:
                predictions = model(preprocess(images))
            for name, value in predictions.items():
                outputs.setdefault(name, []).append(value.float())
            for name, value in batch_labels.items():
                labels.setdefault(name, []).append(value)
    finally:
        model.train(was_training)
    cat = lambda parts: {name: torch.cat(chunks) for name, chunks in parts.items()}  # noqa: E731
    return cat(outputs), (torch.cat(features) if with_features else None), cat(labels)


def evaluate_tasks(
    model: MultiTaskModel,
    split: ImageSplit,
    tasks: Mapping[str, TaskSpec],
    preprocess: Preprocess,
    batch_size: int,
    device,
    prefix: str,
    workers: int = 0,
) -> dict[str, float]:
    """``{prefix}/{task}/{metric}`` for every task, plus ``{prefix}/mean/{metric}`` for metrics all tasks share."""
    outputs, _, targets = collect_outputs(model, split, preprocess, batch_size, device, workers)
    return task_metrics(tasks, outputs, targets, prefix)


def task_metric_names(tasks: Mapping[str, TaskSpec], prefix: str) -> list[str]:
    """The keys :func:`task_metrics` returns for ``tasks``, without any data."""
    names = [f"{prefix}/{name}/{metric}" for name, task in tasks.items() for metric in task.metric_names]
    if len(tasks) > 1:
        shared = set.intersection(*(set(task.metric_names) for task in tasks.values()))
        names += [f"{prefix}/mean/{metric}" for metric in sorted(shared)]
    return names


def task_metrics(
    tasks: Mapping[str, TaskSpec], outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], prefix: str
) -> dict[str, float]:
    """The metrics of :func:`evaluate_tasks` from outputs and labels already collected."""
    metrics: dict[str, float] = {}
    per_task = {}
    for name, task in tasks.items():
        per_task[name] = task.metrics(outputs[name], targets[name])
        for metric, value in per_task[name].items():
            metrics[f"{prefix}/{name}/{metric}"] = value
    if len(tasks) > 1:
        shared = set.intersection(*(set(m) for m in per_task.values()))
        for metric in sorted(shared):
            metrics[f"{prefix}/mean/{metric}"] = sum(m[metric] for m in per_task.values()) / len(per_task)
    return metrics
