"""Gradient diagnostics between loss terms: how much do the terms agree?

Used by the engine for TensorBoard (``train.gradient_diagnostics_every``) and
usable on its own.  From the Jacobian ``J`` (K × d, one row per term):

* pairwise cosine similarity ``cos(g_i, g_j)``: negative means the terms
  conflict (the quantity PCGrad and GradVac react to);
* gradient-norm ratio ``‖g_i‖ / ‖g_j‖``: how unevenly the terms pull (what
  GradNorm and IMTL balance).
"""
from __future__ import annotations

from itertools import combinations

import torch
from torch import Tensor


def gradient_agreement(jacobian: Tensor, names: list[str], eps: float = 1e-12) -> dict[str, float]:
    """``{"cosine/a|b": …, "norm_ratio/a|b": …, "norm/a": …}`` for every term and pair of terms."""
    if jacobian.dim() != 2 or jacobian.shape[0] != len(names):
        raise ValueError(f"need a ({len(names)}, d) Jacobian, got {tuple(jacobian.shape)}")
    j = jacobian.detach().double()
    norms = j.norm(dim=1)
    out = {f"norm/{n}": float(v) for n, v in zip(names, norms)}
    for a, b in combinations(range(len(names)), 2):
        pair = f"{names[a]}|{names[b]}"
        out[f"cosine/{pair}"] = float(j[a] @ j[b] / (norms[a] * norms[b]).clamp_min(eps))
        out[f"norm_ratio/{pair}"] = float(norms[a] / norms[b].clamp_min(eps))
    return out
