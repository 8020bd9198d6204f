"""Aligned-MTL: independent component alignment of the task gradients.

Reference
    Dmitry Senushkin, Nikolay Patakin, Arseny Kuznetsov and Anton Konushin.
    "Independent Component Alignment for Multi-Task Learning". IEEE/CVF
    Conference on Computer Vision and Pattern Recognition (CVPR), 2023.

Update rule
    Let ``J = V Σ Uᵀ`` be the (thin) SVD of the ``K × d`` Jacobian, obtained
    from the eigen-decomposition of the Gram matrix ``J Jᵀ = V Λ Vᵀ``
    (``Σ = Λ^{1/2}``), restricted to the ``R`` eigenvalues above
    ``rank_tol · λ_max``; the default ``rank_tol = K · eps(float32)`` is the
    authors' threshold (their code uses the float32 epsilon whatever the
    input), which treats singular values below about
    ``√(K·1.2e-7) · σ_max`` as zero and so keeps ``1/σ`` bounded.  The aligned Jacobian replaces every singular value by a common
    one: ``Ĵ = σ V Uᵀ = B J`` with ``B = σ V Σ⁻¹ Vᵀ`` (``K × K``), so ``Ĵ``
    has condition number 1 on its span (``Ĵ Ĵᵀ = σ² V Vᵀ``).  The update is
    ``d = Ĵᵀ ω = (B ω)ᵀ J`` for task importances ``ω``; the authors' code
    uses ``ω = 1`` (a sum), the default here.  ``σ`` follows ``scale_mode``:
    ``'min'`` (the paper: the smallest singular value ``√λ_min``),
    ``'median'`` (``√median(λ)``) or ``'rmse'`` (``√mean(λ)``).
    ``last_weights = B ω``.

Target
    Parameters by default; ``supports_representation = True``: the paper
    also proposes Aligned-MTL-UB, which aligns the gradients with respect to
    the shared representation (an upper bound, as MGDA-UB).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SOLVE_DTYPE, WeightedAggregator

SCALE_MODES = ("min", "median", "rmse")


class AlignedMTL(WeightedAggregator):
    """Aligned-MTL (Senushkin et al., CVPR 2023).

    Args:
        scale_mode: ``'min'`` (paper), ``'median'`` or ``'rmse'``.
        task_weights: importances ``ω`` (K,), default all ones (authors' code).
        rank_tol: eigenvalues below ``rank_tol · λ_max`` are treated as zero
            (default ``K · finfo(float32).eps``, the authors' threshold).
    """

    name = "aligned_mtl"

    default_target = "parameters"
    # the paper's Aligned-MTL-UB variant works on the shared representation
    supports_representation = True

    def __init__(
        self, scale_mode: str = "min", task_weights: Tensor | None = None, rank_tol: float | None = None
    ) -> None:
        super().__init__()
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"AlignedMTL: scale_mode must be one of {SCALE_MODES}, got {scale_mode!r}")
        self.scale_mode = scale_mode
        self.task_weights = None if task_weights is None else torch.as_tensor(task_weights, dtype=SOLVE_DTYPE)
        if rank_tol is not None and not rank_tol >= 0:
            raise ValueError(f"AlignedMTL: rank_tol must be >= 0, got {rank_tol}")
        self.rank_tol = None if rank_tol is None else float(rank_tol)

    def extra_repr(self) -> str:
        return f"scale_mode={self.scale_mode!r}"

    def alignment_matrix(self, gram: Tensor) -> Tensor:
        """``B`` (K, K), float64 CPU, with aligned Jacobian ``Ĵ = B J``."""
        return self._alignment(self._solver_gram(self._check_gram(gram)))

    def _alignment(self, gram: Tensor) -> Tensor:
        k = gram.shape[0]
        rank_tol = k * torch.finfo(torch.float32).eps if self.rank_tol is None else self.rank_tol
        eigenvalues, eigenvectors = torch.linalg.eigh(gram)
        top = float(eigenvalues.max())
        if top <= 0:
            return torch.zeros(k, k, dtype=SOLVE_DTYPE)
        keep = eigenvalues > top * rank_tol
        lam = eigenvalues[keep]
        vecs = eigenvectors[:, keep]
        if self.scale_mode == "min":
            scale = lam.min().sqrt()
        elif self.scale_mode == "median":
            scale = lam.median().sqrt()
        else:
            scale = lam.mean().sqrt()
        return (vecs * (scale / lam.sqrt())) @ vecs.T

    def _weights(self, gram: Tensor) -> Tensor:
        k = gram.shape[0]
        omega = torch.ones(k, dtype=SOLVE_DTYPE) if self.task_weights is None else self.task_weights
        if omega.numel() != k:
            raise ValueError(f"AlignedMTL: got {omega.numel()} task weights for {k} gradients")
        return self._alignment(gram) @ omega
