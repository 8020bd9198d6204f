"""IMTL-G: impartial multi-task learning, gradient balance.

Reference
    Liyang Liu, Yi Li, Zhanghui Kuang, Jing-Hao Xue, Yimin Chen, Wenming Yang,
    Qingmin Liao and Wayne Zhang. "Towards Impartial Multi-task Learning".
    International Conference on Learning Representations (ICLR), 2021.

Update rule
    Find weights ``α`` with ``Σ_k α_k = 1`` such that ``d = Σ_k α_k g_k`` has
    equal projections onto every unit gradient ``u_k = g_k/‖g_k‖``:
    ``⟨d, u_1⟩ = ⟨d, u_k⟩`` for all k.  The paper's closed form is
    ``α_{2:K} = g_1 Uᵀ (D Uᵀ)⁻¹``, ``α_1 = 1 − Σ_{k≥2} α_k`` with rows
    ``D_k = g_1 − g_k`` and ``U_k = u_1 − u_k``.  Equivalently, writing the
    conditions on the Gram matrix (``⟨g_i, u_k⟩ = G_ik/‖g_k‖``): the
    projections all equal some ``λ`` iff ``G α = λ n`` with ``n_k = ‖g_k‖``,
    so ``α = G⁺ n / (1ᵀ G⁺ n)``.  This symmetric form is used here (it
    coincides with the paper's when ``G`` is invertible, does not single out
    task 1, and with the pseudo-inverse stays defined for linearly dependent
    gradients; a zero gradient gets weight 0).  No hyperparameters.  The
    weights may be negative; they sum to one, so ``d`` is on the scale of
    the mean gradient.

    Caveat (kept from the paper by default): the common projection is
    ``λ = 1/(1ᵀ G⁻¹ n)``, and for ill-conditioned Jacobians (seen for K ≥ 5
    with nearly square J, about 1 % of random Gaussian cases) ``1ᵀ G⁻¹ n < 0``,
    so the paper's normalisation ``Σ α = 1`` yields equal *negative*
    projections: a direction that increases every loss.  With
    ``ensure_descent=True`` the weights are normalised by ``|1ᵀ G⁻¹ n|``
    instead (``Σ α = ±1``), which keeps the equal projections and makes them
    positive.  If ``1ᵀ G⁺ n`` vanishes (relative 1e-12) the mean gradient is
    returned.

    (The paper's loss-balance part, IMTL-L, is a loss-level weighting and is
    not part of this aggregator.)

Target
    The paper's Algorithm 1 computes the task gradients with respect to the
    shared feature ``z`` (as MGDA-UB) and uses the resulting ``α`` as the
    scales of the task losses for the shared parameters:
    ``default_target = "representation"``.  The weights are a function of
    the gradients' geometry only and apply equally to parameter gradients,
    so ``supports_representation = True`` and ``target="parameters"`` is
    also valid.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SOLVE_DTYPE, WeightedAggregator


class IMTLG(WeightedAggregator):
    """IMTL-G (Liu et al., ICLR 2021): equal projections onto the unit task gradients.

    Args:
        ensure_descent: normalise by ``|Σ α|`` so the common projection is positive
            (default False: the paper's ``Σ α = 1``; see the module docstring).
    """

    name = "imtl_g"

    # Algorithm 1 of the paper differentiates the shared feature z
    default_target = "representation"
    # closed-form loss scales from gradient geometry: valid on either target
    supports_representation = True

    def __init__(self, ensure_descent: bool = False) -> None:
        super().__init__()
        self.ensure_descent = bool(ensure_descent)

    def extra_repr(self) -> str:
        return f"ensure_descent={self.ensure_descent}"

    def _weights(self, gram: Tensor) -> Tensor:
        k = gram.shape[0]
        norms = gram.diagonal().clamp(min=0.0).sqrt()
        if k == 1 or float(norms.max()) == 0.0:
            return torch.full((k,), 1.0 / k, dtype=SOLVE_DTYPE)
        scale = float(norms.max())
        x = torch.linalg.pinv(gram / scale**2, hermitian=True) @ (norms / scale)
        total = float(x.sum())
        if abs(total) <= 1e-12 * float(x.abs().sum()):
            # 1ᵀ G⁺ n ≈ 0: no weights summing to ±1 give finite equal projections; use the mean
            return torch.full((k,), 1.0 / k, dtype=SOLVE_DTYPE)
        return x / (abs(total) if self.ensure_descent else total)
