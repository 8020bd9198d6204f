"""The Δm column: mean relative improvement over single-task baselines found beside each row."""
from __future__ import annotations

from mtl.metrics import delta_m

from ..config import ConfigError
from .rows import Row, metric_columns
from .stats import lower_is_better


DELTA_M = "Δm"


def baseline_rows(row: Row, names: list[str], by_label: dict[str, Row]) -> list[Row]:
    """The baseline rows that serve ``row``: for each name, the row labelled ``P/name``
    with ``P`` the longest leading part of ``row``'s label (whole path components,
    possibly none) for which such a row exists.

    So with ``--delta-m single/left single/right``, ``multimnist/mtl/equal`` is
    compared with ``multimnist/single/left`` and ``multimnist/single/right``,
    and ``mtl/equal`` with ``single/left`` and ``single/right``.
    """
    parts = row.label.split("/")
    found = []
    for name in names:
        for cut in range(len(parts) - 1, -1, -1):
            candidate = by_label.get("/".join([*parts[:cut], name]))
            if candidate is not None:
                found.append(candidate)
                break
    return found


def add_delta_m(rows: list[Row], names: list[str]) -> dict[str, str]:
    """Set ``row.derived[DELTA_M]`` (seed → Δm %) on every row that has baselines for all its metrics.

    Each seed's task metrics are compared with the baselines' means over their
    seeds, so the mean over seeds equals Δm of the mean metrics, and the
    spread is the row's own seed-to-seed spread.  The task metrics are the
    row's reported columns; each must come from exactly one baseline (the
    single-task run of that task).  Returns ``label → why`` for the rows
    that get no Δm (baselines themselves, or a baseline not run yet).
    """
    by_label = {r.label: r for r in rows}
    unknown = [n for n in names if not any(label == n or label.endswith("/" + n) for label in by_label)]
    if unknown:
        raise ConfigError(
            f"Δm baseline(s) {', '.join(unknown)} match no experiment in the report; "
            f"experiments: {', '.join(sorted(by_label))}"
        )
    skipped: dict[str, str] = {}
    for row in rows:
        baselines = baseline_rows(row, names, by_label)
        if row in baselines:
            skipped[row.label] = "baseline"
            continue
        metrics = metric_columns(row)
        reference: dict[str, float] = {}
        source: dict[str, str] = {}
        for base in baselines:
            for metric in metrics:
                values = base.values(metric)
                if not values:
                    continue
                if metric in reference:
                    raise ConfigError(
                        f"Δm for '{row.label}': both '{source[metric]}' and '{base.label}' report {metric}; "
                        "give one baseline per task"
                    )
                reference[metric] = sum(values.values()) / len(values)
                source[metric] = base.label
        missing = [m for m in metrics if m not in reference]
        if missing:
            skipped[row.label] = f"no baseline reports {', '.join(missing)}"
            continue
        per_seed = [row.values(m) for m in metrics]
        seeds = sorted(set.intersection(*(set(v) for v in per_seed)))
        higher = {m: not lower_is_better(m) for m in metrics}
        row.derived[DELTA_M] = {
            seed: delta_m({m: v[seed] for m, v in zip(metrics, per_seed)}, reference, higher) for seed in seeds
        }
    return skipped
