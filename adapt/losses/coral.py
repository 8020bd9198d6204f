"""Deep CORAL loss."""
from __future__ import annotations

from torch import Tensor

from ._precision import full_precision_statistic


@full_precision_statistic
def feature_covariance(features: Tensor) -> Tensor:
    """Unbiased covariance of the rows of ``features`` (n × d), as a d × d matrix."""
    n = features.shape[0]
    if n < 2:
        raise ValueError("covariance needs at least two samples per domain")
    centred = features - features.mean(dim=0, keepdim=True)
    return centred.T @ centred / (n - 1)


@full_precision_statistic
def coral_loss(source: Tensor, target: Tensor) -> Tensor:
    """Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain
    Adaptation", ECCV 2016 workshops.

    ``‖C_S − C_T‖²_F / (4 d²)`` with ``C`` the unbiased feature covariance of
    each domain's batch and ``d`` the feature dimension.  Source and target
    batches may differ in size but not in ``d``.  Computed in float32 (float64
    for float64 inputs) with autocast off: ``C_S − C_T`` cancels badly in half precision.
    """
    if source.dim() != 2 or target.dim() != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(
            f"coral_loss needs two (n, d) matrices with the same d; got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    d = source.shape[1]
    diff = feature_covariance(source) - feature_covariance(target)
    return diff.pow(2).sum() / (4 * d * d)
