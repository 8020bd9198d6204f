"""Where each row's figures came from: hardware, precision and training budget, read from the records."""
from __future__ import annotations

from dataclasses import dataclass

from .rows import Row


@dataclass
class Provenance:
    hardware: str
    budget: str
    labels: list[str]
    #: mean training seconds per run (None when no record says)
    seconds: float | None


def _hardware_text(record: dict) -> str:
    hw = record.get("hardware") or {}
    if not hw:
        return "not recorded"
    device = str(hw.get("device", "?"))
    # a run in reduced precision says so (records before the numerics field, and float32 runs, say nothing)
    precision = (record.get("numerics") or {}).get("precision")
    suffix = f", {precision} autocast" if precision and precision != "fp32" else ""
    if hw.get("gpu"):
        return f"{device}: {hw['gpu']}{suffix}"
    # records before the cpu_model field name only the architecture ("x86_64")
    cpu = hw.get("cpu_model") or hw.get("cpu", "?")
    return (f"{device}: {cpu}, {hw.get('cpu_count', '?')} cores, "
            f"{hw.get('torch_threads', '?')} torch thread(s){suffix}")


def _budget_text(record: dict) -> str:
    config = record.get("config") or {}
    train, data = config.get("train") or {}, config.get("data") or {}
    steps, epochs = record.get("steps"), record.get("epochs_run")
    if steps is None:
        return "not recorded"
    text = f"{steps} steps"
    if epochs:
        per_epoch = train.get("steps_per_epoch")
        each = f"{per_epoch} steps" if per_epoch else f"{steps // epochs} steps = one pass"
        text += f" ({epochs} epochs × {each})"
        if record.get("stopped_early"):
            text += ", stopped early"
    if data.get("batch_size"):
        text += f", batch {data['batch_size']}"
    if data.get("labels_per_class"):
        text += f", {data['labels_per_class']} labels per class"
    return text


def provenance(rows: list[Row]) -> list[Provenance]:
    """Rows grouped by the hardware and training budget their records state (one group per combination).

    A row whose seeds ran on different hardware or budgets appears in each group, marked with those seeds.
    """
    groups: dict[tuple[str, str], Provenance] = {}
    seconds: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        per_key: dict[tuple[str, str], list[int]] = {}
        for record in row.records:
            key = (_hardware_text(record), _budget_text(record))
            per_key.setdefault(key, []).append(record.get("seed", 0))
            if isinstance(record.get("train_seconds"), (int, float)):
                seconds.setdefault(key, []).append(float(record["train_seconds"]))
        for key, seeds in per_key.items():
            label = row.label if len(per_key) == 1 else f"{row.label} (seeds {', '.join(map(str, sorted(seeds)))})"
            groups.setdefault(key, Provenance(key[0], key[1], [], None)).labels.append(label)
    for key, group in groups.items():
        if seconds.get(key):
            group.seconds = sum(seconds[key]) / len(seconds[key])
    return list(groups.values())
