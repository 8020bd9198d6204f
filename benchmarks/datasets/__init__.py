"""Dataset registry: every dataset a config can name."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import ImageDataset, ImageSplit, split_train_val
from .embedded import load_digits_m, load_digits_source, load_multidigits


@dataclass(frozen=True)
class DatasetEntry:
    loader: Callable[..., ImageDataset]
    kind: str  # "domain" (one task, usable as DA source/target) or "multitask"
    needs_root: bool
    description: str


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(
        lambda root, data_seed: load_digits_source(data_seed), "domain", False, "sklearn 8×8 digits (embedded)"
    ),
    "digits-m": DatasetEntry(
        lambda root, data_seed: load_digits_m(data_seed), "domain", False, "digits blended with photo patches (embedded)"
    ),
    "multidigits": DatasetEntry(
        lambda root, data_seed: load_multidigits(data_seed), "multitask", False, "two overlaid digits, left/right (embedded)"
    ),
}


def load_dataset(name: str, root: str | None = None, data_seed: int = 0) -> ImageDataset:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name].loader(root, data_seed)


__all__ = ["DATASETS", "DatasetEntry", "ImageDataset", "ImageSplit", "load_dataset", "split_train_val"]
