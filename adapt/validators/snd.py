"""Soft neighbourhood density (SND).

Kuniaki Saito, Donghyun Kim, Piotr Teterwak, Stan Sclaroff, Trevor Darrell,
Kate Saenko. "Tune it the Right Way: Unsupervised Validation of Domain
Adaptation via Soft Neighborhood Density". ICCV 2021.

A good adapted model maps target samples into dense, well-separated clusters:
each sample then has many close neighbours *in the prediction space*, so the
soft distribution over its neighbours is spread out (high entropy).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import TARGET_TRAIN_LOGITS, Validator, as_logits

__all__ = ["SND"]


class SND(Validator):
    """``1/N sum_i H(P_i)`` with ``P_ij = softmax_j(<f_i, f_j> / tau)``, ``j != i``; higher is better.

    ``f_i`` is the L2-normalised softmax prediction of target sample ``i``;
    ``tau = 0.05`` as in the paper.  A sample is not its own neighbour (the
    diagonal of the similarity matrix is left out, so each row is a
    distribution over the other N-1 samples); the score lies in
    ``[0, log(N-1)]``, in nats.  Like BNM it depends on N: compare it at a fixed
    sample count.  The N×N similarity matrix is built in row blocks of
    ``block_size`` (float64).
    """

    name = "snd"
    summary = "soft neighbourhood density of target predictions (Saito et al. 2021)"
    requires = (TARGET_TRAIN_LOGITS,)

    def __init__(self, temperature: float = 0.05, block_size: int = 1024):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = temperature
        self.block_size = block_size

    def score(self, target_train_logits: Tensor) -> float:
        logits = as_logits(target_train_logits)
        n = logits.shape[0]
        if n < 2:
            raise ValueError("SND needs at least two target samples")
        f = F.normalize(torch.softmax(logits, dim=1), dim=1)
        total = logits.new_zeros(())
        for start in range(0, n, self.block_size):
            rows = torch.arange(start, min(start + self.block_size, n), device=logits.device)
            similarity = f[rows] @ f.T / self.temperature
            similarity[torch.arange(len(rows), device=logits.device), rows] = float("-inf")  # not its own neighbour
            log_p = F.log_softmax(similarity, dim=1)
            p = log_p.exp()
            # exp(-inf) * -inf is NaN: the diagonal's contribution is exactly 0
            total = total - torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum()
        return float(total / n)

    def __repr__(self) -> str:
        return f"SND(temperature={self.temperature})"
