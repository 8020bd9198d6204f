"""Conditioning and loss pieces of Conditional Domain Adversarial Networks (CDAN, CDAN+E).

Long, Cao, Wang, Jordan. "Conditional Adversarial Domain Adaptation". NeurIPS 2018.

CDAN feeds the domain discriminator ``D`` with the joint variable
``h = T(f, g)`` of features ``f`` and classifier predictions ``g = softmax(logits)``,
so that it aligns class-conditional rather than only marginal feature
distributions::

    E(G, D) = -E_s[w(H(g)) log D(T(f, g))] - E_t[w(H(g)) log(1 - D(T(f, g)))]

(source label 1, target label 0; ``D`` minimises, the features maximise through a
gradient reversal layer; both live outside this module). ``T`` is

* the multilinear map ``f (x) g`` (:func:`multilinear_map`) when ``d * C`` is small
  (the paper uses it while ``d * C <= 4096``), or
* the randomized multilinear map (:class:`RandomizedMultilinearMap`) with output
  dimension 1024 otherwise.

CDAN+E adds the entropy conditioning ``w(H(g)) = 1 + exp(-H(g))``
(:func:`entropy_weights`) to emphasise confidently classified, transferable
examples. The paper's trade-off is ``lambda = 1`` with the gradient-reversal
coefficient ramped by ``2 / (1 + exp(-10 p)) - 1``. The reference implementation
detaches ``g`` before ``T`` so that conditioning does not train the classifier
through the discriminator; callers should pass ``predictions.detach()`` to follow it.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._precision import full_precision_statistic

__all__ = [
    "multilinear_map",
    "RandomizedMultilinearMap",
    "entropy_weights",
    "conditional_domain_loss",
]


def _check_pair(features: Tensor, predictions: Tensor) -> None:
    if features.dim() != 2 or predictions.dim() != 2:
        raise ValueError("expected features (batch, d) and predictions (batch, num_classes)")
    if features.shape[0] != predictions.shape[0]:
        raise ValueError("features and predictions must have the same batch size")


@full_precision_statistic
def multilinear_map(features: Tensor, predictions: Tensor) -> Tensor:
    """CDAN's multilinear conditioning ``T(f, g) = f (x) g``, flattened to ``(batch, d * C)``.

    Output index ``i * C + c`` holds ``f_i * g_c`` (feature-major order). The outer
    product captures the multiplicative interactions between features and class
    predictions that concatenation ``[f, g]`` cannot.
    """
    _check_pair(features, predictions)
    return (features.unsqueeze(2) * predictions.unsqueeze(1)).flatten(1)


class RandomizedMultilinearMap(nn.Module):
    """Randomized multilinear map ``T_rand(f, g) = (R_f f) * (R_g g) / sqrt(output_dim)`` of CDAN.

    ``R_f`` (``output_dim x feature_dim``) and ``R_g`` (``output_dim x num_classes``)
    are drawn once from a standard normal distribution and then fixed (registered as
    buffers: saved with the model, never trained). Each coordinate has zero mean and
    unit variance, hence the inner product is preserved in expectation::

        E[<T_rand(f, g), T_rand(f', g')>] = <f, f'> <g, g'> = <f (x) g, f' (x) g'>

    which is what makes it an unbiased stand-in for :func:`multilinear_map` when
    ``feature_dim * num_classes`` is too large (the paper uses ``output_dim = 1024``).

    Args:
        feature_dim: size ``d`` of the features.
        num_classes: number ``C`` of classes.
        output_dim: dimension of the randomized map (CDAN: 1024).
        generator: optional ``torch.Generator`` to make the draw reproducible.
    """

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        output_dim: int = 1024,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        if min(feature_dim, num_classes, output_dim) < 1:
            raise ValueError("dimensions must be positive")
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.output_dim = output_dim
        self.register_buffer("feature_projection", torch.randn(output_dim, feature_dim, generator=generator))
        self.register_buffer("prediction_projection", torch.randn(output_dim, num_classes, generator=generator))

    @full_precision_statistic
    def forward(self, features: Tensor, predictions: Tensor) -> Tensor:
        _check_pair(features, predictions)
        projected_features = features @ self.feature_projection.to(features.dtype).T
        projected_predictions = predictions @ self.prediction_projection.to(predictions.dtype).T
        return projected_features * projected_predictions / math.sqrt(self.output_dim)

    def extra_repr(self) -> str:
        return f"feature_dim={self.feature_dim}, num_classes={self.num_classes}, output_dim={self.output_dim}"


@full_precision_statistic
def entropy_weights(predictions: Tensor) -> Tensor:
    """CDAN+E entropy-conditioning weights for one domain's batch, shape ``(batch,)``.

    ``w_i = 1 + exp(-H(p_i))`` with ``H`` the Shannon entropy (nats) of the
    probability vector ``p_i`` (so ``1 + 1/C <= w_i <= 2``), rescaled to sum to the
    batch size; call it separately for the source and the target batch. Confident
    predictions get larger weights.

    ``predictions`` are probabilities (e.g. ``logits.softmax(1)``), shape
    ``(batch, num_classes)``. The weights are returned detached: they re-weight
    examples and are not an objective of their own. (The reference CDAN code lets a
    gradient-reversed signal flow into them; most re-implementations detach them.)
    """
    if predictions.dim() != 2:
        raise ValueError("expected predictions of shape (batch, num_classes)")
    predictions = predictions.detach()
    # xlogy gives 0 * log 0 = 0 for exactly-zero probabilities.
    sample_entropy = -torch.special.xlogy(predictions, predictions).sum(dim=1)
    raw = 1.0 + torch.exp(-sample_entropy)
    return raw * (predictions.shape[0] / raw.sum())


def _flat_domain_logits(logits: Tensor) -> Tensor:
    if logits.dim() == 1 or (logits.dim() == 2 and logits.shape[1] == 1):
        return logits.reshape(-1)
    raise ValueError(f"domain logits must have shape (batch,) or (batch, 1), got {tuple(logits.shape)}")


@full_precision_statistic
def conditional_domain_loss(
    source_domain_logits: Tensor,
    target_domain_logits: Tensor,
    source_weights: Optional[Tensor] = None,
    target_weights: Optional[Tensor] = None,
) -> Tensor:
    """Weighted binary cross-entropy of the domain discriminator (source = 1, target = 0).

    ``L = 1/(n_s + n_t) [sum_i w^s_i softplus(-d^s_i) + sum_j w^t_j softplus(d^t_j)]``

    where ``d`` are the discriminator's logits (shape ``(n,)`` or ``(n, 1)``) and
    ``w`` optional per-example weights (e.g. :func:`entropy_weights`, which sum to the
    batch size per domain; with equal batch sizes this equals the reference CDAN+E
    normalisation). Without weights it is the plain mean BCE over all samples.
    """
    source_logits = _flat_domain_logits(source_domain_logits)
    target_logits = _flat_domain_logits(target_domain_logits)
    source_losses = F.binary_cross_entropy_with_logits(
        source_logits, torch.ones_like(source_logits), reduction="none"
    )
    target_losses = F.binary_cross_entropy_with_logits(
        target_logits, torch.zeros_like(target_logits), reduction="none"
    )
    if source_weights is not None:
        source_losses = source_losses * source_weights.reshape(source_losses.shape)
    if target_weights is not None:
        target_losses = target_losses * target_weights.reshape(target_losses.shape)
    return torch.cat([source_losses, target_losses]).mean()
