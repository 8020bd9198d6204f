"""Minimum Class Confusion (MCC).

Ying Jin, Ximei Wang, Mingsheng Long, Jianmin Wang. "Minimum Class Confusion for
Versatile Domain Adaptation". ECCV 2020.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._precision import full_precision_statistic
from .conditional import entropy_weights

__all__ = ["minimum_class_confusion_loss"]


@full_precision_statistic
def minimum_class_confusion_loss(logits: Tensor, temperature: float = 2.5) -> Tensor:
    """MCC loss on a target batch of logits ``(B, C)``.

    1. Temperature-scaled predictions ``Y = softmax(logits / T)`` (``T = 2.5``);
       the temperature softens over-confident wrong predictions.
    2. Uncertainty re-weighting ``w_i = B (1 + exp(-H(Y_i))) / sum_j (1 + exp(-H(Y_j)))``
       (detached), so confident examples count more.
    3. Class correlation ``C = Y^T diag(w) Y`` (``C x C``); ``C_jk`` measures how often
       classes ``j`` and ``k`` are predicted together for the same example.
    4. Category normalisation ``C~_jk = C_jk / sum_k' C_jk'`` (rows sum to one, so
       large classes do not dominate). ``C`` is symmetric, hence row- and
       column-normalisation (the paper and reference code) give the same loss.
    5. ``L = (sum_jk C~_jk - sum_j C~_jj) / C``: the mean between-class confusion.

    ``L`` lies in ``[0, 1)``; it is 0 when each example is confidently predicted as a
    single class and every class occurs in the batch, and ``(C - 1) / C`` for uniform
    predictions. A class that no example predicts makes its row almost entirely
    confusion (values near 1 for that row) - inherent to the definition. The paper
    adds it with weight ``mu = 1`` (no ramp-up) to the source cross-entropy.
    """
    if logits.dim() != 2:
        raise ValueError("expected logits of shape (batch, num_classes)")
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    num_classes = logits.shape[1]
    predictions = torch.softmax(logits / temperature, dim=1)
    weights = entropy_weights(predictions)
    confusion = predictions.T @ (weights.unsqueeze(1) * predictions)
    # tiny floor: only guards 0/0 when float underflow makes a class's column exactly 0.
    row_sums = confusion.sum(dim=1, keepdim=True).clamp_min(torch.finfo(confusion.dtype).tiny)
    normalised = confusion / row_sums
    return (normalised.sum() - normalised.diagonal().sum()) / num_classes
