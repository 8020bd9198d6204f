"""Batch Spectral Shrinkage (BSS).

Xinyang Chen, Sinan Wang, Bo Fu, Mingsheng Long, Jianmin Wang. "Catastrophic
Forgetting Meets Negative Transfer: Batch Spectral Shrinkage for Safe Transfer
Learning". NeurIPS 2019.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Regularizer

__all__ = ["BatchSpectralShrinkage", "batch_spectral_shrinkage"]


def batch_spectral_shrinkage(features: Tensor, k: int = 1) -> Tensor:
    """``Σ_{i=1..k} σ²₋ᵢ``: the squared ``k`` smallest singular values of the ``(batch, d)`` feature matrix.

    The matrix has ``min(batch, d)`` singular values; ``k`` must not exceed
    that.  Computed in float32 (float64 inputs stay float64) with autocast off:
    singular values have no half-precision kernel and small ones are what
    matters here.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    matrix = features.flatten(1)
    rank = min(matrix.shape)
    if k > rank:
        raise ValueError(f"k={k} but a {matrix.shape[0]}×{matrix.shape[1]} feature matrix has only {rank} singular values")
    dtype = torch.float64 if matrix.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=matrix.device.type, enabled=False):
        singular_values = torch.linalg.svdvals(matrix.to(dtype))  # descending
    return singular_values[rank - k:].pow(2).sum()


class BatchSpectralShrinkage(Regularizer):
    """Shrink the smallest singular values of the batch features (Chen et al. 2019).

    ``η Σ_{i=1..k} σ²₋ᵢ`` on the features of each training batch.

    Fine-tuning on a small target amplifies the feature directions with small
    singular values, which carry the source knowledge that does not transfer
    (negative transfer); shrinking them suppresses it.  Paper defaults: ``k = 1``
    and ``η = 0.001`` (also Transfer-Learning-Library's ``bss.py`` defaults).
    Call it with the backbone features of the labelled batch.
    """

    name = "bss"
    reads = ("features",)

    def __init__(self, k: int = 1, trade_off: float = 0.001):
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        if trade_off < 0:
            raise ValueError(f"trade_off must be non-negative, not {trade_off}")
        self.k, self.trade_off = int(k), float(trade_off)

    def forward(self, features: Tensor) -> Tensor:
        return self.trade_off * batch_spectral_shrinkage(features, self.k)

    def extra_repr(self) -> str:
        return f"k={self.k}, trade_off={self.trade_off}"
