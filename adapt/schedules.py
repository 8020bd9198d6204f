"""Schedules for trade-off coefficients as a function of training progress p ∈ [0, 1]."""
from __future__ import annotations

import math


def dann_ramp(progress: float, gamma: float = 10.0) -> float:
    """λ(p) = 2 / (1 + exp(−γ·p)) − 1, rising from 0 to ~1.

    Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016,
    Section 5.2.2 (γ = 10).  It suppresses the noisy domain signal early on.
    """
    if not 0.0 <= progress <= 1.0 + 1e-9:
        raise ValueError(f"training progress must lie in [0, 1], got {progress}")
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def linear_ramp(progress: float, warmup: float = 0.1) -> float:
    """0 → 1 linearly over the first ``warmup`` fraction of training, then 1."""
    if warmup <= 0:
        return 1.0
    return min(1.0, max(0.0, progress / warmup))


def constant(progress: float) -> float:
    return 1.0


SCHEDULES = {"dann": dann_ramp, "linear": linear_ramp, "constant": constant}
