"""Information maximisation (IM) as a validation score.

The mutual information between inputs and predicted labels, estimated on the
unlabelled target set: ``I = H(mean_i p_i) - mean_i H(p_i)``.  Introduced as a
clustering objective by Gomes, Krause & Perona ("Discriminative Clustering by
Regularized Information Maximization", NeurIPS 2010) and evaluated as a
domain-adaptation validator by Kevin Musgrave, Serge Belongie, Ser-Nam Lim,
"Benchmarking Validation Methods for Unsupervised Domain Adaptation" /
"Three New Validators and a Large-Scale Benchmark Ranking for Unsupervised
Domain Adaptation" (arXiv:2208.07360, 2022).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import TARGET_TRAIN_LOGITS, Validator, as_logits

__all__ = ["InfoMax"]


class InfoMax(Validator):
    """``H(p_bar) - 1/N sum_i H(p_i)`` with ``p_i = softmax(z_i)``, ``p_bar = 1/N sum_i p_i``; higher is better.

    In nats, within ``[0, log C]``: 0 when every prediction is the same
    distribution (for instance uniform, or all one class), ``log C`` when
    predictions are one-hot and spread evenly over the ``C`` classes.  It is
    the negative of :func:`adapt.losses.entropy.information_maximization`.
    """

    name = "im"
    summary = "mutual information of target inputs and predictions (Gomes et al. 2010; Musgrave et al. 2022)"
    requires = (TARGET_TRAIN_LOGITS,)

    def score(self, target_train_logits: Tensor) -> float:
        logits = as_logits(target_train_logits)
        log_p = F.log_softmax(logits, dim=1)
        mean_entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
        log_marginal = torch.logsumexp(log_p, dim=0) - math.log(logits.shape[0])
        marginal_entropy = -(log_marginal.exp() * log_marginal).sum()
        return float(marginal_entropy - mean_entropy)
