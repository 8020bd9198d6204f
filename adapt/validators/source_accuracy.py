"""Source validation accuracy: the default (and weakest-assumption) selection signal.

The usual protocol of most domain-adaptation papers when no target labels are
allowed: pick the checkpoint that classifies held-out *source* data best.  It
ignores the domain shift entirely (see You et al., ICML 2019, and Musgrave et
al., 2022, for how it compares with the other validators).
"""
from __future__ import annotations

from torch import Tensor

from .base import SOURCE_VAL_LABELS, SOURCE_VAL_LOGITS, Validator, accuracy

__all__ = ["SourceAccuracy"]


class SourceAccuracy(Validator):
    """Top-1 accuracy on the source validation split, in [0, 1]; higher is better."""

    name = "source_accuracy"
    summary = "accuracy on held-out labelled source data (the usual protocol without target labels)"
    requires = (SOURCE_VAL_LOGITS, SOURCE_VAL_LABELS)

    def score(self, source_val_logits: Tensor, source_val_labels: Tensor) -> float:
        return accuracy(source_val_logits, source_val_labels)
