"""Hard parameter sharing: one backbone, one head per task."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from torch import Tensor, nn

from .architectures.base import BackboneFactory, MultiTaskArchitecture, check_tasks
from .tasks import TaskSpec


#: ``head_block`` name → the layers of one hidden block of a head, from (in width, out width, dropout)
HEAD_BLOCKS = {
    "linear_relu_dropout": lambda a, b, p: [nn.Linear(a, b), nn.ReLU(), nn.Dropout(p)],
    "dropout_linear_bn_relu": lambda a, b, p: [nn.Dropout(p), nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()],
}


class MultiTaskModel(MultiTaskArchitecture):
    """Hard parameter sharing: one backbone, one head per task (Caruana 1997).

    A shared ``backbone`` feeding a dictionary of task ``heads``.

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
    cross-stitch and MTAN.  :meth:`build` is the constructor the other
    architectures share (``hard_parameter_sharing``).
    """

    name = "hps"

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

    @classmethod
    def build(
        cls,
        backbone_factory: BackboneFactory,
        tasks: Mapping[str, TaskSpec],
        input_shape=None,
        head_hidden: int | Sequence[int] | None = None,
        head_dropout: float = 0.0,
        head_block: str = "linear_relu_dropout",
    ) -> "MultiTaskModel":
        """One backbone (built once) shared by all tasks, one head per task.

        By default each head is the task's linear layer.  ``head_hidden`` gives every head one
        hidden layer first: Linear(features, head_hidden) → ReLU → Dropout(head_dropout) → the
        task's layer, as the per-task decoders of Sener & Koltun's MultiMNIST network
        (``MultiLeNetO``: fc 50 → 50, ReLU, dropout 0.5, fc 50 → 10).  A list of widths gives
        one such Linear → ReLU → Dropout per width, e.g. ``[100, 100]`` for the label predictor
        of Ganin et al., "Domain-Adversarial Training of Neural Networks" (JMLR 2016, Fig. 4a:
        fc 100 → ReLU → fc 100 → ReLU → fc 10).  The representation
        (what MGDA-UB and the alignment losses read) stays the backbone's output.
        ``head_block="dropout_linear_bn_relu"`` makes each hidden block Dropout(head_dropout) →
        Linear → BatchNorm1d → ReLU instead, the classifier Transfer-Learning-Library's MCD uses
        (``tllib.alignment.mcd.ImageClassifierHead``: two such 1024-wide blocks, dropout 0.5).
        ``input_shape`` is accepted for a uniform signature and unused.
        """
        tasks = check_tasks(tasks, "hard parameter sharing")
        if head_block not in HEAD_BLOCKS:
            raise ValueError(f"hard parameter sharing: head_block must be one of {', '.join(HEAD_BLOCKS)}, got {head_block!r}")
        if head_hidden is None:
            if head_block != "linear_relu_dropout":
                raise ValueError(f"hard parameter sharing: head_block={head_block!r} needs head_hidden (the hidden widths)")
            if head_dropout:
                raise ValueError(f"hard parameter sharing: head_dropout={head_dropout} needs head_hidden (the hidden width)")
            return cls.from_tasks(backbone_factory(), tasks)
        widths = [head_hidden] if isinstance(head_hidden, int) else list(head_hidden)
        if not widths or any(isinstance(w, bool) or int(w) != w or int(w) < 1 for w in widths):
            raise ValueError(f"hard parameter sharing: head_hidden must be a positive width or a list of them, got {head_hidden}")
        if not 0.0 <= head_dropout < 1.0:
            raise ValueError(f"hard parameter sharing: head_dropout must lie in [0, 1), got {head_dropout}")
        backbone = backbone_factory()
        in_features = getattr(backbone, "out_features", None)
        if not isinstance(in_features, int):
            raise ValueError(f"{type(backbone).__name__} has no integer `out_features` for the heads' hidden layer")
        sizes = [in_features, *(int(w) for w in widths)]

        def head(task: TaskSpec) -> nn.Sequential:
            layers: list[nn.Module] = []
            for a, b in zip(sizes[:-1], sizes[1:]):
                layers += HEAD_BLOCKS[head_block](a, b, head_dropout)
            return nn.Sequential(*layers, task.make_head(sizes[-1]))

        heads = {name: head(task) for name, task in tasks.items()}
        return cls(backbone, heads)

    def forward(self, x: Tensor, return_features: bool = False):
        features = self.backbone(x)
        outputs = {name: head(features) for name, head in self.heads.items()}
        return (outputs, features) if return_features else outputs

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.backbone.parameters()
