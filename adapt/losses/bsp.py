"""Batch Spectral Penalization (BSP).

Xinyang Chen, Sinan Wang, Mingsheng Long, Jianmin Wang. "Transferability vs.
Discriminability: Batch Spectral Penalization for Adversarial Domain Adaptation".
ICML 2019.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._precision import full_precision_statistic

__all__ = ["batch_spectral_penalty"]


def _top_squared_singular_values(features: Tensor, k: int) -> Tensor:
    singular_values = torch.linalg.svdvals(features.flatten(1))  # descending order
    return singular_values[:k].pow(2).sum()


@full_precision_statistic
def batch_spectral_penalty(source_features: Tensor, target_features: Tensor, k: int = 1) -> Tensor:
    """BSP penalty ``L = sum_{i=1..k} (sigma_{s,i}^2 + sigma_{t,i}^2)``.

    ``sigma_{s,i}`` / ``sigma_{t,i}`` are the ``i``-th largest singular values of the
    source / target batch feature matrices (``(batch, ...)``, flattened to 2-D).
    Adversarial alignment tends to concentrate the features' energy in a few top
    eigenvectors (good transferability, poor discriminability); penalising the
    largest singular values lets the remaining directions contribute again.

    The paper's defaults are ``k = 1`` and trade-off ``beta = 1e-4`` (added on top of
    DANN or CDAN). ``k`` larger than a matrix's number of singular values uses all of
    them (then each term is the squared Frobenius norm).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    return _top_squared_singular_values(source_features, k) + _top_squared_singular_values(target_features, k)
