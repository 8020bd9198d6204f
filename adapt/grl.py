"""Gradient reversal layer (Ganin & Lempitsky, "Unsupervised Domain Adaptation by
Backpropagation", ICML 2015)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, coefficient: float) -> Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return -ctx.coefficient * grad_output, None


def reverse_gradient(x: Tensor, coefficient: float = 1.0) -> Tensor:
    """Identity in the forward pass; multiplies the gradient by ``−coefficient`` in the backward pass."""
    return _ReverseGradient.apply(x, float(coefficient))


class GradientReversal(nn.Module):
    """Module form of :func:`reverse_gradient` with a settable ``coefficient`` (the DANN λ)."""

    def __init__(self, coefficient: float = 1.0):
        super().__init__()
        self.coefficient = float(coefficient)

    def forward(self, x: Tensor) -> Tensor:
        return reverse_gradient(x, self.coefficient)

    def extra_repr(self) -> str:
        return f"coefficient={self.coefficient}"
