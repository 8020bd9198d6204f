"""Hard parameter sharing: one backbone, one head per task."""
from __future__ import annotations

from collections.abc import Iterator, Mapping

from torch import Tensor, nn

from .architectures.base import MultiTaskArchitecture
from .tasks import TaskSpec


class MultiTaskModel(MultiTaskArchitecture):
    """A shared ``backbone`` feeding a dictionary of task ``heads``.

    ``forward(x)`` returns ``{task name: head output}``;
    ``forward(x, return_features=True)`` also returns the shared
    representation, which domain-adaptation losses and representation-level
    gradient methods (MGDA-UB) need.  The backbone must expose
    ``out_features`` (the size of its flat output) when heads are built from
    task specs with :meth:`from_tasks`.

    Hard parameter sharing is the classic MTL architecture
    (Caruana, "Multitask Learning", Machine Learning 28, 1997).  ``task_names``,
    ``task_specific_parameters`` (the heads) and ``predict`` come from
    :class:`~mtl.architectures.base.MultiTaskArchitecture`, shared with MMoE,
    cross-stitch and MTAN.
    """

    def __init__(self, backbone: nn.Module, heads: Mapping[str, nn.Module]):
        super().__init__()
        if not heads:
            raise ValueError("MultiTaskModel needs at least one head")
        self.backbone = backbone
        self.heads = nn.ModuleDict(dict(heads))

    @classmethod
    def from_tasks(cls, backbone: nn.Module, tasks: Mapping[str, TaskSpec]) -> "MultiTaskModel":
        in_features = getattr(backbone, "out_features", None)
        if not isinstance(in_features, int):
            raise ValueError(
                f"{type(backbone).__name__} has no integer `out_features`; set it to the size of the "
                "backbone's flat output or pass the heads explicitly"
            )
        return cls(backbone, {name: task.make_head(in_features) for name, task in tasks.items()})

    def forward(self, x: Tensor, return_features: bool = False):
        features = self.backbone(x)
        outputs = {name: head(features) for name, head in self.heads.items()}
        return (outputs, features) if return_features else outputs

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.backbone.parameters()
