"""Statistics over seeds: mean ± std / sem / 95 % CI half-width, paired t-tests, metric units."""
from __future__ import annotations

import math


ERRORS = ("std", "sem", "ci95")


ALPHA = 0.05


def summary(values: list[float], error: str = "std") -> dict[str, float]:
    """Mean, the chosen error (std | sem | ci95 half-width) and n of a list of values."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n if n else float("nan")
    if n < 2:
        return {"mean": mean, "error": float("nan"), "n": n, "std": float("nan"), "sem": float("nan"), "ci95": float("nan")}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    sem = std / math.sqrt(n)
    ci95 = float(stats.t.ppf(0.975, n - 1)) * sem
    chosen = {"std": std, "sem": sem, "ci95": ci95}[error]
    return {"mean": mean, "error": chosen, "n": n, "std": std, "sem": sem, "ci95": ci95}


def paired_p_value(a: dict[int, float], b: dict[int, float]) -> float | None:
    """Two-sided paired t-test over the seeds both have; None with fewer than 2 matched seeds.

    Differences that are all equal (zero variance) give p = 0 if they are
    non-zero and p = 1 if they are zero, instead of scipy's nan.
    """
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    x, y = [a[s] for s in seeds], [b[s] for s in seeds]
    diffs = [u - v for u, v in zip(x, y)]
    if max(diffs) - min(diffs) < 1e-12:
        return 0.0 if abs(diffs[0]) > 1e-12 else 1.0
    return float(stats.ttest_rel(x, y).pvalue)


def paired_difference(row: dict[int, float], base: dict[int, float]) -> dict | None:
    """``row − base`` seed by seed over the seeds both have: mean, its sem, n, the paired-t p and the
    per-seed differences; None when no seed is shared."""
    seeds = sorted(set(row) & set(base))
    if not seeds:
        return None
    diffs = [row[s] - base[s] for s in seeds]
    s = summary(diffs, "sem")
    return {"delta": s["mean"], "sem": s["sem"], "n": len(seeds), "p": paired_p_value(row, base),
            "per_seed": dict(zip(seeds, diffs))}


#: metrics in their own units (regression errors), not fractions shown in %
UNIT_METRICS = ("mse", "mae", "rmse")


def metric_scale(metric: str) -> float:
    """100 for metrics stored as fractions (shown in %), 1 for :data:`UNIT_METRICS` (``test/sum/mae``)."""
    return 1.0 if metric.rsplit("/", 1)[-1].lower() in UNIT_METRICS else 100.0


def lower_is_better(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1].lower() in UNIT_METRICS or any(
        word in metric.lower() for word in ("loss", "error", "err")
    )
