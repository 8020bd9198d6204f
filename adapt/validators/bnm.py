"""Batch nuclear norm of the target predictions as a validation score.

Shuhao Cui, Shuhui Wang, Junbao Zhuo, Liang Li, Qingming Huang, Qi Tian.
"Towards Discriminability and Diversity: Batch Nuclear-norm Maximization
under Label Insufficient Situations". CVPR 2020.  Used as a validator in
Musgrave et al. (arXiv:2208.07360, 2022).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import TARGET_TRAIN_LOGITS, Validator, as_logits

__all__ = ["BNMScore"]


class BNMScore(Validator):
    """``||A||_* / N`` with ``A = softmax(Z)`` the (N, C) target prediction matrix; higher is better.

    The nuclear norm (sum of singular values) grows with both the confidence
    of the rows and the number of distinct predicted classes.  Normalised by
    the number of samples N as in the paper's loss, so that for one-hot rows
    it equals ``sum_c sqrt(n_c) / N`` (``n_c`` rows predicting class ``c``):
    ``1/sqrt(N)`` when every row agrees and ``sqrt(C/N)`` when the N rows are
    spread evenly over C classes.  Compare scores only at a fixed N (the
    harness uses a fixed target subset).  Computed in float64.
    """

    name = "bnm"
    summary = "batch nuclear norm of target predictions (Cui et al. 2020)"
    requires = (TARGET_TRAIN_LOGITS,)

    def score(self, target_train_logits: Tensor) -> float:
        logits = as_logits(target_train_logits)
        probabilities = torch.softmax(logits, dim=1)
        return float(torch.linalg.svdvals(probabilities).sum() / logits.shape[0])
