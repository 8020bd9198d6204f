"""Adaptive Feature Norm (AFN): hard (HAFN) and stepwise (SAFN) variants.

Ruijia Xu, Guanbin Li, Jihan Yang, Liang Lin. "Larger Norm More Transferable: An
Adaptive Feature Norm Approach for Unsupervised Domain Adaptation". ICCV 2019.

The paper observes that target features have much smaller norms than source
features and that enlarging the (task-specific) feature norms of both domains
improves transfer. Both losses take one domain's features ``(batch, ...)``
(flattened to 2-D) and are applied to the source and to the target batch
separately, the two results being added, as in the authors' code. The norm is the
L2 norm of each example's feature vector; in the paper the features are taken
after the FC-BN-ReLU-Dropout bottleneck with L2-preserving dropout
(scale ``1/sqrt(1-p)``), which is the caller's concern.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._precision import full_precision_statistic

__all__ = ["stepwise_feature_norm_loss", "hard_feature_norm_loss"]


def _feature_norms(features: Tensor) -> Tensor:
    if features.dim() < 2:
        raise ValueError("expected features of shape (batch, ...)")
    return torch.linalg.vector_norm(features.flatten(1), ord=2, dim=1)


@full_precision_statistic
def stepwise_feature_norm_loss(features: Tensor, delta: float = 1.0) -> Tensor:
    """Stepwise AFN (SAFN): ``L = 1/B sum_i (||h_i(theta_0)|| + delta - ||h_i(theta)||)^2``.

    ``||h_i(theta_0)||`` is the norm under the current (pre-update) parameters,
    i.e. the detached norm, so the loss value is always ``delta^2`` while its
    gradient, ``-2 delta / B`` times the unit direction ``h_i / ||h_i||``, pushes
    every example's norm up by about ``delta`` per step. Progressive enlargement
    avoids having to pick the hard radius ``R`` of HAFN.

    Paper defaults: ``delta = 1.0`` and trade-off ``lambda = 0.05``. An all-zero
    feature vector has no direction, so it gets zero gradient (not NaN).
    """
    norms = _feature_norms(features)
    target_norms = norms.detach() + delta
    return (target_norms - norms).pow(2).mean()


@full_precision_statistic
def hard_feature_norm_loss(features: Tensor, radius: float = 25.0) -> Tensor:
    """Hard AFN (HAFN): ``L = (1/B sum_i ||h_i|| - R)^2`` for one domain's batch.

    Pulls the *mean* feature norm of the batch towards a shared radius ``R``
    (the same for source and target). Paper / reference-code defaults:
    ``R = 25`` and trade-off ``lambda = 0.05``.
    """
    return (_feature_norms(features).mean() - radius).pow(2)
