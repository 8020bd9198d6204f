"""Scores of a method's own classifiers (MCD's F2) beside the model's head, on one classification task.

A method may train classifiers of its own on the shared features
(:meth:`adapt.methods.base.AdaptationMethod.evaluation_heads`). Papers and reference scripts
report them: Saito et al. (MCD, CVPR 2018) give F1, F2 and their ensemble, and
Transfer-Learning-Library's ``mcd.py`` reports the better of F1 and F2 on the test set. For a
task ``t`` and an extra head ``h`` the metrics are, beside the model's ``<prefix>/t/accuracy``:

- ``<prefix>/t/h_accuracy``: head ``h`` alone;
- ``<prefix>/t/heads_ensemble_accuracy``: the prediction of the sum of the model head's and every
  extra head's logits, as the MCD authors' code forms its ensemble (mil-tokyo/MCD_DA,
  ``classification/solver.py``, ``test``: ``output1 + output2``); no labels choose it;
- ``<prefix>/t/best_head_accuracy``: the best of the model's head and the extra heads, which is a
  choice made with the labels of the split it is computed on (on a test split: an upper bound,
  like selecting an epoch on test).
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mtl import ClassificationTask

from ..metric_names import BEST_HEAD as BEST
from ..metric_names import HEADS_ENSEMBLE as ENSEMBLE
from ..metric_names import head_metric


def extra_head_metric_names(tasks: Mapping[str, object], head_names, prefix: str) -> list[str]:
    """The keys :func:`extra_head_metrics` returns, known before training."""
    head_names = list(head_names)
    if not head_names:
        return []
    (task_name, task), = _single_classification_task(tasks).items()
    labels = [*head_names, ENSEMBLE, BEST]
    return [head_metric(f"{prefix}/{task_name}", label, metric) for label in labels for metric in task.metric_names]


def _single_classification_task(tasks: Mapping[str, object]) -> Mapping[str, ClassificationTask]:
    if len(tasks) != 1 or not isinstance(next(iter(tasks.values())), ClassificationTask):
        raise ValueError(
            "a method's extra classifiers are scored on one single-label classification task; "
            f"this problem has {', '.join(f'{n} ({type(t).__name__})' for n, t in tasks.items())}"
        )
    return tasks


@contextlib.contextmanager
def _evaluation_mode(modules: Mapping[str, nn.Module]):
    """Inside: every module in eval mode (dropout off, batch norm on its running statistics); restored after."""
    modes = {name: [m.training for m in module.modules()] for name, module in modules.items()}
    try:
        for module in modules.values():
            module.eval()
        yield
    finally:
        for name, module in modules.items():
            for layer, was_training in zip(module.modules(), modes[name]):
                layer.train(was_training)


@torch.no_grad()
def extra_head_metrics(
    tasks: Mapping[str, object],
    heads: Mapping[str, nn.Module],
    model_logits: Mapping[str, Tensor],
    features: Tensor,
    labels: Mapping[str, Tensor],
    prefix: str,
    batch_size: int = 4096,
) -> dict[str, float]:
    """Each extra head's metrics, the heads' ensemble and the best head, from features already collected.

    ``model_logits`` are the model head's outputs on the same images as ``features`` (one pass,
    :func:`benchmarks.problems.base.collect_outputs` with ``with_features=True``); the extra
    heads are applied to ``features`` in eval mode, ``batch_size`` rows at a time.
    """
    if not heads:
        return {}
    (task_name, task), = _single_classification_task(tasks).items()
    target = labels[task_name]
    logits = {"": model_logits[task_name].float()}
    with _evaluation_mode(heads):
        for name, head in heads.items():
            chunks = [head(part) for part in features.split(batch_size)]
            logits[name] = torch.cat(chunks).float()
    per_head = {name: task.metrics(value, target) for name, value in logits.items()}
    ensemble = task.metrics(torch.stack(list(logits.values())).sum(dim=0), target)
    task_prefix = f"{prefix}/{task_name}"
    metrics: dict[str, float] = {}
    for name in heads:
        for metric, value in per_head[name].items():
            metrics[head_metric(task_prefix, name, metric)] = value
    for metric, value in ensemble.items():
        metrics[head_metric(task_prefix, ENSEMBLE, metric)] = value
    pick = max if task.higher_is_better else min
    for metric in task.metric_names:
        metrics[head_metric(task_prefix, BEST, metric)] = pick(scores[metric] for scores in per_head.values())
    return metrics
