"""In-memory image datasets: uint8 tensors plus one label tensor per task."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mtl.tasks import TaskSpec

from .readers import resize_images


@dataclass
class ImageSplit:
    """``images``: uint8 (N, C, H, W); ``labels``: task name → (N, …) tensor.

    float32 inputs are accepted too, for data that is not 8-bit pixels: vectors
    are stored as C×1×1 "images" (the embedded ``moons`` points are 2×1×1), so
    batching, evaluation and the validators carry them unchanged.
    """

    images: Tensor
    labels: dict[str, Tensor]

    def __post_init__(self):
        if self.images.dtype not in (torch.uint8, torch.float32) or self.images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 or float32 (N, C, H, W) tensor, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        for name, y in self.labels.items():
            if y.shape[0] != self.images.shape[0]:
                raise ValueError(f"task '{name}' has {y.shape[0]} labels for {self.images.shape[0]} images")

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: Tensor) -> "ImageSplit":
        return ImageSplit(self.images[index], {k: v[index] for k, v in self.labels.items()})


@dataclass
class ImageDataset:
    """A named dataset with standard train/test splits and its task specs."""

    name: str
    train: ImageSplit
    test: ImageSplit
    tasks: Mapping[str, TaskSpec]
    description: str = ""
    extras: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.extras.get("channels", 3) if not isinstance(self.train, ImageSplit) else self.train.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.extras["image_size"] if not isinstance(self.train, ImageSplit) else self.train.images.shape[-1]


def split_train_val(split: ImageSplit, val_fraction: float, seed: int) -> tuple[ImageSplit, ImageSplit]:
    """Random, seeded train/validation split of a training set (the test split is never touched)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    n = len(split)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction)))
    return split.subset(order[n_val:]), split.subset(order[:n_val])


def resize_dataset(dataset: ImageDataset, size: int) -> ImageDataset:
    """The dataset with every image resized once to ``size``×``size`` (bilinear, antialiased, uint8)."""
    from dataclasses import replace

    def resize(split: ImageSplit) -> ImageSplit:
        return ImageSplit(resize_images(split.images, size), split.labels)

    return replace(dataset, train=resize(dataset.train), test=resize(dataset.test))
