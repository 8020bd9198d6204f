"""Δm: the average relative improvement of a multi-task model over baselines.

Maninis, Radosavovic and Kokkinos, "Attentive Single-Tasking of Multiple
Tasks", CVPR 2019; Vandenhende et al., "Multi-Task Learning for Dense
Prediction Tasks: A Survey", TPAMI 2021.  With ``M_k`` the model's metric on
task ``k``, ``B_k`` the baseline's (usually the single-task model) and
``l_k = 1`` when lower is better for that metric (0 otherwise)::

    Δm = (1/K) Σ_k (−1)^{l_k} (M_k − B_k) / B_k × 100

So Δm is in percent and **higher is better**; this is the convention LibMTL
reports.  Some papers (e.g. Navon et al., "Multi-Task Learning as a
Bargaining Game" (Nash-MTL), ICML 2022, and work following it) report the
negated quantity, ``Δm% = −Δm``, for which lower is better: the numbers are
the same up to the sign flip (:func:`delta_m_lower_is_better`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping


def _direction(higher_is_better: bool | Mapping[str, bool], task: str) -> bool:
    if isinstance(higher_is_better, Mapping):
        if task not in higher_is_better:
            raise ValueError(f"Δm: higher_is_better has no entry for task '{task}'")
        value = higher_is_better[task]
    else:
        value = higher_is_better
    if not isinstance(value, bool):
        raise TypeError(f"Δm: higher_is_better for task '{task}' must be a bool, got {value!r}")
    return value


def relative_improvements(
    metrics: Mapping[str, float],
    baselines: Mapping[str, float],
    higher_is_better: bool | Mapping[str, bool],
) -> dict[str, float]:
    """Per-task ``(−1)^{l_k} (M_k − B_k) / B_k × 100`` (percent; positive = better than the baseline).

    ``metrics`` and ``baselines`` map task names to one number each (the
    task's primary metric); ``higher_is_better`` is one bool for all tasks or
    a bool per task (e.g. ``{name: spec.higher_is_better}`` from the task specs).
    The two mappings must name the same tasks.  A zero, negative or
    non-finite baseline, or a non-finite metric, is an error (the relative
    change is undefined, or its sign would no longer say better/worse).
    """
    if not baselines:
        raise ValueError("Δm: no baselines given")
    missing = sorted(set(baselines) - set(metrics))
    extra = sorted(set(metrics) - set(baselines))
    if missing:
        raise ValueError(f"Δm: no metric for task(s) {', '.join(missing)} (baselines name {', '.join(sorted(baselines))})")
    if extra:
        raise ValueError(f"Δm: no baseline for task(s) {', '.join(extra)} (baselines name {', '.join(sorted(baselines))})")
    result = {}
    for task, base in baselines.items():
        base, value = float(base), float(metrics[task])
        if not math.isfinite(base):
            raise ValueError(f"Δm: baseline for task '{task}' is not finite ({base})")
        if base == 0.0:
            raise ValueError(f"Δm: baseline for task '{task}' is 0, so the relative change is undefined")
        if base < 0.0:
            raise ValueError(
                f"Δm: baseline for task '{task}' is negative ({base}); dividing by it would flip the sign of the "
                "improvement, so Δm is only defined for positive metrics"
            )
        if not math.isfinite(value):
            raise ValueError(f"Δm: metric for task '{task}' is not finite ({value})")
        sign = 1.0 if _direction(higher_is_better, task) else -1.0
        result[task] = sign * (value - base) / base * 100.0
    return result


def delta_m(
    metrics: Mapping[str, float],
    baselines: Mapping[str, float],
    higher_is_better: bool | Mapping[str, bool],
) -> float:
    """Δm in percent, higher is better: the mean of :func:`relative_improvements` over tasks.

    Example: accuracy 0.80 vs baseline 0.75 (higher is better) and error
    0.9 vs 1.0 (lower is better) give (6.667 + 10) / 2 = 8.33.
    """
    improvements = relative_improvements(metrics, baselines, higher_is_better)
    return sum(improvements.values()) / len(improvements)


def delta_m_lower_is_better(
    metrics: Mapping[str, float],
    baselines: Mapping[str, float],
    higher_is_better: bool | Mapping[str, bool],
) -> float:
    """The negated convention (Nash-MTL's ``Δm%``, lower is better): exactly ``−delta_m(...)``."""
    return -delta_m(metrics, baselines, higher_is_better)
