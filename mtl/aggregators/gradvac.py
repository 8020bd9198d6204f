"""Gradient Vaccine (GradVac): adaptive gradient-similarity targets.

Reference
    Zirui Wang, Yulia Tsvetkov, Orhan Firat and Yuan Cao. "Gradient Vaccine:
    Investigating and Improving Multi-task Optimization in Massively
    Multilingual Models". International Conference on Learning
    Representations (ICLR), 2021.

Update rule (the paper's Algorithm 1, on the whole gradient vector)
    State: a target cosine ``φ̂_ij`` for every ordered pair ``i ≠ j``,
    initialised to 0.  At each step, for every task ``i`` start from
    ``g_i' = g_i`` and, for every ``j ≠ i`` in a uniformly random order:

    * ``φ_ij = cos(g_i', g_j)``;
    * if ``φ_ij < φ̂_ij``: ``g_i' ← g_i' + a_ij g_j`` with
      ``a_ij = ‖g_i'‖ (φ̂_ij √(1−φ_ij²) − φ_ij √(1−φ̂_ij²)) / (‖g_j‖ √(1−φ̂_ij²))``,
      the move along ``g_j`` that raises the cosine exactly to ``φ̂_ij``;
    * ``φ̂_ij ← (1 − β) φ̂_ij + β φ_ij`` (EMA with the cosine measured before
      the adjustment).

    The update is ``d = Σ_i g_i'``.  Paper default ``β = 0.01``.  With the
    initial targets (all 0) the first step coincides with PCGrad for the same
    orders.  The paper also applies the rule per parameter block at several
    granularities; here it is applied to the whole vector given.

Edge cases
    Pairs where ``g_i'`` or ``g_j`` is zero have no cosine: no adjustment and
    no EMA update.  In the adjustment the target is clipped to
    ``|φ̂| ≤ 1 − 1e-6`` so the coefficient stays finite.

State
    ``targets`` (K × K, float64, diagonal unused) and ``num_steps``;
    ``reset()`` returns to the initial state (targets cleared, generator
    re-seeded); both are saved by ``state_dict()``.  Calling with a different
    number of tasks than the stored targets raises ``ValueError`` (call
    ``reset()`` first).

Implementation
    As for PCGrad, cosines and coefficients only involve inner products, so
    the rule runs on the Gram matrix: ``g_i' = Σ_k C_ik g_k``,
    ``d = (1ᵀ C) J``; ``last_weights = 1ᵀ C``.

Target
    Parameters.  ``supports_representation = False``: the targets are running
    averages of the similarity between the tasks' *parameter* gradients (the
    paper's object of study, measured per layer); representation gradients
    of different mini-batches live on different samples, so their cosine
    similarities are not a stationary quantity an EMA target can track.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import SOLVE_DTYPE, WeightedAggregator, seeded_generator

_TARGET_CLIP = 1.0 - 1e-6


class GradVac(WeightedAggregator):
    """Gradient Vaccine (Wang et al., ICLR 2021).

    Args:
        beta: EMA rate of the cosine targets (paper: 0.01).
        seed: seed of the generator drawing the random task orders.
    """

    name = "gradvac"

    default_target = "parameters"
    # EMA targets of parameter-gradient similarity; see module docstring
    supports_representation = False

    def __init__(self, beta: float = 0.01, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"GradVac: beta must be in [0, 1], got {beta}")
        self.beta = float(beta)
        self.seed = int(seed)
        self._generator = seeded_generator(self.seed)
        self._targets: Tensor | None = None
        self.num_steps = 0

    def extra_repr(self) -> str:
        return f"beta={self.beta}, seed={self.seed}"

    @property
    def targets(self) -> Tensor | None:
        """Copy of the cosine targets ``φ̂`` (K, K), or None before the first step."""
        return None if self._targets is None else self._targets.clone()

    def reset(self) -> None:
        super().reset()
        self._generator = seeded_generator(self.seed)
        self._targets = None
        self.num_steps = 0

    def get_extra_state(self) -> dict:
        return {"rng_state": self._generator.get_state(), "targets": self.targets, "num_steps": self.num_steps}

    def set_extra_state(self, state: dict) -> None:
        self._generator.set_state(state["rng_state"].cpu())  # a CPU byte tensor, whatever map_location did
        targets = state["targets"]
        self._targets = None if targets is None else targets.detach().to(dtype=SOLVE_DTYPE, device="cpu").clone()
        self.num_steps = int(state["num_steps"])

    def _weights(self, gram: Tensor) -> Tensor:
        k = gram.shape[0]
        if self._targets is None:
            self._targets = torch.zeros(k, k, dtype=SOLVE_DTYPE)
        elif self._targets.shape[0] != k:
            raise ValueError(
                f"GradVac: got {k} gradients but the stored targets are for {self._targets.shape[0]}; call reset()"
            )
        targets = self._targets
        g = gram.tolist()
        norms = [math.sqrt(max(g[j][j], 0.0)) for j in range(k)]
        coeffs = torch.eye(k, dtype=SOLVE_DTYPE)
        beta = self.beta
        for i in range(k):
            others = [j for j in range(k) if j != i]
            perm = torch.randperm(k - 1, generator=self._generator).tolist()
            row = coeffs[i]
            for j in (others[p] for p in perm):
                if norms[j] <= 0:
                    continue
                gram_row = row @ gram  # ⟨g_i', g_k⟩ for every k
                gi_sq = float(gram_row @ row)
                if gi_sq <= 0:
                    continue
                gi_norm = math.sqrt(gi_sq)
                phi = max(-1.0, min(1.0, float(gram_row[j]) / (gi_norm * norms[j])))
                target = float(targets[i, j])
                if phi < target:
                    t = max(-_TARGET_CLIP, min(_TARGET_CLIP, target))
                    root_t = math.sqrt(1.0 - t * t)
                    step = gi_norm * (t * math.sqrt(1.0 - phi * phi) - phi * root_t) / (norms[j] * root_t)
                    row[j] += step
                targets[i, j] = (1.0 - beta) * target + beta * phi
        self.num_steps += 1
        return coeffs.sum(dim=0)
