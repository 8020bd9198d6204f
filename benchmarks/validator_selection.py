"""What each unsupervised validator would have picked, next to the oracle (domain adaptation).

Every validation of a domain-adaptation run records each validator's score
(``val/validator/<name>``, higher is better for all of them) and the target
accuracy on the same unlabelled target-train images (``val/oracle/target_accuracy``)
in the run's ``history``.  For each validator this picks the epoch (checkpoint)
with the best score and reports the target accuracy there; the oracle column
is the best target accuracy over all epochs, an upper bound no unsupervised
procedure can claim.  The gap between a validator and the oracle is the cost of
selecting without target labels (Musgrave et al., "Unsupervised Domain
Adaptation: A Reality Check", 2021, found it often larger than the differences
between methods).

    mtlda report runs/digits_da --validators

Note the accuracies here are on the target *training* images the validators
see (at most ``train.validator_samples`` of them), not the target test split.
"""
from __future__ import annotations

from pathlib import Path

from .metric_names import ORACLE_TARGET_ACCURACY as ORACLE
from .metric_names import VALIDATOR_PREFIX as PREFIX
from .report import Row, collect_rows
from .report.tables import markdown_lines, mean_error_text


def picked_accuracy(history: list[dict], validator: str) -> float | None:
    """Target accuracy (%) at the epoch with the best ``validator`` score (the first on ties)."""
    scored = [h for h in history if f"{PREFIX}{validator}" in h and ORACLE in h]
    if not scored:
        return None
    best = max(scored, key=lambda h: h[f"{PREFIX}{validator}"])
    return 100.0 * best[ORACLE]


def oracle_accuracy(history: list[dict]) -> float | None:
    values = [h[ORACLE] for h in history if ORACLE in h]
    return 100.0 * max(values) if values else None


def validators_of(rows: list[Row]) -> list[str]:
    names: set[str] = set()
    for row in rows:
        for record in row.records:
            for epoch in record.get("history", []):
                names.update(k[len(PREFIX):] for k in epoch if k.startswith(PREFIX))
    return sorted(names)


def validator_table(folder: str | Path, error: str = "std") -> str:
    """A Markdown table: rows = experiments, columns = validators + oracle, mean ± error over seeds."""
    rows = [r for r in collect_rows(folder) if any(ORACLE in h for rec in r.records for h in rec.get("history", []))]
    if not rows:
        return (f"No domain-adaptation records with per-epoch validator scores and {ORACLE} under {folder} "
                "(the oracle validator must be among train.validators).")
    names = validators_of(rows)
    table = []
    for row in sorted(rows, key=lambda r: r.label):
        cells = [row.label, str(len(row.records))]
        for name in [*names, None]:
            values = [v for v in (
                oracle_accuracy(rec["history"]) if name is None else picked_accuracy(rec["history"], name)
                for rec in row.records) if v is not None]
            cells.append(mean_error_text(values, error, empty="—"))
        table.append(cells)
    lines = markdown_lines(["experiment", "n", *names, "oracle (upper bound)"], table)
    lines += [
        "",
        f"Target accuracy (%) on the validators' target-train images at the epoch each validator scores best, "
        f"mean ± {error} over seeds; the oracle column is the best epoch by target labels (an upper bound, "
        "never used for selection). Epoch-level checkpoints only.",
    ]
    return "\n".join(lines)
