"""Prediction-entropy objectives for unlabelled (target) data.

References
----------
* Yves Grandvalet, Yoshua Bengio. "Semi-supervised Learning by Entropy
  Minimization". NeurIPS 2004.
* Ryan Gomes, Andreas Krause, Pietro Perona. "Discriminative Clustering by
  Regularized Information Maximization". NeurIPS 2010.
* Jian Liang, Dapeng Hu, Jiashi Feng. "Do We Really Need to Access the Source
  Data? Source Hypothesis Transfer for Unsupervised Domain Adaptation" (SHOT).
  ICML 2020.

All functions take raw logits of shape ``(batch, num_classes)`` and work in log
space (``log_softmax`` / ``logsumexp``), so saturated logits give exact zeros
rather than ``0 * log 0 = NaN`` and no ``+ eps`` inside the logarithm is needed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._precision import full_precision_statistic

__all__ = ["entropy_per_sample", "entropy", "information_maximization"]


def _check_logits(logits: Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"expected logits of shape (batch, num_classes), got {tuple(logits.shape)}")


@full_precision_statistic
def entropy_per_sample(logits: Tensor) -> Tensor:
    """Shannon entropy ``H(p_i) = -sum_c p_ic log p_ic`` of ``p_i = softmax(logits_i)``, shape ``(batch,)``."""
    _check_logits(logits)
    log_probs = F.log_softmax(logits, dim=1)
    return -(log_probs.exp() * log_probs).sum(dim=1)


@full_precision_statistic
def entropy(logits: Tensor) -> Tensor:
    """Mean prediction entropy, the entropy-minimisation loss of Grandvalet & Bengio (NeurIPS 2004).

    ``L_ent = 1/B sum_i H(softmax(logits_i))``, in nats; ``0 <= L_ent <= log C``.
    Minimising it pushes decision boundaries away from dense unlabelled regions.
    The paper tunes its weight ``lambda`` by cross-validation (no universal default).
    """
    return entropy_per_sample(logits).mean()


@full_precision_statistic
def information_maximization(logits: Tensor, diversity_weight: float = 1.0) -> Tensor:
    """Information-maximisation loss (RIM, Gomes et al. NeurIPS 2010; as used in SHOT, ICML 2020).

    ``L_IM = 1/B sum_i H(p_i) - diversity_weight * H(p_bar)``, with ``p_bar = 1/B sum_i p_i``.

    The first term makes each prediction confident, the second (SHOT's
    ``L_div = sum_c p_bar_c log p_bar_c = -H(p_bar)``) keeps the batch's predictions
    spread over classes so that entropy minimisation cannot collapse to one class.
    Minimising it maximises the mutual information between inputs and predicted
    labels. SHOT weights both terms equally (``diversity_weight = 1``). The result
    lies in ``[-log C, log C]``; it equals ``-log C`` for confident predictions that
    are balanced over the ``C`` classes and 0 for uniform predictions.
    """
    _check_logits(logits)
    log_probs = F.log_softmax(logits, dim=1)
    mean_entropy = -(log_probs.exp() * log_probs).sum(dim=1).mean()
    # log p_bar = log(1/B sum_i exp(log p_i)) computed stably with logsumexp.
    log_marginal = torch.logsumexp(log_probs, dim=0) - math.log(logits.shape[0])
    marginal_entropy = -(log_marginal.exp() * log_marginal).sum()
    return mean_entropy - diversity_weight * marginal_entropy
