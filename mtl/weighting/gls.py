"""Geometric Loss Strategy (GLS).

Reference
    Sumanth Chennupati, Ganesh Sistu, Senthil Yogamani and Samir A. Rawashdeh.
    "MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss Strategy
    for Multi-Task Learning". IEEE/CVF Conference on Computer Vision and
    Pattern Recognition Workshops (CVPR-W), 2019.

Update rule
    The terms are combined by their geometric mean::

        L = (Π_k L_k)^(1/K)

    whose gradient is ``∂L/∂L_k = L / (K · L_k)``: each term is weighted by
    the inverse of its own value, so the combination is invariant to the
    scale of each loss (multiplying ``L_k`` by ``c`` multiplies ``L`` by
    ``c^(1/K)`` and leaves the direction unchanged).  The reported weight of
    term ``k`` is this derivative, ``L / (K L_k)``.  GLS has no
    hyperparameters and no state.

Numerics
    ``L`` is computed as ``exp(mean_k log L_k)``, which equals the product
    form but neither overflows nor underflows for many terms (``K = 40``
    losses of 1e-3 have a product of 1e-120).  Every term must be strictly
    positive; a zero or negative term is an error that names it (NaN terms
    are passed through to the engine's non-finite guard).
"""
from __future__ import annotations

import torch

from .base import LossWeighting, check_terms


class GeometricLoss(LossWeighting):
    """Geometric loss strategy: the geometric mean of the terms (Chennupati et al. 2019).

    Chennupati et al., "MultiNet++", CVPR workshops 2019.  No hyperparameters.
    """

    name = "gls"

    def combine(self, losses):
        names = check_terms(losses, "GeometricLoss")
        values = torch.stack([losses[n] for n in names])
        detached = values.detach()
        bad = [n for n, ok in zip(names, (detached <= 0).tolist()) if ok]
        if bad:
            raise ValueError(
                f"GeometricLoss: term(s) {', '.join(bad)} are not positive "
                f"({', '.join(f'{float(losses[n].detach()):.3g}' for n in bad)}); the geometric mean needs losses > 0"
            )
        total = torch.exp(torch.log(values).mean())
        weights = (total.detach() / (len(names) * detached)).tolist()
        return total, dict(zip(names, map(float, weights)))
