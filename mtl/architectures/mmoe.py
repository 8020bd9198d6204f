"""Multi-gate Mixture-of-Experts.

Ma, Zhao, Yi, Chen, Hong and Chi, "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD 2018.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..tasks import TaskSpec
from .base import BackboneFactory, MultiTaskArchitecture, check_tasks, out_features


class MMoE(MultiTaskArchitecture):
    """Multi-gate mixture-of-experts: shared experts, a softmax gate per task (Ma et al. 2018).

    MMoE: ``num_experts`` expert networks shared by all tasks, one softmax gate per task.

    For task ``k`` (paper, Eq. 5–6): ``f_k(x) = Σ_i g_k(x)_i · expert_i(x)`` with
    ``g_k(x) = softmax(W_k x)``, ``W_k ∈ R^{E×d}`` a linear map of the
    (flattened) input, and the task's head (tower) on ``f_k(x)``.

    Args:
        backbone_factory: zero-argument callable; called ``num_experts`` times,
            each call must return a fresh expert with integer ``out_features``
            (all experts the same size).
        tasks: task specs; each builds its head with ``make_head(out_features)``.
        input_size: size of the flattened input (``C·H·W`` for images), the
            gates' input dimension.
        num_experts: number of experts ``E``.  The paper tunes it per data set;
            4 is this library's default, not the paper's.
        gate_bias: whether the gates' linear maps have a bias (the paper's
            Eq. 6 has none: ``softmax(W_gk x)``; default ``False``).

    Parameters: the experts are shared; the gates and heads are task-specific.
    Representation: the stacked expert outputs, shape ``(batch, E, D)``:
    every task's loss depends on the experts only through it, so
    representation-level gradient methods (MGDA-UB) may differentiate it.
    """

    name = "mmoe"

    def __init__(
        self,
        backbone_factory: BackboneFactory,
        tasks: Mapping[str, TaskSpec],
        input_size: int,
        num_experts: int = 4,
        gate_bias: bool = False,
    ):
        super().__init__()
        tasks = check_tasks(tasks, "MMoE")
        if int(num_experts) < 1:
            raise ValueError(f"MMoE needs num_experts >= 1, got {num_experts}")
        if int(input_size) < 1:
            raise ValueError(f"MMoE needs a positive input_size, got {input_size}")
        self.experts = nn.ModuleList([backbone_factory() for _ in range(int(num_experts))])
        sizes = {out_features(e, "MMoE") for e in self.experts}
        if len(sizes) != 1:
            raise ValueError(f"MMoE experts must share one output size, got {sorted(sizes)}")
        self.out_features = sizes.pop()
        self.input_size = int(input_size)
        self.gates = nn.ModuleDict(
            {name: nn.Linear(self.input_size, int(num_experts), bias=gate_bias) for name in tasks}
        )
        self.heads = nn.ModuleDict({name: task.make_head(self.out_features) for name, task in tasks.items()})

    @classmethod
    def build(
        cls,
        backbone_factory: BackboneFactory,
        tasks: Mapping[str, TaskSpec],
        input_shape: Sequence[int],
        num_experts: int = 4,
        gate_bias: bool = False,
    ) -> "MMoE":
        """The harness's constructor: the gate input size from ``input_shape`` (e.g. ``(C, H, W)``)."""
        return cls(backbone_factory, tasks, math.prod(input_shape), num_experts=num_experts, gate_bias=gate_bias)

    def _flat(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        if flat.shape[1] != self.input_size:
            raise ValueError(f"MMoE gates expect {self.input_size} input values per sample, got {flat.shape[1]}")
        return flat

    def gate_weights(self, x: Tensor) -> dict[str, Tensor]:
        """``{task: (batch, E)}`` softmax mixture weights (each row sums to 1)."""
        flat = self._flat(x)
        return {name: torch.softmax(gate(flat), dim=1) for name, gate in self.gates.items()}

    def forward(self, x: Tensor, return_features: bool = False):
        experts = torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, E, D)
        outputs = {}
        for name, weights in self.gate_weights(x).items():
            mixture = torch.einsum("be,bed->bd", weights, experts)
            outputs[name] = self.heads[name](mixture)
        return (outputs, experts) if return_features else outputs

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.experts.parameters()
