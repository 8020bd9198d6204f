"""Batch Nuclear-norm Maximization (BNM).

Shuhao Cui, Shuhui Wang, Junbao Zhuo, Liang Li, Qingming Huang, Qi Tian.
"Towards Discriminability and Diversity: Batch Nuclear-norm Maximization under
Label Insufficient Situations". CVPR 2020.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._precision import full_precision_statistic

__all__ = ["batch_nuclear_norm_loss"]


@full_precision_statistic
def batch_nuclear_norm_loss(logits: Tensor) -> Tensor:
    """BNM loss ``L = -||A||_* / B`` with ``A = softmax(logits)`` of shape ``(B, C)``.

    The nuclear norm (sum of singular values) of the batch prediction matrix
    upper-bounds its Frobenius norm (discriminability: confident rows) and is a
    convex surrogate of its rank (diversity: many distinct predicted classes), so
    minimising ``L`` increases both. For one-hot rows it equals
    ``-sum_c sqrt(n_c) / B`` with ``n_c`` the number of rows predicting class ``c``:
    ``-1/sqrt(B)`` when all rows agree, ``-1`` when all ``B <= C`` rows differ.

    The paper's trade-off is ``lambda = 1`` (target batch only). Note that the
    authors' code takes the *mean* singular value, i.e. divides by ``min(B, C)``
    instead of ``B``; the two agree whenever ``B <= C``.
    """
    if logits.dim() != 2:
        raise ValueError("expected logits of shape (batch, num_classes)")
    probabilities = torch.softmax(logits, dim=1)
    # svdvals has a well-defined backward (U V^T) even for repeated or zero singular
    # values, unlike differentiating through the full SVD's singular vectors.
    return -torch.linalg.svdvals(probabilities).sum() / logits.shape[0]
