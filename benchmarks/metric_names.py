"""Rules on metric names that the harness applies in several places, kept in one place.

Records name their metrics ``<split>/<domain or task>/<metric>``: ``test/...`` on test splits,
``val/...`` on validation data; within validation, ``val/validator/<name>`` are the unsupervised
validators' scores and ``val/oracle/...`` figures computed from target labels (an upper bound,
never a selection criterion unless a run or sweep says it is an oracle).
"""
from __future__ import annotations

ORACLE_PREFIX = "val/oracle/"
VALIDATOR_PREFIX = "val/validator/"
#: the target accuracy the oracle validator records beside the validators' scores
ORACLE_TARGET_ACCURACY = f"{ORACLE_PREFIX}target_accuracy"


def reads_held_out_labels(metric: str) -> bool:
    """Whether ``metric`` is computed from test labels or target labels (selecting on it is an oracle)."""
    return metric.startswith("test/") or metric.startswith(ORACLE_PREFIX) or "/oracle/" in metric


def reported_metrics(record: dict) -> tuple[str, ...]:
    """The metrics a record's tables show: its config's ``report`` list, else its ``test/`` metrics sorted."""
    listed = (record.get("config") or {}).get("report")
    return tuple(listed) if listed else tuple(sorted(k for k in record["metrics"] if k.startswith("test/")))


#: a method's extra classifiers (MCD's F2) beside the model's head: ``<split>/<task>/<label>_<metric>``
#: with the head's name, the heads' ensemble or the best head as the label
#: (:mod:`benchmarks.problems.extra_heads`)
HEADS_ENSEMBLE = "heads_ensemble"
BEST_HEAD = "best_head"


def head_metric(task_prefix: str, head: str, metric: str) -> str:
    """The name of one classifier's metric: ``<prefix>/<task>`` + head ``f2`` + ``accuracy`` → ``<prefix>/<task>/f2_accuracy``."""
    return f"{task_prefix}/{head}_{metric}"


def best_head_metric(metric: str) -> str:
    """The metric of the best of a run's classifiers that goes with ``metric`` (``.../accuracy`` → ``.../best_head_accuracy``)."""
    task_prefix, name = metric.rsplit("/", 1)
    return head_metric(task_prefix, BEST_HEAD, name)
