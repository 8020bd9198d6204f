"""Target accuracy with target labels: an *oracle*, for upper bounds only.

Selecting checkpoints or hyperparameters with target labels is not
unsupervised domain adaptation; papers that do it report optimistic numbers
(see You et al., ICML 2019; Musgrave et al., 2022).  The harness reports this
score next to the unsupervised ones so that their gap to the best achievable
selection is visible, and refuses to *select* on it unless a run is
explicitly declared an oracle run.
"""
from __future__ import annotations

from torch import Tensor

from .base import TARGET_TRAIN_LABELS, TARGET_TRAIN_LOGITS, Validator, accuracy

__all__ = ["TargetOracle"]


class TargetOracle(Validator):
    """Top-1 accuracy on the (labelled) target training split, in [0, 1]; higher is better.  Reads target labels."""

    name = "oracle"
    oracle_metric = "target_accuracy"
    summary = "ORACLE: target-train accuracy from target labels, an upper bound only, never for selection"
    requires = (TARGET_TRAIN_LOGITS, TARGET_TRAIN_LABELS)
    is_oracle = True

    def score(self, target_train_logits: Tensor, target_train_labels: Tensor) -> float:
        return accuracy(target_train_logits, target_train_labels)
