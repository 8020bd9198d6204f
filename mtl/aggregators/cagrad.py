"""CAGrad: conflict-averse gradient descent.

Reference
    Bo Liu, Xingchao Liu, Xiaojie Jin, Peter Stone and Qiang Liu.
    "Conflict-Averse Gradient Descent for Multi-task Learning". Advances in
    Neural Information Processing Systems (NeurIPS), 2021.

Update rule
    With the average gradient ``g₀ = (1/K) Σ_k g_k`` the primal problem is
    ``max_d min_k ⟨g_k, d⟩  s.t.  ‖d − g₀‖ ≤ c‖g₀‖``.  Its dual over the
    simplex is

        ``w* = argmin_{w ∈ Δ_K} F(w),  F(w) = ⟨g_w, g₀⟩ + c‖g₀‖ ‖g_w‖,  g_w = Σ_k w_k g_k``

    and the primal solution is ``d = g₀ + (c‖g₀‖ / ‖g_w*‖) g_w*``; by strong
    duality ``min_k ⟨g_k, d⟩ = F(w*)``.  The authors' code then rescales
    ``d`` by ``1/(1 + c²)`` (``rescale=1``, their default; ``rescale=2`` uses
    ``1/(1 + c)``, ``rescale=0`` none).  ``c = 0`` gives the mean gradient
    ``g₀``.  Paper default ``c = 0.4`` (its multi-task supervised
    experiments).  The result is on the scale of the *mean* gradient.

Solver
    Everything is a function of the Gram matrix ``G``:
    ``⟨g_w, g₀⟩ = wᵀ G 1/K``, ``‖g_w‖² = wᵀ G w``, ``‖g₀‖² = 1ᵀ G 1 / K²``.
    ``F`` is convex on the simplex (a linear term plus a norm) and is
    minimised by accelerated projected gradient (FISTA with backtracking on
    the step size, adaptive restart, and Euclidean projection onto the
    simplex by sorting) on ``G`` scaled to unit maximal diagonal (``F``
    scales uniformly, the minimiser does not move).  It stops when an
    iteration moves ``w`` by less than ``tol`` (∞-norm), when a step without
    momentum no longer decreases ``F`` (rounding level), or after
    ``max_iter`` iterations.  If ``g_w*`` vanishes (0 in the convex hull:
    Pareto-stationary), the correction term has no direction and ``d = g₀``.

Weights
    ``d = Σ_k (1/K + λ w*_k) g_k / rescale`` with ``λ = c‖g₀‖/‖g_w*‖``;
    these are ``last_weights``.

Target
    Parameters.  ``supports_representation = False``: the trust region
    ``‖d − g₀‖ ≤ c‖g₀‖`` and the convergence guarantee to a stationary point
    of the average loss are statements about the parameter update; a ball
    around the average representation gradient is not mapped to a ball
    around the average parameter gradient by back-propagation.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import SOLVE_DTYPE, WeightedAggregator

RESCALES = (0, 1, 2)


def project_to_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of ``v`` onto the probability simplex (sort-based)."""
    k = v.shape[0]
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, dim=0) - 1.0
    idx = torch.arange(1, k + 1, dtype=v.dtype)
    cond = u - css / idx > 0
    rho = int(cond.nonzero().max())
    theta = css[rho] / (rho + 1)
    return (v - theta).clamp(min=0.0)


def cagrad_objective(w: Tensor, gram: Tensor, c: float) -> Tensor:
    """Dual objective ``F(w) = wᵀG1/K + c‖g₀‖ √(wᵀGw)`` (float64)."""
    k = gram.shape[0]
    g0_norm = math.sqrt(max(float(gram.sum()), 0.0)) / k
    return w @ gram.sum(dim=1) / k + c * g0_norm * torch.sqrt((w @ gram @ w).clamp(min=0.0))


