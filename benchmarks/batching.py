"""Device-resident minibatches: no DataLoader, no per-sample Python on the hot path.

A split lives once as a uint8 tensor on the training device; a batch is an
index into it.  Normalisation and channel replication run on the whole batch
on the device.  The stream's position is two integers (cycle, offset), so a
checkpoint restores it exactly.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .datasets.base import ImageSplit
from .datasets.image_folder import FolderSplit, LoaderBatcher, iterate_folder


class Preprocess:
    """uint8 batch → float, optional grey→RGB replication, then ``(x/255 − mean) / std``.

    A float32 batch (vectors stored as C×1×1 images) is not rescaled: ``(x − mean) / std``.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels: int | None, device):
        self.channels = channels
        self.mean = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1)
        if (self.std <= 0).any():
            raise ValueError(f"normalisation std must be positive, got {list(std)}")

    def __call__(self, images: Tensor) -> Tensor:
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        if self.channels is not None and x.shape[1] != self.channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.channels, -1, -1)
            else:
                raise ValueError(
                    f"cannot turn {x.shape[1]}-channel images into {self.channels} channels; "
                    "only grey→RGB replication is supported (set data.channels accordingly)"
                )
        return (x - self.mean) / self.std


class DeviceBatcher:
    """An endless, seeded stream of minibatches over one split, reshuffled every cycle.

    ``drop_last=True`` keeps every batch the same size (BatchNorm and the
    domain losses prefer that); a split smaller than one batch is an error.
    """

    def __init__(self, split: ImageSplit, batch_size: int, seed: int, device, drop_last: bool = True):
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if drop_last and len(split) < batch_size:
            raise ValueError(f"split has {len(split)} samples, fewer than one batch of {batch_size}; lower the batch size")
        self.images = split.images.to(device)
        self.labels = {k: v.to(device) for k, v in split.labels.items()}
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.drop_last = drop_last
        self.cycle = 0
        self.offset = 0
        self._order = self._permutation(0)

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _permutation(self, cycle: int) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + cycle)
        return torch.randperm(self.images.shape[0], generator=generator).to(self.device)

    def next(self) -> tuple[Tensor, dict[str, Tensor]]:
        n = self.images.shape[0]
        end = self.offset + self.batch_size
        if end > n and (self.drop_last or self.offset >= n):
            self.cycle += 1
            self.offset = 0
            self._order = self._permutation(self.cycle)
            end = self.batch_size
        index = self._order[self.offset : min(end, n)]
        self.offset = min(end, n)
        return self.images[index], {k: v[index] for k, v in self.labels.items()}

    def state_dict(self) -> dict:
        return {"cycle": self.cycle, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:
        self.cycle, self.offset = int(state["cycle"]), int(state["offset"])
        self._order = self._permutation(self.cycle)


def make_batcher(split, batch_size: int, seed: int, device, labelled: bool = True, workers: int = 0):
    """The training stream for a split: device-resident tensors, or DataLoader workers for image folders.

    ``labelled=False`` drops the labels from the stream itself (unlabelled
    target data), so nothing downstream can read them.
    """
    if isinstance(split, FolderSplit):
        return LoaderBatcher(split, batch_size, seed, device, workers=workers, labelled=labelled)
    return DeviceBatcher(split if labelled else ImageSplit(split.images, {}), batch_size, seed, device)


def iterate_in_order(split, batch_size: int, device, workers: int = 0):
    """Deterministic pass over a split for evaluation (copies each batch to the device)."""
    if isinstance(split, FolderSplit):
        yield from iterate_folder(split, batch_size, device, workers)
        return
    for start in range(0, len(split), batch_size):
        yield (
            split.images[start : start + batch_size].to(device, non_blocking=True),
            {k: v[start : start + batch_size].to(device, non_blocking=True) for k, v in split.labels.items()},
        )
