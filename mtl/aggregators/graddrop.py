"""GradDrop: gradient sign dropout.

Reference
    Zhao Chen, Jiquan Ngiam, Yanping Huang, Thang Luong, Henrik Kretzschmar,
    Yuning Chai and Dragomir Anguelov. "Just Pick a Sign: Optimizing Deep
    Multitask Models with Gradient Sign Dropout". Advances in Neural
    Information Processing Systems (NeurIPS), 2020.

Update rule (element-wise over the d coordinates)
    Positive sign purity ``P = ½ (1 + Σ_i g_i / Σ_i |g_i|) ∈ [0, 1]``
    (``P = ½`` where every gradient is zero).  Draw ``U ~ Uniform[0, 1)``
    i.i.d. per coordinate and keep, for every task ``i``,
    ``M_i = 1[P > U]·1[g_i > 0] + 1[P < U]·1[g_i < 0]``: at each coordinate
    either only the positive or only the negative gradient values survive,
    positive with probability ``P``.  With the leak ``ℓ_i ∈ [0, 1]``,
    ``M_i ← ℓ_i + (1 − ℓ_i) M_i``.  The update is ``d = Σ_i M_i ⊙ g_i``.
    The paper's defaults: ``f`` = identity, leak 0 for every task (a leak of
    1 on the main task only appears in its transfer-learning setting).

    Where all gradients agree in sign (``P ∈ {0, 1}``) the coordinate is kept
    deterministically, so identical rows give ``d = Σ_i g_i``.  With zero
    leak each output coordinate is either the sum of the positive values
    (sign chosen positive) or the sum of the negative values (negative).

Randomness
    ``U`` is drawn as ``torch.rand(d, generator=gen, dtype=J.dtype,
    device=J.device)`` where ``gen`` is a generator on ``J``'s device seeded
    with ``seed`` on first use (one per device), so results are reproducible
    for a given seed and device.  ``reset()`` re-seeds.  The
    generator states are part of ``state_dict()``.

Target
    The paper inserts GradDrop as a layer on the activations of the last
    shared layer, i.e. on gradients with respect to the shared
    representation: ``default_target = "representation"``.  The paper's
    batch handling (sum over the batch before computing ``P``) is not
    reproduced: every flattened coordinate, each sample's included, gets its
    own ``P`` and ``U``.  It can also be applied to parameter gradients
    (the rule is coordinate-wise and defined for any gradient vector).
    GradDrop has no per-task weights: ``last_weights`` stays ``None``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Aggregator, seeded_generator


class GradDrop(Aggregator):
    """GradDrop (Chen et al., NeurIPS 2020).

    Args:
        leak: leak ``ℓ`` in [0, 1], a scalar for every task or one per task
            (paper default 0).
        seed: seed of the generator drawing ``U``.
    """

    name = "graddrop"

    # the paper applies GradDrop to the activations of the last shared layer
    default_target = "representation"
    # element-wise rule, meaningful on both kinds of gradient
    supports_representation = True

    def __init__(self, leak: float | Sequence[float] = 0.0, seed: int = 0) -> None:
        super().__init__()
        leak_t = torch.as_tensor(leak, dtype=torch.float64).reshape(-1)
        if leak_t.numel() == 0 or not bool(((leak_t >= 0) & (leak_t <= 1)).all()):
            raise ValueError(f"GradDrop: leak must be in [0, 1], got {leak}")
        self.leak = leak_t if leak_t.numel() > 1 else float(leak_t)
        self.seed = int(seed)
        self._generators: dict[str, torch.Generator] = {}

    def extra_repr(self) -> str:
        leak = self.leak.tolist() if isinstance(self.leak, Tensor) else self.leak
        return f"leak={leak}, seed={self.seed}"

    def reset(self) -> None:
        super().reset()
        self._generators = {}

    def get_extra_state(self) -> dict:
        return {"rng_states": {dev: gen.get_state() for dev, gen in self._generators.items()}}

    def set_extra_state(self, state: dict) -> None:
        self._generators = {}
        for dev, rng_state in state.get("rng_states", {}).items():
            gen = seeded_generator(self.seed, dev)
            gen.set_state(rng_state.cpu())  # CPU and CUDA generators both take a CPU byte tensor
            self._generators[dev] = gen

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            self._generators[key] = seeded_generator(self.seed, device)
        return self._generators[key]

    def forward(self, jacobian: Tensor) -> Tensor:
        jacobian = self._check_jacobian(jacobian)
        k, d = jacobian.shape
        if isinstance(self.leak, Tensor):
            if self.leak.numel() != k:
                raise ValueError(f"GradDrop: got {self.leak.numel()} leak values for {k} gradients")
            has_leak = bool((self.leak > 0).any())
            leak = self.leak.to(device=jacobian.device, dtype=jacobian.dtype)
        else:
            has_leak = self.leak > 0
            leak = torch.full((k,), self.leak, device=jacobian.device, dtype=jacobian.dtype)
        total = jacobian.sum(dim=0)
        magnitude = jacobian.abs().sum(dim=0)
        ratio = torch.where(magnitude > 0, total / torch.where(magnitude > 0, magnitude, 1.0), 0.0)
        purity = 0.5 * (1.0 + ratio)
        u = torch.rand(d, generator=self._generator(jacobian.device), dtype=jacobian.dtype, device=jacobian.device)
        keep_positive = purity > u
        keep_negative = purity < u
        kept = 1.0 - leak
        positive = kept @ jacobian.clamp(min=0)
        negative = kept @ jacobian.clamp(max=0)
        direction = torch.where(keep_positive, positive, 0.0) + torch.where(keep_negative, negative, 0.0)
        if has_leak:
            direction = direction + leak @ jacobian
        self.last_weights = None
        return direction