def solve_cagrad_dual(gram: Tensor, c: float, max_iter: int = 1000, tol: float = 1e-10) -> Tensor:
    """``argmin_{w ∈ simplex} F(w)`` by FISTA with backtracking and restart."""
    k = gram.shape[0]
    w = torch.full((k,), 1.0 / k, dtype=SOLVE_DTYPE)
    scale = float(gram.diagonal().max())
    if k == 1 or scale <= 0:
        return w
    g = gram / scale
    b = g.sum(dim=1) / k
    phi = c * math.sqrt(max(float(g.sum()), 0.0)) / k

    def f_and_grad(x: Tensor) -> tuple[float, Tensor]:
        gx = g @ x
        norm = math.sqrt(max(float(x @ gx), 0.0))
        value = float(x @ b) + phi * norm
        grad = b + (phi / norm) * gx if norm > 0 else b.clone()
        return value, grad

    lipschitz = 1.0
    y = w.clone()
    t = 1.0
    f_w, _ = f_and_grad(w)
    for _ in range(max_iter):
        f_y, grad_y = f_and_grad(y)
        while True:
            candidate = project_to_simplex(y - grad_y / lipschitz)
            diff = candidate - y
            f_c, _ = f_and_grad(candidate)
            if f_c <= f_y + float(grad_y @ diff) + 0.5 * lipschitz * float(diff @ diff) + 1e-15 * abs(f_y):
                break
            lipschitz *= 2.0
            if lipschitz > 1e30:
                break
        if f_c > f_w:
            if t == 1.0:
                # no decrease even without momentum: converged to rounding
                break
            # adaptive restart: momentum made things worse, restart from w
            y = w.clone()
            t = 1.0
            continue
        move = float((candidate - w).abs().max())
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        y = candidate + ((t - 1.0) / t_next) * (candidate - w)
        w, f_w, t = candidate, f_c, t_next
        lipschitz *= 0.9
        if move < tol:
            break
    return w


class CAGrad(WeightedAggregator):
    """CAGrad (Liu et al., NeurIPS 2021).

    Args:
        c: radius of the trust region relative to ``‖g₀‖`` (paper: 0.4).
        rescale: 1 divides by ``1 + c²`` (authors' default), 2 by ``1 + c``, 0 none.
        max_iter, tol: dual solver budget and stopping tolerance.
    """

    name = "cagrad"

    default_target = "parameters"
    # the trust region and the convergence guarantee live in parameter space
    supports_representation = False

    def __init__(self, c: float = 0.4, rescale: int = 1, max_iter: int = 1000, tol: float = 1e-10) -> None:
        super().__init__()
        if not c >= 0:
            raise ValueError(f"CAGrad: c must be >= 0, got {c}")
        if rescale not in RESCALES:
            raise ValueError(f"CAGrad: rescale must be one of {RESCALES}, got {rescale!r}")
        self.c = float(c)
        self.rescale = int(rescale)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.last_dual_weights: Tensor | None = None

    def extra_repr(self) -> str:
        return f"c={self.c}, rescale={self.rescale}"

    def reset(self) -> None:
        super().reset()
        self.last_dual_weights = None

    def dual_weights(self, gram: Tensor) -> Tensor:
        """``w*`` of the dual problem, float64 CPU."""
        return solve_cagrad_dual(self._solver_gram(self._check_gram(gram)), self.c, self.max_iter, self.tol)

    def _weights(self, gram: Tensor) -> Tensor:
        k = gram.shape[0]
        mean = torch.full((k,), 1.0 / k, dtype=SOLVE_DTYPE)
        if self.c == 0:
            w = mean.clone()
            weights = mean
        else:
            w = solve_cagrad_dual(gram, self.c, self.max_iter, self.tol)
            g0_norm = math.sqrt(max(float(gram.sum()), 0.0)) / k
            gw_norm = math.sqrt(max(float(w @ gram @ w), 0.0))
            scale = max(float(gram.diagonal().max()), 0.0)
            if gw_norm <= 1e-12 * math.sqrt(scale):
                weights = mean
            else:
                weights = mean + (self.c * g0_norm / gw_norm) * w
        self.last_dual_weights = w
        if self.rescale == 1:
            weights = weights / (1.0 + self.c**2)
        elif self.rescale == 2:
            weights = weights / (1.0 + self.c)
        return weights
