"""Reference aggregators: plain sum and plain mean of the task gradients.

``SumAggregator``: ``d = Σ_k g_k = 1ᵀ J`` -- the gradient of the unweighted sum
of the losses (what the engine's equal weighting produces).
``MeanAggregator``: ``d = (1/K) Σ_k g_k`` -- the gradient of the mean loss.

No paper and no hyperparameters.  Both are linear in ``J``, so on the shared
representation they give exactly the same parameter gradient as on the
parameters (``supports_representation = True``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SOLVE_DTYPE, WeightedAggregator


class SumAggregator(WeightedAggregator):
    """``d = Σ_k g_k``; ``last_weights`` = ones."""

    name = "sum"

    default_target = "parameters"
    supports_representation = True  # linear in J: same parameter update either way
    fixed_weights = True

    def forward(self, jacobian: Tensor) -> Tensor:
        jacobian = self._check_jacobian(jacobian)
        self.last_weights = torch.ones(jacobian.shape[0], dtype=jacobian.dtype, device=jacobian.device)
        return jacobian.sum(dim=0)

    def _weights(self, gram: Tensor) -> Tensor:
        return torch.ones(gram.shape[0], dtype=SOLVE_DTYPE)


class MeanAggregator(WeightedAggregator):
    """``d = (1/K) Σ_k g_k``; ``last_weights`` = 1/K."""

    name = "mean"

    default_target = "parameters"
    supports_representation = True  # linear in J: same parameter update either way
    fixed_weights = True

    def forward(self, jacobian: Tensor) -> Tensor:
        jacobian = self._check_jacobian(jacobian)
        k = jacobian.shape[0]
        self.last_weights = torch.full((k,), 1.0 / k, dtype=jacobian.dtype, device=jacobian.device)
        return jacobian.mean(dim=0)

    def _weights(self, gram: Tensor) -> Tensor:
        k = gram.shape[0]
        return torch.full((k,), 1.0 / k, dtype=SOLVE_DTYPE)
