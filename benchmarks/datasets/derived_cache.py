"""On-disk caches of datasets derived from others (the MultiMNIST family), keyed by what they were built from.

A cache is used only when its key matches: a SHA-256 over the construction's name, version and
parameters and over the *content* of everything it was built from (the decoded images and labels of
its source datasets, and any other input, such as the photographs its patches are cut from).  A
replaced or repaired source file, another seed or a changed construction therefore builds it again.
A cache file that cannot be read (truncated, damaged, not ours) is reported with its path and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ..records import CheckpointReadError, atomic_torch_save, load_weights_only

CACHE_FORMAT = "mtlda-derived-dataset"


def content_key(*parts) -> str:
    """SHA-256 (hex) of ``parts``: tensors by dtype, shape and bytes; dicts, lists and tuples recursively;
    anything else by its JSON form."""
    digest = hashlib.sha256()
    _update(digest, parts)
    return digest.hexdigest()


def _update(digest, part) -> None:
    if isinstance(part, torch.Tensor):
        tensor = part.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(part, dict):
        digest.update(f"dict {len(part)}\n".encode())
        for key in sorted(part, key=str):
            _update(digest, str(key))
            _update(digest, part[key])
    elif isinstance(part, (list, tuple)):
        digest.update(f"sequence {len(part)}\n".encode())
        for item in part:
            _update(digest, item)
    else:
        digest.update((json.dumps(part, sort_keys=True) + "\n").encode())


def cached(path: Path, key: str, build: Callable[[], object], is_valid: Callable[[object], bool]):
    """``build()``'s result, read from ``path`` when that holds a valid cache for ``key``; otherwise built
    and written there atomically (failing to write only warns)."""
    data = _read(path, key, is_valid)
    if data is None:
        data = build()
        try:
            atomic_torch_save(path, {"format": CACHE_FORMAT, "key": key, "data": data})
        except OSError as error:
            warnings.warn(f"could not write the dataset cache {path}: {error}", stacklevel=2)
    return data


def _read(path: Path, key: str, is_valid: Callable[[object], bool]):
    if not path.is_file():
        return None
    try:
        payload = load_weights_only(path)
    except CheckpointReadError as error:
        warnings.warn(f"rebuilding the dataset cache {path}, which cannot be used: {error}", stacklevel=3)
        return None
    if not (isinstance(payload, dict) and payload.get("format") == CACHE_FORMAT and payload.get("key") == key
            and is_valid(payload.get("data"))):
        warnings.warn(f"rebuilding the dataset cache {path}: it does not hold this dataset's data", stacklevel=3)
        return None
    return payload["data"]
