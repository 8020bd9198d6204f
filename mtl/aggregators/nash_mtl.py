"""Nash-MTL: multi-task learning as a bargaining game.

Reference
    Aviv Navon, Aviv Shamsian, Idan Achituve, Haggai Maron, Kenji Kawaguchi,
    Gal Chechik and Ethan Fetaya. "Multi-Task Learning as a Bargaining Game".
    International Conference on Machine Learning (ICML), 2022.

Update rule
    With ``G`` the ``d × K`` matrix whose columns are the task gradients, the
    Nash bargaining solution in a ball is ``Δθ = G α`` where ``α ∈ R^K_{>0}``
    solves ``(GᵀG) α = 1/α`` (element-wise reciprocal).  ``GᵀG`` is the
    ``K × K`` Gram matrix of the gradients.  Then ``‖Δθ‖² = αᵀGᵀGα =
    Σ_k α_k (GᵀGα)_k = K``: before clipping the direction has norm ``√K``
    whatever the gradients' scale.  The authors' code divides the Gram matrix
    by its Frobenius norm ``f`` for the solver but multiplies ``f`` back into
    the constraint (``α_k · f · (Ĝα)_k ≥ 1``, ``Ĝ = GᵀG / f``), so its ``α``
    solves the system of the raw ``GᵀG``; here the same: ``α̂`` solves
    ``(GᵀG / f) α̂ = 1/α̂`` (well scaled for Newton's method) and
    ``α = α̂ / √f``.  ``normalize_gram=False`` solves the raw system directly
    (same ``α`` up to rounding; only the conditioning differs).

    Options from the paper / authors' code: ``update_weights_every`` (recompute
    ``α`` every that many calls and reuse the previous ``α`` in between;
    default 1) and ``max_norm`` (if > 0, the direction is scaled down to this
    Euclidean norm when longer -- the authors clip the shared gradient's norm
    to ``max_norm``, default 1.0).  The returned weights include the clipping.

Solver (in-house, replaces the authors' cvxpy sequential convex programs)
    ``(GᵀG)α = 1/α, α > 0`` is exactly the stationarity condition of the
    strictly convex barrier problem ``min_{α>0} ½ αᵀ M α − Σ_k log α_k``
    (``M = GᵀG``; Hessian ``M + diag(1/α²) ≻ 0``), so its solution is unique
    when it exists.  It is found by a damped Newton method: Newton step
    ``Δ = −(M + diag(α⁻²))⁻¹ (Mα − 1/α)``, fraction-to-boundary rule
    (at most 99 % of the way to ``α_k = 0``) and Armijo backtracking on the
    barrier objective (skipped once the Newton decrement is at rounding
    level); once ``max_k |α_k (Mα)_k − 1| < tol`` a few pure Newton steps
    polish the solution to rounding level (quadratic convergence: typically
    < 15 iterations in all).  Start:
    ``α_k ∝ 1/√M_kk`` scaled so that ``αᵀMα = K`` (exact when the gradients
    are orthogonal).
    A solution exists iff no nonzero ``v ≥ 0`` has ``Jᵀv = 0``.  Zero
    gradients are taken out (weight 0: they contribute nothing).  If the
    remaining gradients are Pareto-stationary the barrier problem is
    unbounded (``α`` diverges along ``v``); the solver detects the
    divergence (or stops at ``max_iter``), warns, and, like the authors'
    code on solver failure, the previous ``α`` (or the starting point) is
    used.

Target
    Parameters.  ``supports_representation = False``: the bargaining
    utilities ``u_k(Δθ) = ⟨g_k, Δθ⟩`` and the ball constraint that define
    the solution (and ``max_norm``) are on the parameter update; the
    axioms do not carry through the encoder's Jacobian, and the paper only
    uses shared-parameter gradients.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from .base import SOLVE_DTYPE, WeightedAggregator


def solve_nash_weights(m: Tensor, max_iter: int = 100, tol: float = 1e-10) -> tuple[Tensor, bool]:
    """Solve ``M α = 1/α, α > 0`` (M symmetric PSD float64) by damped Newton.

    Returns ``(α, converged)`` where converged means ``max |α (Mα) − 1| < tol``.
    """
    k = m.shape[0]
    alpha = 1.0 / m.diagonal().clamp(min=1e-300).sqrt()
    alpha = alpha * math.sqrt(k / max(float(alpha @ m @ alpha), 1e-300))
    blow_up = 1e12 * float(alpha.max())

    def barrier(a: Tensor) -> float:
        return 0.5 * float(a @ m @ a) - float(torch.log(a).sum())

    def residual(a: Tensor) -> float:
        return float((a * (m @ a) - 1.0).abs().max())

    def newton_step(a: Tensor) -> tuple[Tensor, Tensor] | None:
        grad = m @ a - 1.0 / a
        try:
            step = -torch.linalg.solve(m + torch.diag(1.0 / a**2), grad)
        except RuntimeError:  # singular Hessian: α diverging (no solution)
            return None
        return grad, step

    def to_boundary(a: Tensor, step: Tensor) -> float:
        shrinking = step < 0
        if not bool(shrinking.any()):
            return 1.0
        return min(1.0, 0.99 * float((-a[shrinking] / step[shrinking]).min()))

    value = barrier(alpha)
    for _ in range(max_iter):
        if residual(alpha) < tol:
            # polish with pure Newton steps while they help (quadratic convergence)
            for _ in range(3):
                out = newton_step(alpha)
                if out is None:
                    break
                candidate = alpha + to_boundary(alpha, out[1]) * out[1]
                if residual(candidate) >= residual(alpha):
                    break
                alpha = candidate
            return alpha, True
        out = newton_step(alpha)
        if out is None:
            return alpha, False
        grad, step = out
        t = to_boundary(alpha, step)
        slope = float(grad @ step)  # = −(Newton decrement)²
        if -slope > 1e-8 * max(1.0, abs(value)):
            # Armijo backtracking on the barrier objective; in the pure Newton phase
            # (tiny decrement) the objective differences are below rounding and are skipped
            while True:
                candidate = alpha + t * step
                new_value = barrier(candidate)
                if new_value <= value + 1e-4 * t * slope or t < 1e-10:
                    break
                t *= 0.5
        else:
            candidate = alpha + t * step
            new_value = barrier(candidate)
        alpha, value = candidate, new_value
        if not bool(torch.isfinite(alpha).all()) or float(alpha.max()) > blow_up:
            return alpha, False
    return alpha, residual(alpha) < tol


class NashMTL(WeightedAggregator):
    """Nash-MTL (Navon et al., ICML 2022).

    Args:
        update_weights_every: recompute ``α`` every that many calls (paper: 1).
        max_norm: clip the direction's norm to this if > 0 (authors' code: 1.0).
        normalize_gram: solve on the Gram matrix divided by its Frobenius norm and rescale
            (authors' code: True); the weights are those of the raw system either way.
        max_iter, tol: Newton budget and tolerance on ``max |α (Mα) − 1|``.
    """

    name = "nash_mtl"

    default_target = "parameters"
    # bargaining utilities, ball constraint and max_norm are about the parameter update
    supports_representation = False

    def __init__(
        self,
        update_weights_every: int = 1,
        max_norm: float = 1.0,
        normalize_gram: bool = True,
        max_iter: int = 100,
        tol: float = 1e-10,
    ) -> None:
        super().__init__()
        if int(update_weights_every) < 1:
            raise ValueError(f"NashMTL: update_weights_every must be >= 1, got {update_weights_every}")
        if not max_norm >= 0:
            raise ValueError(f"NashMTL: max_norm must be >= 0, got {max_norm}")
        self.update_weights_every = int(update_weights_every)
        self.max_norm = float(max_norm)
        self.normalize_gram = bool(normalize_gram)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.step = 0
        self._alpha: Tensor | None = None
        self.last_converged: bool | None = None

    def extra_repr(self) -> str:
        return (
            f"update_weights_every={self.update_weights_every}, max_norm={self.max_norm}, "
            f"normalize_gram={self.normalize_gram}"
        )

    def reset(self) -> None:
        super().reset()
        self.step = 0
        self._alpha = None
        self.last_converged = None

    def get_extra_state(self) -> dict:
        return {"step": self.step, "alpha": self._alpha}

    def set_extra_state(self, state: dict) -> None:
        self.step = int(state["step"])
        alpha = state["alpha"]
        self._alpha = None if alpha is None else alpha.detach().to(dtype=SOLVE_DTYPE, device="cpu").clone()

    def bargaining_weights(self, gram: Tensor) -> Tensor:
        """``α`` (before ``max_norm`` clipping) for this Gram matrix.

        Does not advance the step counter or replace the stored ``α``; sets ``last_converged``.
        """
        g = self._solver_gram(self._check_gram(gram))
        alpha, converged = self._solve(g, None)
        self.last_converged = converged
        return alpha

    def _solve(self, gram: Tensor, previous: Tensor | None) -> tuple[Tensor, bool]:
        """``α`` with ``α ⊙ (Gα) = 1`` for the raw Gram matrix ``G`` (``previous`` on failure)."""
        k = gram.shape[0]
        m, fro = gram, 1.0
        if self.normalize_gram:
            norm = float(torch.linalg.matrix_norm(gram))
            if norm > 0:
                m, fro = gram / norm, norm
        alpha, converged = self._solve_scaled(m, previous if previous is None else previous * math.sqrt(fro), k)
        # α̂ solves M α̂ = 1/α̂ for M = G / f; α = α̂ / √f solves G α = 1/α (the authors' constraint)
        return alpha / math.sqrt(fro), converged

    def _solve_scaled(self, m: Tensor, previous: Tensor | None, k: int) -> tuple[Tensor, bool]:
        diag = m.diagonal()
        active = diag > 1e-14 * float(diag.max()) if float(diag.max()) > 0 else torch.zeros(k, dtype=torch.bool)
        alpha = torch.zeros(k, dtype=SOLVE_DTYPE)
        if not bool(active.any()):
            return alpha, True
        idx = active.nonzero().flatten()
        sub, converged = solve_nash_weights(m[idx][:, idx], self.max_iter, self.tol)
        if converged:
            alpha[idx] = sub
            return alpha, True
        if previous is not None and previous.shape[0] == k and bool(torch.isfinite(previous).all()):
            return previous.clone(), False
        # starting point of the solver
        start = 1.0 / m[idx, idx].sqrt()
        quad = float(start @ m[idx][:, idx] @ start)
        alpha[idx] = start * math.sqrt(idx.numel() / quad) if quad > 0 else start
        return alpha, False

    def _weights(self, gram: Tensor) -> Tensor:
        k = gram.shape[0]
        recompute = (
            self._alpha is None
            or self._alpha.shape[0] != k
            or self.step % self.update_weights_every == 0
        )
        if recompute:
            alpha, converged = self._solve(gram, self._alpha)
            self.last_converged = converged
            if not converged:
                warnings.warn(
                    "NashMTL: the bargaining system (GᵀG)α = 1/α has no solution here "
                    "(Pareto-stationary gradients?); falling back to the previous weights",
                    RuntimeWarning,
                    stacklevel=3,
                )
            self._alpha = alpha
        self.step += 1
        weights = self._alpha.clone()
        if self.max_norm > 0:
            norm = math.sqrt(max(float(weights @ gram @ weights), 0.0))
            if norm > self.max_norm:
                weights = weights * (self.max_norm / norm)
        return weights
