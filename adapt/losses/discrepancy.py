"""Classifier discrepancy of Maximum Classifier Discrepancy (MCD).

Kuniaki Saito, Kohei Watanabe, Yoshitaka Ushiku, Tatsuya Harada. "Maximum
Classifier Discrepancy for Unsupervised Domain Adaptation". CVPR 2018.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._precision import full_precision_statistic

__all__ = ["classifier_discrepancy"]


@full_precision_statistic
def classifier_discrepancy(logits_1: Tensor, logits_2: Tensor) -> Tensor:
    """``d(p1, p2) = 1/B sum_i 1/C sum_c |p1_ic - p2_ic|`` with ``p = softmax(logits)``.

    The mean absolute difference between the two classifiers' class probabilities
    (an L1 distance scaled by ``1/C``), in ``[0, 2/C]``. MCD alternates: (A) train
    feature extractor and both classifiers on source labels; (B) with the extractor
    fixed, train the classifiers to *maximise* the discrepancy on target data (while
    keeping source accuracy); (C) with the classifiers fixed, train the extractor to
    *minimise* it, repeated ``n`` times per iteration (``n = 4`` in the paper's
    digit experiments). The discrepancy itself has no hyperparameters.
    """
    if logits_1.shape != logits_2.shape or logits_1.dim() != 2:
        raise ValueError("expected two logit tensors of the same shape (batch, num_classes)")
    return (torch.softmax(logits_1, dim=1) - torch.softmax(logits_2, dim=1)).abs().mean()
