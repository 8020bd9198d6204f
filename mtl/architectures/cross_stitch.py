"""Cross-stitch networks.

Misra, Shrivastava, Gupta and Hebert, "Cross-stitch Networks for Multi-task
Learning", CVPR 2016.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from ..tasks import TaskSpec
from .base import BackboneFactory, MultiTaskArchitecture, backbone_stages, check_tasks, out_features


class CrossStitchUnit(nn.Module):
    """Learned linear mixing of ``K`` same-shaped activations: ``x̃_k = Σ_j α_kj x_j``.

    One scalar per (task, task) pair, as in the paper's main experiments.
    Initialised to ``alpha_self`` on the diagonal and ``(1 − alpha_self)/(K − 1)``
    off it (the paper's best initialisation for two tasks is
    ``(α_S, α_D) = (0.9, 0.1)``), so each row sums to 1.
    """

    def __init__(self, num_tasks: int, alpha_self: float = 0.9):
        super().__init__()
        k = int(num_tasks)
        if k == 1:
            alpha = torch.ones(1, 1)
        else:
            alpha = torch.full((k, k), (1.0 - alpha_self) / (k - 1))
            alpha.fill_diagonal_(alpha_self)
        self.alpha = nn.Parameter(alpha)

    def forward(self, columns: list[Tensor]) -> list[Tensor]:
        stacked = torch.stack(columns)  # (K, B, ...)
        mixed = torch.tensordot(self.alpha, stacked, dims=([1], [0]))
        return list(mixed.unbind(0))


class CrossStitch(MultiTaskArchitecture):
    """Cross-stitch networks: one column per task, mixed after every stage (Misra et al. 2016).

    Each task gets its own copy of the backbone (``backbone_factory()`` is
    called once per task), split into stages by the backbone's ``stages()``
    method.  After every stage a :class:`CrossStitchUnit` replaces each
    column's activation by a learned linear combination of all columns'
    activations (the paper places the units after pooling and fully connected
    layers; the stages of the small backbones here end at those points).
    Task ``k``'s head reads column ``k`` after the last unit.

    Args:
        backbone_factory: zero-argument callable returning a backbone with
            ``stages()`` and integer ``out_features``.
        tasks: task specs (one column each, in this order).
        alpha_self: diagonal initial value of every unit (paper default 0.9;
            off-diagonal ``(1 − alpha_self)/(K − 1)``).

    The paper trains the α's with a larger learning rate (scaled by 10³); the
    harness uses one learning rate for all model parameters, so that is not
    reproduced here.

    Parameters: the columns and the cross-stitch units are shared (every
    task's loss reaches every column through the units; the same split as
    LibMTL), the heads are task-specific.  Representation: ``None``; there is
    no single tensor between all shared parameters and the heads (the units
    act at every stage), so representation-level gradient methods
    (``target='representation'``) cannot be used with this architecture.
    """

    name = "cross_stitch"
    has_shared_representation = False

    def __init__(self, backbone_factory: BackboneFactory, tasks: Mapping[str, TaskSpec], alpha_self: float = 0.9):
        super().__init__()
        tasks = check_tasks(tasks, "CrossStitch")
        if not 0.0 <= float(alpha_self) <= 1.0:
            raise ValueError(f"CrossStitch alpha_self must lie in [0, 1], got {alpha_self}")
        self.columns = nn.ModuleList([backbone_factory() for _ in tasks])
        counts = {len(backbone_stages(c, "CrossStitch")) for c in self.columns}
        if len(counts) != 1:
            raise ValueError("CrossStitch columns must have the same number of stages")
        sizes = {out_features(c, "CrossStitch") for c in self.columns}
        if len(sizes) != 1:
            raise ValueError(f"CrossStitch columns must share one output size, got {sorted(sizes)}")
        self.out_features = sizes.pop()
        self.units = nn.ModuleList([CrossStitchUnit(len(tasks), float(alpha_self)) for _ in range(counts.pop())])
        self.heads = nn.ModuleDict({name: task.make_head(self.out_features) for name, task in tasks.items()})

    @classmethod
    def build(
        cls, backbone_factory: BackboneFactory, tasks: Mapping[str, TaskSpec], input_shape=None, alpha_self: float = 0.9
    ) -> "CrossStitch":
        """The harness's constructor (``input_shape`` is unused)."""
        return cls(backbone_factory, tasks, alpha_self=alpha_self)

    def column_features(self, x: Tensor) -> list[Tensor]:
        """Each column's final activation (after the last cross-stitch unit), in task order."""
        stages = [backbone_stages(c, "CrossStitch") for c in self.columns]
        activations = [x] * len(self.columns)
        for depth, unit in enumerate(self.units):
            activations = unit([column[depth](a) for column, a in zip(stages, activations)])
        return activations

    def forward(self, x: Tensor, return_features: bool = False):
        features = self.column_features(x)
        outputs = {name: head(f) for (name, head), f in zip(self.heads.items(), features)}
        return (outputs, None) if return_features else outputs

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return iter([*self.columns.parameters(), *self.units.parameters()])
