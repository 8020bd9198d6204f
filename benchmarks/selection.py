"""Model selection, in one place: which checkpoint a run keeps and which configuration a sweep picks.

* A run keeps the checkpoint its ``train.selection_metric`` ranks best; :func:`check_selection_metric`
  refuses a metric computed from target labels unless the run is declared an oracle run.
* A sweep with a ``selection`` rule picks the configuration whose mean over seeds of a validation
  metric is best (:func:`select_configuration`); the oracle choice by each test metric is computed
  beside it as an upper bound and never used to pick (:func:`format_selection` shows both).

The per-epoch views of the same question for domain adaptation (each unsupervised validator's pick,
TLLib's best-on-test protocol) are :mod:`benchmarks.validator_selection` and
:mod:`benchmarks.selection_protocols`; the metric-name rules are :mod:`benchmarks.metric_names`.
"""
from __future__ import annotations

import math
import statistics

from .config import ConfigError
from .metric_names import ORACLE_PREFIX, reported_metrics


def check_selection_metric(selection_metric: str, oracle_selection: bool) -> None:
    """Refuse checkpoint selection on target labels unless the run is declared an oracle run."""
    if selection_metric.startswith(ORACLE_PREFIX) and not oracle_selection:
        raise ConfigError(
            f"train.selection_metric '{selection_metric}' selects checkpoints with target labels; that is an "
            "oracle upper bound, not unsupervised domain adaptation. Select on val/source/... or "
            "val/validator/<name>, or set train.oracle_selection=true to declare an explicit oracle run"
        )


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def select_configuration(
    records: list[dict], rule: dict, report_metrics: list[str] | None = None, experiments: list[str] | None = None
) -> dict | None:
    """Pick the best configuration of a sweep by a validation metric's mean over seeds.

    ``records`` are run records (``name``, ``seed``, ``metrics``); runs with the
    same ``name`` are one configuration.  Returns the chosen configuration, its
    mean selection value, the means of ``report_metrics`` (default: the
    records' ``report`` list), and the oracle: for each reported test metric,
    the configuration with the best mean test value (an upper bound, never a
    choice).
    """
    groups: dict[str, list[dict]] = {}
    for record in records:
        if experiments is None or record["name"] in experiments:
            groups.setdefault(record["name"], []).append(record)
    if not groups:
        return None
    metric, sign = rule["metric"], (1 if rule.get("mode", "max") == "max" else -1)
    scores = {}
    for name, recs in groups.items():
        values = [r["metrics"][metric] for r in recs if metric in r["metrics"]]
        if values:
            scores[name] = _mean(values)
    if not scores:
        available = sorted({k for recs in groups.values() for r in recs for k in r["metrics"]})
        raise ConfigError(f"selection metric '{metric}' is in no record; available: {', '.join(available)}")
    chosen = None
    for name in sorted(scores):  # ties go to the first name alphabetically
        if chosen is None or sign * scores[name] > sign * scores[chosen]:
            chosen = name
    if report_metrics is None:
        first = next(iter(groups.values()))[0]
        report_metrics = list(reported_metrics(first))

    def means(name):
        return {m: _mean([r["metrics"][m] for r in groups[name] if m in r["metrics"]]) for m in report_metrics}

    oracle = {}
    for m in report_metrics:
        per = {n: _mean([r["metrics"][m] for r in recs if m in r["metrics"]]) for n, recs in groups.items()}
        per = {n: v for n, v in per.items() if not math.isnan(v)}
        if per:
            best = max(per, key=lambda n: sign * per[n])
            oracle[m] = {"experiment": best, "value": per[best]}
    return {
        "rule": dict(rule),
        "chosen": chosen,
        "selection_value": scores[chosen],
        "seeds": sorted(r["seed"] for r in groups[chosen]),
        "configurations": len(groups),
        "metrics": means(chosen),
        "oracle": oracle,
        "scores": scores,
    }


def format_selection(name: str, result: dict | None) -> str:
    """A Markdown section for one sweep's selection (values in %)."""
    if result is None:
        return f"Sweep '{name}': no records to select from."
    rule = result["rule"]
    label = "oracle selection (test labels; an upper bound, not a method)" if rule.get("oracle") else "selection"
    lines = [
        f"Sweep '{name}' {label}: best of {result['configurations']} configuration(s) by the mean over seeds of "
        f"{rule['metric']} ({rule.get('mode', 'max')}): **{result['chosen']}** "
        f"({100 * result['selection_value']:.1f}, seeds {result['seeds']})",
        "",
        "| metric | selected | oracle (upper bound) | oracle configuration |",
        "|---|---|---|---|",
    ]
    for metric, value in result["metrics"].items():
        o = result["oracle"].get(metric)
        lines.append(
            f"| {metric} | {100 * value:.1f} | {100 * o['value']:.1f} | {o['experiment']} |" if o else f"| {metric} | {100 * value:.1f} | n/a | |"
        )
    return "\n".join(lines)
