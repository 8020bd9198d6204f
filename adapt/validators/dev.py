"""Deep embedded validation (DEV).

Kaichao You, Ximei Wang, Mingsheng Long, Michael I. Jordan. "Towards Accurate
Model Selection in Deep Unsupervised Domain Adaptation". ICML 2019.

Under covariate shift the target risk equals the source risk re-weighted by
the density ratio ``w(x) = p_t(x) / p_s(x)``, evaluated in the learned feature
space.  DEV estimates ``w`` with a probabilistic domain classifier on
features, computes the importance-weighted source validation loss, and
reduces the variance of that estimate with ``w`` itself as a control variate
(``E[w] = 1`` is known exactly).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import SOURCE_VAL_FEATURES, SOURCE_VAL_LABELS, SOURCE_VAL_LOGITS, TARGET_TRAIN_FEATURES, Validator, as_labels, as_logits

__all__ = ["DEV", "dev_risk"]


def dev_risk(weights: np.ndarray, losses: np.ndarray) -> float:
    """Control-variate estimate of the target risk (You et al. 2019, eq. 6 and Alg. 1).

    With ``L_i = w_i l_i``: ``eta = -Cov(L, w) / Var(w)`` and
    ``R = mean(L) + eta * mean(w) - eta``.  When the weights do not vary
    (``Var(w) = 0``, e.g. identical domains) ``eta = 0`` and ``R = mean(L)``.
    """
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    if weights.shape != losses.shape or weights.size < 2:
        raise ValueError("need matching weights and losses for at least two samples")
    weighted = weights * losses
    variance = weights.var(ddof=1)
    if not variance > 0.0:
        eta = 0.0
    else:
        covariance = np.cov(weighted, weights, ddof=1)[0, 1]
        eta = -covariance / variance
    return float(weighted.mean() + eta * weights.mean() - eta)


class DEV(Validator):
    """Negative DEV risk, ``-R``, of the source-validation cross-entropy; higher is better.

    Domain classifier: scikit-learn ``LogisticRegression`` (L2, inverse
    strength ``C``) on standardised features, source validation features
    (label 0) against target features (label 1).  To keep the weights of the
    source validation samples out-of-sample, it is *cross-fitted*: the samples
    of each domain are split into two interleaved halves, a classifier is fit
    on one half of both domains and predicts the other half.  The weight of a
    source sample ``x`` is then
    ``w(x) = (n_s / n_t) * P(target | x) / P(source | x)`` with ``n_s``,
    ``n_t`` the classifier's training counts, an estimate of ``p_t(x) / p_s(x)``.
    (The paper fits the classifier on source *training* features; the
    harness only has the validation split at hand, hence the cross-fitting.)

    ``R`` is an estimated cross-entropy risk in nats, so ``-R <= 0``.
    """

    name = "dev"
    summary = "deep embedded validation: importance-weighted source risk (You et al. 2019)"
    requires = (SOURCE_VAL_LOGITS, SOURCE_VAL_LABELS, SOURCE_VAL_FEATURES, TARGET_TRAIN_FEATURES)

    def __init__(self, C: float = 1.0, max_iter: int = 1000):
        super().__init__()
        self.C = C
        self.max_iter = max_iter

    def importance_weights(self, source_features, target_features) -> np.ndarray:
        """``w(x_i)`` for every source sample, from the cross-fitted domain classifier."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        source = _as_matrix(source_features)
        target = _as_matrix(target_features)
        if source.shape[1] != target.shape[1]:
            raise ValueError(f"source features have {source.shape[1]} dimensions, target {target.shape[1]}")
        if len(source) < 4 or len(target) < 4:
            raise ValueError("DEV needs at least 4 source and 4 target samples")
        source_fold = np.arange(len(source)) % 2
        target_fold = np.arange(len(target)) % 2
        weights = np.empty(len(source))
        for fold in (0, 1):
            fit_s, fit_t = source[source_fold != fold], target[target_fold != fold]
            features = np.concatenate([fit_s, fit_t])
            domains = np.concatenate([np.zeros(len(fit_s)), np.ones(len(fit_t))])
            classifier = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter))
            classifier.fit(features, domains)
            # decision_function is the log-odds log P(t|x) / P(s|x): no division by a vanishing probability
            log_odds = classifier.decision_function(source[source_fold == fold])
            weights[source_fold == fold] = (len(fit_s) / len(fit_t)) * np.exp(np.clip(log_odds, -50.0, 50.0))
        return weights

    def score(self, source_val_logits: Tensor, source_val_labels: Tensor, source_val_features: Tensor, target_train_features: Tensor) -> float:
        logits = as_logits(source_val_logits)
        labels = as_labels(source_val_labels, logits.shape[0]).to(logits.device)
        losses = F.cross_entropy(logits, labels, reduction="none").cpu().numpy()
        weights = self.importance_weights(source_val_features, target_train_features)
        return -dev_risk(weights, losses)

    def __repr__(self) -> str:
        return f"DEV(C={self.C})"


def _as_matrix(features) -> np.ndarray:
    if isinstance(features, Tensor):
        features = features.detach().double().cpu().numpy()
    features = np.asarray(features, dtype=np.float64)
    return features.reshape(features.shape[0], -1)
