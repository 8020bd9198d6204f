"""Atomic files and the provenance that goes into every run record."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from mtl._io import (  # noqa: F401  (re-exported for the harness)
    CheckpointReadError,
    atomic_torch_save,
    atomic_write_bytes,
    load_weights_only,
)


class RunFileError(RuntimeError):
    """A file in a run folder (``record.json``, a checkpoint) cannot be used; the one-line message names it
    and says what to do."""


def read_json_file(path: str | Path, what: str = "record") -> dict:
    """A JSON object from ``path``; a truncated or damaged file is a :class:`RunFileError` naming it."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunFileError(
            f"{path}: damaged {what} (not valid JSON: {error}); delete it and rerun (the run is then completed again from its checkpoints)"
        ) from error
    if not isinstance(payload, dict):
        raise RunFileError(f"{path}: damaged {what} (a JSON {type(payload).__name__}, not an object); delete it and rerun")
    return payload


def atomic_write_json(path: str | Path, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("mtlda", "torch", "torchvision", "numpy", "scikit-learn", "omegaconf", "tensorboard"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    # the wheel's metadata says "2.14.1" for both the CPU and the CUDA builds; the build tag and the
    # source commit tell them apart (their bundled oneDNN/MKL can differ)
    versions["torch_build"] = f"{torch.__version__} ({torch.version.git_version[:12]})"
    return versions


def git_commit(start: str | Path | None = None) -> dict[str, object]:
    """Commit of the code that ran, and whether the tree had uncommitted changes.

    ``MTLDA_SOURCE_COMMIT``, when set, is recorded instead of asking git: on a machine that
    received a copy of the working tree, the copy's .git can be an older commit than its files.
    """
    cwd = Path(start or Path(__file__).resolve().parent)
    named = os.environ.get("MTLDA_SOURCE_COMMIT")
    if named:
        # The caller says which commit's tree this is: a copy on a borrowed machine, whose own
        # .git (if any) need not match the files that were sent.
        return {"commit": named, "dirty": None, "commit_from": "MTLDA_SOURCE_COMMIT"}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd, capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


#: CPU features that change which float32/bfloat16 kernels oneDNN and MKL pick, and so the summation
#: order: two hosts that differ here need not reproduce each other's runs bit for bit.
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_description(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, object]:
    """The CPU's model name and its kernel-relevant features, read from ``cpuinfo`` (Linux).

    The same commit, seed and package versions gave different float32 results on two hosts that the
    records could not tell apart (both "x86_64", both AVX-512 to PyTorch; the later an AMD EPYC), so a
    record names the model. Where the file is absent (macOS, Windows) ``cpu_model`` is None and
    ``cpu_flags`` omitted: the record's ``cpu`` (``platform.processor()``) is then all that is known,
    and the report falls back to it.
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return {"cpu_model": None}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {
        "cpu_model": fields.get("model name"),
        "cpu_flags": [flag for flag in KERNEL_FLAGS if flag in flags],
    }


def hardware(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        **cpu_description(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def atomic_save_png(figure, path: str | Path) -> Path:
    """Render a matplotlib ``figure`` to PNG in memory, then write it atomically (no half-written plots)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return atomic_write_bytes(path, buffer.getvalue())
