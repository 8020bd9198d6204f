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


def ramp_input(progress: float, step: int, ramp_steps: int | None) -> float:
    """The argument of a coefficient schedule: training progress, or ``step / ramp_steps`` held at 1.

    With ``ramp_steps`` the ramp runs over a fixed number of absolute steps whatever the run's
    length.  Transfer-Learning-Library's ``WarmStartGradientReverseLayer(alpha=1, max_iters=1000)``
    is λ(i) = 2/(1 + exp(−i/1000)) − 1 = :func:`dann_ramp` at p = i/10000, i.e. ``ramp_steps=10000``;
    past it λ is held at 2/(1 + e^−10) − 1 = 0.99991 where TLLib's keeps creeping towards 1.
    """
    if ramp_steps is None:
        return progress
    if ramp_steps < 1:
        raise ValueError(f"ramp_steps must be a positive number of steps, got {ramp_steps}")
    return min(1.0, step / ramp_steps)
