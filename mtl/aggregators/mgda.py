"""MGDA / MGDA-UB: the min-norm point of the convex hull of the task gradients.

Reference
    Ozan Sener and Vladlen Koltun. "Multi-Task Learning as Multi-Objective
    Optimization". Advances in Neural Information Processing Systems
    (NeurIPS), 2018.

Update rule
    ``w* = argmin_{w ∈ Δ_K} ‖Σ_k w_k ĝ_k‖² = argmin_{w ∈ Δ_K} wᵀ M w`` with
    ``ĝ_k = g_k / n_k`` the (optionally) normalised gradients and
    ``M = D⁻¹ G D⁻¹`` (``G = J Jᵀ``, ``D = diag(n)``), and the returned
    direction is ``d = Σ_k w*_k g_k``.  With ``normalization='none'``
    (``n = 1``) ``d`` is the min-norm element of ``conv{g_1..g_K}``, a common
    descent direction (``⟨d, g_k⟩ ≥ ‖d‖²`` for every k) that is zero exactly
    at Pareto-stationary points.  The weights sum to one, so ``d`` is on the
    scale of the mean gradient, not of the sum.

Solver (the paper's Algorithm 2, with away steps by default)
    Frank–Wolfe on the simplex working on the ``K × K`` Gram matrix only.
    Like the authors' ``MinNormSolver`` it starts from the best pair: the
    exact two-point min-norm solution of every pair ``(i, j)`` is computed in
    closed form and the pair with the smallest norm is taken (exact for
    K = 2).  Each iteration moves towards the vertex
    ``t = argmin_k (M w)_k`` with the exact line search on the segment
    (the closed-form two-point min-norm problem:
    ``γ = (v₂₂ − v₁₂)/(v₁₁ + v₂₂ − 2 v₁₂)`` clipped to [0, 1]).  Plain
    Frank–Wolfe (the paper's algorithm, ``away_steps=False``) converges only
    sublinearly when the min-norm point lies on a face of the simplex (a
    relative error of 1e-3 on the direction after 250 iterations is
    common), so by default the away-step variant (Lacoste-Julien & Jaggi,
    NeurIPS 2015) is used: when it is the better choice the iterate moves
    away from the worst vertex of its support instead, with the same exact
    line search capped so that the weights stay non-negative; it converges
    linearly.  Stops when the L1 change of ``w`` is below ``tol``, when the
    Frank–Wolfe gap is zero (relative 1e-13), or after ``max_iter``
    iterations (authors' defaults: 250 and 1e-5).

Gradient normalisation (authors' code, "gradient_normalizers")
    ``'none'``: ``n_k = 1``; ``'l2'``: ``n_k = ‖g_k‖``; ``'loss'``:
    ``n_k = L_k``; ``'loss+'``: ``n_k = L_k ‖g_k‖``.  The loss-based modes
    need the current loss values: ``forward(J, losses=...)``.  As in the
    authors' training script, the weights are found on the normalised
    gradients and then applied to the *raw* gradients (they become the loss
    scales), so with a normalisation other than 'none' ``d`` is not the
    min-norm point of the normalised hull.  Zero-norm gradients keep
    ``n_k = 1`` (they contribute nothing either way).

Target
    MGDA-UB (the paper's efficient variant) applies the solver to the
    gradients with respect to the shared representation, which bounds the
    parameter-space objective from above; plain MGDA uses the shared
    parameters.  Both are meaningful, so ``default_target = "representation"``
    and ``supports_representation = True``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SOLVE_DEVICE, SOLVE_DTYPE, WeightedAggregator, _compute_dtype

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def _two_point_min_norm(v11: float, v12: float, v22: float) -> tuple[float, float]:
    """``argmin_{γ∈[0,1]} ‖γ a + (1−γ) b‖²`` from ``v11=‖a‖², v12=⟨a,b⟩, v22=‖b‖²``.

    Returns ``(γ, squared norm at γ)``.
    """
    if v12 >= v11:
        return 1.0, v11
    if v12 >= v22:
        return 0.0, v22
    gamma = (v22 - v12) / (v11 + v22 - 2.0 * v12)
    value = v22 + gamma * (v12 - v22)
    return gamma, value


def min_norm_weights(m: Tensor, max_iter: int = 250, tol: float = 1e-5, away_steps: bool = True) -> Tensor:
    """Frank–Wolfe solution of ``min_{w ∈ simplex} wᵀ M w`` (M symmetric PSD, float64 CPU).

    Best-pair initialisation, then Frank–Wolfe steps towards the vertex
    ``argmin_k (Mw)_k`` with the exact two-point line search; with
    ``away_steps`` the away-step variant (Lacoste-Julien & Jaggi, 2015) may
    instead move away from the worst vertex in the support, which makes the
    convergence linear.  Stops when the L1 change of ``w`` is below ``tol``,
    when the Frank–Wolfe duality gap ``wᵀMw − min_k (Mw)_k`` vanishes (to
    1e-13 relative), or after ``max_iter`` iterations.
    """
    k = m.shape[0]
    w = torch.zeros(k, dtype=m.dtype, device=m.device)
    if k == 1:
        w[0] = 1.0
        return w
    diag = m.diagonal().tolist()
    # best pair initialisation (exact for K = 2)
    best = None
    for i in range(k):
        for j in range(i + 1, k):
            gamma, value = _two_point_min_norm(diag[i], float(m[i, j]), diag[j])
            if best is None or value < best[0]:
                best = (value, i, j, gamma)
    _, i, j, gamma = best
    w[i] = gamma
    w[j] = 1.0 - gamma
    if k == 2:
        return w
    gap_tol = 1e-13 * max(max(diag), 0.0)
    for _ in range(max_iter):
        mw = m @ w
        v11 = float(w @ mw)
        s = int(torch.argmin(mw))
        fw_gap = v11 - float(mw[s])
        if fw_gap <= gap_tol:
            break
        away_gap = -1.0
        if away_steps:
            support = w > 0
            masked = torch.where(support, mw, torch.full_like(mw, -torch.inf))
            v = int(torch.argmax(masked))
            away_gap = float(mw[v]) - v11
        if fw_gap >= away_gap:
            # Frank–Wolfe step: exact line search on the segment [w, e_s]
            gamma, _ = _two_point_min_norm(v11, float(mw[s]), diag[s])
            new_w = gamma * w
            new_w[s] += 1.0 - gamma
        else:
            # away step: w + γ (w − e_v), γ ∈ [0, w_v / (1 − w_v)]
            wv = float(w[v])
            gamma_max = wv / (1.0 - wv) if wv < 1.0 else 0.0
            curvature = v11 - 2.0 * float(mw[v]) + diag[v]
            gamma = gamma_max if curvature <= 0 else min(away_gap / curvature, gamma_max)
            new_w = (1.0 + gamma) * w
            new_w[v] -= gamma
            if gamma == gamma_max:
                new_w[v] = 0.0
            new_w.clamp_(min=0.0)
        change = float((new_w - w).abs().sum())
        w = new_w
        if change < tol:
            break
    return w / w.sum()


class MGDA(WeightedAggregator):
    """Min-norm point of the convex hull of the task gradients (Sener & Koltun, NeurIPS 2018).

    Args:
        normalization: ``'none'`` (default), ``'l2'``, ``'loss'`` or ``'loss+'``
            (the loss-based ones need ``losses`` in :meth:`forward`).
        max_iter: Frank–Wolfe iterations (authors' code: 250).
        tol: stop when the L1 change of the weights is below this (authors' code: 1e-5).
        away_steps: use away steps (linear convergence); False is the paper's plain
            Frank–Wolfe (Algorithm 2).
    """

    name = "mgda"

    # MGDA-UB: the paper's efficient variant works on the shared representation
    default_target = "representation"
    # plain MGDA on parameters and MGDA-UB on the representation are both in the paper
    supports_representation = True

    def __init__(
        self, normalization: str = "none", max_iter: int = 250, tol: float = 1e-5, away_steps: bool = True
    ) -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"MGDA: normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if int(max_iter) < 0:
            raise ValueError(f"MGDA: max_iter must be >= 0, got {max_iter}")
        if not tol >= 0:
            raise ValueError(f"MGDA: tol must be >= 0, got {tol}")
        self.normalization = normalization
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.away_steps = bool(away_steps)

    def extra_repr(self) -> str:
        return (
            f"normalization={self.normalization!r}, max_iter={self.max_iter}, tol={self.tol}, "
            f"away_steps={self.away_steps}"
        )

    def forward(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor:
        jacobian = self._check_jacobian(jacobian)
        work = jacobian.to(_compute_dtype(jacobian.dtype))
        weights = self.weights(work @ work.T, losses=losses)
        self.last_weights = weights.detach()
        return (weights @ work).to(jacobian.dtype)

    def weights(self, gram: Tensor, losses: Tensor | None = None) -> Tensor:
        gram = self._check_gram(gram)
        g = self._solver_gram(gram)
        w = self._weights(g, self._normalizers(g, losses))
        return w.to(device=gram.device, dtype=gram.dtype)

    def _normalizers(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        k = gram.shape[0]
        norms = gram.diagonal().clamp(min=0.0).sqrt()
        norms = torch.where(norms > 0, norms, torch.ones_like(norms))
        if self.normalization == "none":
            return torch.ones(k, dtype=SOLVE_DTYPE)
        if self.normalization == "l2":
            return norms
        if losses is None:
            raise ValueError(
                f"MGDA: normalization={self.normalization!r} needs the loss values: forward(J, losses=...)"
            )
        if isinstance(losses, (list, tuple)):
            loss = torch.tensor([float(v) for v in losses], dtype=SOLVE_DTYPE)
        else:
            loss = torch.as_tensor(losses).detach().to(device=SOLVE_DEVICE, dtype=SOLVE_DTYPE).reshape(-1)
        if loss.numel() != k:
            raise ValueError(f"MGDA: got {loss.numel()} loss values for {k} gradients")
        if not bool(torch.isfinite(loss).all()) or not bool((loss > 0).all()):
            raise ValueError(
                f"MGDA: normalization={self.normalization!r} needs finite positive losses, got {loss.tolist()}"
            )
        return loss if self.normalization == "loss" else loss * norms

    def _weights(self, gram: Tensor, normalizers: Tensor | None = None) -> Tensor:
        if normalizers is None:
            normalizers = self._normalizers(gram, None)
        m = gram / torch.outer(normalizers, normalizers)
        return min_norm_weights(m, self.max_iter, self.tol, self.away_steps)
