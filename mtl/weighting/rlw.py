"""Random Loss Weighting (RLW).

Reference
    Baijiong Lin, Feiyang Ye, Yu Zhang and Ivor W. Tsang. "Reasonable
    Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning".
    Transactions on Machine Learning Research (TMLR), 2022.

Update rule
    Every step draws fresh weights from a distribution on the simplex and
    minimises ``Σ_k λ_k L_k``.  The paper's main variant, used here::

        z ~ N(0, I_K),    λ = softmax(z),

    so ``λ_k > 0`` and ``Σ_k λ_k = 1`` (note: equal weighting in this codebase
    sums to ``K``, so the effective step size of RLW is ``1/K`` of it, as in
    the paper's comparison).  Nothing is learned; RLW is the "litmus test"
    baseline a weighting method should beat.

Randomness
    ``z`` is drawn in float64 on the CPU from this weighting's own
    ``torch.Generator`` (one draw of ``K`` numbers per :meth:`combine`, i.e.
    per step), so the weights do not depend on the device and do not touch
    the global RNG during training.  ``seed=None`` (default) takes the seed
    from the global torch RNG once, at construction: the harness seeds that
    RNG with ``train.seed`` before it builds the weighting, so each run seed
    gets its own reproducible weight sequence.  The generator state and the
    seed are saved with ``state_dict()``; ``reset()`` re-seeds.
"""
from __future__ import annotations

import torch

from .base import LossWeighting, check_terms


class RLW(LossWeighting):
    """Random loss weighting: softmax of N(0, I) weights each step (Lin et al. 2022).

    Random Loss Weighting (Lin et al., TMLR 2022): ``λ = softmax(z)``, ``z ~ N(0, I)`` per step.

    Args:
        seed: seed of the weight generator; ``None`` (the default) draws one
            from the global torch RNG at construction.
    """

    name = "rlw"

    def __init__(self, seed: int | None = None):
        super().__init__()
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.seed = int(seed)
        self.reset()

    def extra_repr(self) -> str:
        return f"seed={self.seed}"

    def reset(self) -> None:
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)
        self.names: list[str] | None = None

    def get_extra_state(self) -> dict:
        return {
            "seed": self.seed,
            "rng": self.generator.get_state(),
            "names": None if self.names is None else list(self.names),
        }

    def set_extra_state(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.generator = torch.Generator(device="cpu")
        self.generator.set_state(state["rng"].cpu())
        self.names = None if state["names"] is None else list(state["names"])

    def sample(self, k: int) -> torch.Tensor:
        """Draw the next ``K`` weights (float64, CPU) from the generator."""
        return torch.softmax(torch.randn(k, generator=self.generator, dtype=torch.float64), dim=0)

    def combine(self, losses):
        names = check_terms(losses, "RLW")
        if self.names is None:
            self.names = names
        elif set(names) != set(self.names):
            raise ValueError(f"RLW: loss terms {sorted(names)} differ from the terms seen before {sorted(self.names)}")
        names = self.names
        weights = self.sample(len(names))
        values = torch.stack([losses[n] for n in names])
        total = (weights.to(device=values.device, dtype=values.dtype) * values).sum()
        return total, {n: float(w) for n, w in zip(names, weights.tolist())}
