"""Homoscedastic uncertainty weighting."""
from __future__ import annotations

import torch
from torch import nn

from .base import LossWeighting


class UncertaintyWeighting(LossWeighting):
    """Learned homoscedastic uncertainty weighting (Kendall et al. 2018).

    Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
    Losses for Scene Geometry and Semantics", CVPR 2018.

    Each term k has a learned log-variance ``s_k = log σ_k²`` and the combined
    objective is::

        Σ_k ½·exp(−s_k)·L_k + ½·s_k

    (the paper's Gaussian-likelihood form, used for every term, as LibMTL
    does).  For a fixed loss value L the objective is minimised at
    ``s* = log L``, so terms with large loss get small weight ``½·exp(−s)``.
    The log-variances are ``nn.Parameter``s: add ``weighting.parameters()`` to
    the optimiser.  They are created lazily, one per term name, on the first
    call, and initialised to ``init`` (paper: 0).
    """

    name = "uncertainty"
    batch_independent_weights = True  # its log-variances are parameters, trained like the model's

    def __init__(self, init: float = 0.0):
        super().__init__()
        self.init = float(init)
        self.log_vars = nn.ParameterDict()

    def ensure_terms(self, names, device=None) -> None:
        """Create the log-variances (``init`` each) before the optimiser is built."""
        for name in names:
            if name not in self.log_vars:
                self.log_vars[name] = nn.Parameter(torch.full((), self.init, device=device))

    def combine(self, losses):
        unknown = [name for name in losses if name not in self.log_vars]
        if unknown and len(self.log_vars) > 0:
            raise ValueError(
                f"UncertaintyWeighting: new loss terms {unknown} after the optimiser was built "
                f"(known: {list(self.log_vars)}); call ensure_terms() with every term name first"
            )
        self.ensure_terms(losses, device=next(iter(losses.values())).device)
        total = 0.0
        weights = {}
        for name, value in losses.items():
            s = self.log_vars[name]
            total = total + 0.5 * torch.exp(-s) * value + 0.5 * s
            weights[name] = 0.5 * torch.exp(-s.detach())  # a tensor: float() here would wait for the device
        return total, weights

    def reset(self) -> None:
        with torch.no_grad():
            for p in self.log_vars.values():
                p.fill_(self.init)
