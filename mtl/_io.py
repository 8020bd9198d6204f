"""Small file helpers shared by the library and the harness."""
from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path

import torch


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(path: str | Path, payload: dict) -> Path:
    """``torch.save`` into memory, then :func:`atomic_write_bytes`."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


class CheckpointReadError(RuntimeError):
    """A checkpoint cannot be used: damaged or truncated, or it holds objects a weights-only load refuses.

    The message is one line that names the file.
    """


def load_weights_only(path: str | Path, map_location="cpu"):
    """``torch.load(path, weights_only=True)``, with a one-line :class:`CheckpointReadError` naming ``path``.

    A file that asks to run code when unpickled (a malicious or foreign
    pickle) is refused, never executed; a damaged or truncated file is
    reported as such.  A missing file stays a ``FileNotFoundError``.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - torch raises many types; re-raised with the path
        raise CheckpointReadError(_unreadable_reason(path, error)) from error


def _unreadable_reason(path: Path, error: Exception) -> str:
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if unsafe:
        return (
            f"{path}: refused: it asks to run {unsafe.group(1)} when loaded, which a weights-only load never does "
            "(the file was not written as plain tensors and may be malicious); delete or replace it"
        )
    first_line = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    detail = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    return f"{path}: cannot be read, the file is truncated or damaged ({detail}); delete or replace it"
