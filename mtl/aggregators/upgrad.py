"""UPGrad: unconflicting projection of gradients (Jacobian descent).

Reference
    Pierre Quinton and Valérian Rey. "Jacobian Descent for Multi-Objective
    Optimization". arXiv:2406.16232, 2024.

Update rule
    Project every row ``g_i`` of ``J`` onto the dual cone of the rows,
    ``C = {x : J x ≥ 0}`` (the directions that conflict with no task), and
    average: ``d = (1/K) Σ_i π_C(g_i)``.  Every projection lies in ``C``, so
    ``⟨d, g_k⟩ ≥ 0`` for every k (non-conflicting); identical rows give the
    row itself.  No hyperparameters (the paper's general form allows a
    preference vector; the mean is its default).

Projection as a small QP on the Gram matrix
    By the paper's dual characterisation, ``π_C(Jᵀu) = Jᵀ w`` with
    ``w = argmin_{v ≥ u} vᵀ G v`` (``G = J Jᵀ``).  For ``u = e_i`` write
    ``v = e_i + μ``: ``μ = argmin_{μ ≥ 0} (e_i + μ)ᵀ G (e_i + μ)``.  Its KKT
    conditions are exactly: ``μ ≥ 0`` (dual feasibility),
    ``G(e_i + μ) = J π ≥ 0`` (the projection lies in the cone) and
    ``μ_k (G(e_i + μ))_k = 0`` (complementary slackness).
    With ``G = AᵀA`` (``A = Λ^{1/2} Vᵀ`` from the eigen-decomposition of
    ``G``) this is the non-negative least-squares problem
    ``min_{μ ≥ 0} ‖A μ + A e_i‖²``, solved exactly (to rounding) by the
    Lawson–Hanson active-set method, on ``G`` scaled to unit maximal
    diagonal.  Unlike TorchJD's implementation (quadprog on a regularised
    Gram matrix, ``G + 1e-4·I``), no regularisation is added, so the KKT
    conditions hold for the exact ``G``.

    ``last_weights = (1/K) Σ_i (e_i + μ_i)``.

Target
    Parameters.  ``supports_representation = False``: the defining property
    (the update conflicts with no task's *parameter* gradient) does not
    survive back-propagation of a representation-level direction through
    the encoder (``⟨Jzᵀ a, Jzᵀ b⟩ ≠ ⟨a, b⟩``); the paper's Jacobian is taken
    with respect to the parameters.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SOLVE_DTYPE, WeightedAggregator


def nnls(a: Tensor, b: Tensor, tol: float = 1e-13, max_iter: int | None = None) -> Tensor:
    """``argmin_{x ≥ 0} ‖a x − b‖²`` by the Lawson–Hanson active-set method (float64).

    ``tol`` is the threshold on the gradient ``aᵀ(b − a x)`` for adding a
    variable to the passive set.
    """
    n = a.shape[1]
    if max_iter is None:
        max_iter = 10 * n + 10
    x = torch.zeros(n, dtype=a.dtype)
    passive = torch.zeros(n, dtype=torch.bool)
    gradient = a.T @ (b - a @ x)
    iterations = 0
    while iterations < max_iter:
        candidates = (~passive) & (gradient > tol)
        if not bool(candidates.any()):
            break
        j = int(torch.argmax(torch.where(candidates, gradient, torch.full_like(gradient, -torch.inf))))
        passive[j] = True
        while True:
            iterations += 1
            z = torch.zeros(n, dtype=a.dtype)
            idx = passive.nonzero().flatten()
            z[idx] = torch.linalg.lstsq(a[:, idx], b.unsqueeze(1), driver="gelsd").solution.flatten()
            blocking = passive & (z <= 0)
            if not bool(blocking.any()) or iterations >= max_iter:
                break
            ratio = torch.full_like(x, torch.inf)
            ratio[blocking] = x[blocking] / (x[blocking] - z[blocking])
            step = float(ratio.min())
            x = x + step * (z - x)
            # the blocking variable(s) reach zero and leave the passive set
            passive &= (x > 0) & (ratio > step)
            x = torch.where(passive, x, torch.zeros_like(x))
        x = z.clamp(min=0.0)
        gradient = a.T @ (b - a @ x)
    return x


class UPGrad(WeightedAggregator):
    """UPGrad (Quinton & Rey, 2024): mean of the projections onto the dual cone of the rows.

    Args:
        tol: Lawson–Hanson tolerance on the (scaled) gradient for activating a constraint.
    """

    name = "upgrad"

    default_target = "parameters"
    # non-conflict is a property of the parameter update; see module docstring
    supports_representation = False

    def __init__(self, tol: float = 1e-13) -> None:
        super().__init__()
        self.tol = float(tol)

    def projection_weights(self, gram: Tensor) -> Tensor:
        """``W`` (K, K), float64 CPU: row ``i`` holds ``e_i + μ_i``, so ``π_C(g_i) = W[i] @ J``."""
        return self._projection_weights(self._solver_gram(self._check_gram(gram)))

    def _projection_weights(self, gram: Tensor) -> Tensor:
        k = gram.shape[0]
        eye = torch.eye(k, dtype=SOLVE_DTYPE)
        scale = float(gram.diagonal().max())
        if scale <= 0:
            return eye
        eigenvalues, eigenvectors = torch.linalg.eigh(gram / scale)
        a = eigenvalues.clamp(min=0.0).sqrt().unsqueeze(1) * eigenvectors.T  # aᵀa = G / scale
        rows = [eye[i] + nnls(a, -a[:, i], self.tol) for i in range(k)]
        return torch.stack(rows)

    def _weights(self, gram: Tensor) -> Tensor:
        return self._projection_weights(gram).mean(dim=0)
