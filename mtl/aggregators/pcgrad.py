"""PCGrad: project conflicting gradients ("gradient surgery").

Reference
    Tianhe Yu, Saurabh Kumar, Abhishek Gupta, Sergey Levine, Karol Hausman and
    Chelsea Finn. "Gradient Surgery for Multi-Task Learning". Advances in
    Neural Information Processing Systems (NeurIPS), 2020.

Update rule (the paper's Algorithm 1)
    For every task ``i``: start from ``g_i^PC = g_i`` and, for every other task
    ``j ≠ i`` in a uniformly random order, if ``⟨g_i^PC, g_j⟩ < 0`` replace
    ``g_i^PC ← g_i^PC − ⟨g_i^PC, g_j⟩ / ‖g_j‖² · g_j`` (projection onto the
    normal plane of the *original* ``g_j``).  The update is
    ``d = Σ_i g_i^PC`` (a sum, as in the paper; no hyperparameters).

Guarantees
    For K = 2 the result never conflicts with either task
    (``⟨d, g_k⟩ ≥ 0``: e.g. ``⟨g_1^PC + g_2^PC, g_1⟩ = ‖g_1‖² − ⟨g_1,g_2⟩²/‖g_2‖²
    + 0 ≥ 0`` by Cauchy–Schwarz).  When no pair of gradients conflicts the
    update is the plain sum.  For K > 2 a later projection can re-introduce a
    conflict with a task already handled, so ``⟨d, g_k⟩ ≥ 0`` is *not*
    guaranteed (the paper's analysis covers two tasks).

Implementation
    Every projection coefficient only involves inner products, so the
    surgery runs on the ``K × K`` Gram matrix: ``g_i^PC = Σ_k C_ik g_k`` with
    ``C`` updated in place, and ``d = (1ᵀ C) J``; ``last_weights = 1ᵀ C``.
    The random orders come from a ``torch.Generator`` seeded in the
    constructor (one ``randperm(K − 1)`` per task, tasks in index order), so
    runs are reproducible; ``reset()`` re-seeds it.  A zero gradient ``g_j``
    is never projected on (it cannot conflict).

Target
    Parameters.  ``supports_representation = False``: the paper performs
    surgery on the gradients of the shared parameters, where "conflict" means
    that a step on one task increases another task's loss; removing
    conflicts between representation gradients does not remove them between
    parameter gradients (back-propagation through the encoder is not an
    isometry), and no representation-level variant is proposed.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SOLVE_DTYPE, WeightedAggregator, seeded_generator


class PCGrad(WeightedAggregator):
    """PCGrad (Yu et al., NeurIPS 2020).

    Args:
        seed: seed of the generator drawing the random projection orders.
    """

    name = "pcgrad"

    default_target = "parameters"
    # surgery is defined on shared-parameter gradients; see module docstring
    supports_representation = False

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = int(seed)
        self._generator = seeded_generator(self.seed)

    def extra_repr(self) -> str:
        return f"seed={self.seed}"

    def reset(self) -> None:
        super().reset()
        self._generator = seeded_generator(self.seed)

    def get_extra_state(self) -> dict:
        return {"rng_state": self._generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self._generator.set_state(state["rng_state"].cpu())  # a CPU byte tensor, whatever map_location did

    def projection_coefficients(self, gram: Tensor, orders: list[list[int]] | None = None) -> Tensor:
        """Matrix ``C`` (K, K) with ``g_i^PC = Σ_k C[i, k] g_k``.

        ``orders[i]`` is the order in which task ``i`` visits the other tasks;
        ``None`` draws them from the aggregator's generator (advancing it).
        """
        g = self._solver_gram(self._check_gram(gram))
        k = g.shape[0]
        if orders is None:
            orders = self._draw_orders(k)
        sq_norms = g.diagonal()
        coeffs = torch.eye(k, dtype=SOLVE_DTYPE)
        for i in range(k):
            for j in orders[i]:
                if sq_norms[j] <= 0:
                    continue
                dot = coeffs[i] @ g[:, j]
                if dot < 0:
                    coeffs[i, j] -= dot / sq_norms[j]
        return coeffs

    def _draw_orders(self, k: int) -> list[list[int]]:
        orders = []
        for i in range(k):
            others = [j for j in range(k) if j != i]
            perm = torch.randperm(k - 1, generator=self._generator).tolist()
            orders.append([others[p] for p in perm])
        return orders

    def _weights(self, gram: Tensor) -> Tensor:
        return self.projection_coefficients(gram).sum(dim=0)
