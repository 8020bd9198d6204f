"""Prediction entropy on the target domain as a validation score.

Pietro Morerio, Jacopo Cavazza, Vittorio Murino. "Minimal-Entropy Correlation
Alignment for Unsupervised Deep Domain Adaptation". ICLR 2018: the entropy of
the target predictions is used to choose the alignment weight without target
labels (lower entropy = better adapted).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import TARGET_TRAIN_LOGITS, Validator, as_logits

__all__ = ["Entropy"]


class Entropy(Validator):
    """``-1/N sum_i H(softmax(z_i))`` over target predictions, in nats; higher is better.

    The score lies in ``[-log C, 0]``: ``-log C`` for uniform predictions, 0 for
    one-hot ones.  It is easily fooled by a model that is confidently wrong
    (or that collapses onto one class); use it together with other validators.
    """

    name = "entropy"
    summary = "negative mean entropy of target predictions (Morerio et al. 2018)"
    requires = (TARGET_TRAIN_LOGITS,)

    def score(self, target_train_logits: Tensor) -> float:
        log_p = F.log_softmax(as_logits(target_train_logits), dim=1)
        per_sample = -(log_p.exp() * log_p).sum(dim=1)
        return float(-per_sample.mean())
