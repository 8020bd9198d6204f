"""One TensorBoard hparams summary per run (``FOLDER/hparams``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .rows import find_records, row_label


def _flat(config: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        elif isinstance(value, bool) or isinstance(value, (int, float, str)):
            out[name] = value
        elif value is not None:
            out[name] = str(value)
    return out


def write_hparams(folder: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """One TensorBoard hparams summary per run under ``<folder>/hparams/<experiment>/seed<k>``."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    folder = Path(folder)
    out_dir = Path(out_dir) if out_dir else folder / "hparams"
    written = []
    for path, record in find_records(folder):
        run = row_label(folder, path)
        run_dir = out_dir / run / f"seed{record.get('seed', 0)}"
        params = _flat(record.get("config", {}))
        params["experiment"] = run
        metrics = {f"final/{k}": float(v) for k, v in record.get("metrics", {}).items() if isinstance(v, (int, float))}
        # the same run written again replaces its old event file instead of adding a duplicate
        if run_dir.exists():
            for old in run_dir.glob("events.out.tfevents.*"):
                old.unlink()
        writer = SummaryWriter(log_dir=str(run_dir))
        experiment, start, end = hparams(params, metrics)
        writer.file_writer.add_summary(experiment)
        writer.file_writer.add_summary(start)
        writer.file_writer.add_summary(end)
        for name, value in metrics.items():
            writer.add_scalar(name, value, 0)
        writer.close()
        written.append(run_dir)
    return written
