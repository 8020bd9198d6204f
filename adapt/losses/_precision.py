"""Batch statistics in full precision, whatever autocast is active around them.

Alignment and regularisation losses are statistics of a whole batch:
covariances (CORAL), kernel means (MMD, JMMD), class-confusion matrices (MCC),
outer products (CDAN), singular values (BSP, BNM), entropies.  Under mixed
precision their matrix products would run in bfloat16/float16 (8 or 11 bits
of mantissa), and several of them then subtract nearly equal quantities —
MMD's ``E k(s,s') + E k(t,t') − 2 E k(s,t)``, CORAL's ``C_S − C_T`` — so the
result can be mostly rounding error.  :func:`full_precision_statistic` runs a
loss with autocast disabled on its inputs' device and its floating inputs
cast to float32 (float64 when any input is float64, so float64 inputs keep
float64 and gradient checks stay possible).  The networks around the loss
keep their mixed precision; only the statistic is computed in full.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor


def _tensors(args) -> list[Tensor]:
    found = []
    for arg in args:
        if isinstance(arg, Tensor):
            found.append(arg)
        elif isinstance(arg, (list, tuple)):
            found.extend(a for a in arg if isinstance(a, Tensor))
    return found


def _cast(arg, dtype: torch.dtype):
    if isinstance(arg, Tensor):
        return arg.to(dtype) if arg.is_floating_point() else arg
    if isinstance(arg, (list, tuple)):
        return type(arg)(_cast(a, dtype) for a in arg)
    return arg


def statistic_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any floating input is float64, else float32 (never a half type)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def full_precision_statistic(fn):
    """Decorate a loss so it computes in float32/float64 with autocast disabled around it.

    Floating tensor arguments (also inside lists or tuples) are cast to
    :func:`statistic_dtype` of all of them; integer and boolean tensors and
    other arguments pass unchanged.  Works for functions and for ``forward``
    methods (``self`` is not a tensor, so it passes through).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = _tensors([*args, *kwargs.values()])
        floating = [t for t in tensors if t.is_floating_point()]
        if not floating:
            return fn(*args, **kwargs)
        dtype = statistic_dtype(*floating)
        with torch.autocast(floating[0].device.type, enabled=False):
            return fn(*_cast(args, dtype), **{k: _cast(v, dtype) for k, v in kwargs.items()})

    return wrapper


def at_least_float32(tensor: Tensor) -> Tensor:
    """``tensor`` in float32 if it is a half type (bfloat16, float16), unchanged if float32 or float64.

    Use it instead of ``.float()`` on logits and features leaving an autocast
    region: ``.float()`` would also turn float64 inputs into float32, which
    silently loses precision and defeats float64 gradient checks.
    """
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()
