"""Hard parameter sharing (Caruana, "Multitask Learning", Machine Learning 28, 1997).

The architecture itself is :class:`mtl.model.MultiTaskModel`; this module only
gives it the factory signature the other architectures share.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from ..model import MultiTaskModel
from ..tasks import TaskSpec
from .base import BackboneFactory, check_tasks


def hard_parameter_sharing(
    backbone_factory: BackboneFactory,
    tasks: Mapping[str, TaskSpec],
    input_shape=None,
    head_hidden: int | Sequence[int] | None = None,
    head_dropout: float = 0.0,
) -> MultiTaskModel:
    """One backbone (built once) shared by all tasks, one head per task.

    By default each head is the task's linear layer.  ``head_hidden`` gives every head one
    hidden layer first: Linear(features, head_hidden) → ReLU → Dropout(head_dropout) → the
    task's layer, as the per-task decoders of Sener & Koltun's MultiMNIST network
    (``MultiLeNetO``: fc 50 → 50, ReLU, dropout 0.5, fc 50 → 10).  A list of widths gives
    one such Linear → ReLU → Dropout per width, e.g. ``[100, 100]`` for the label predictor
    of Ganin et al., "Domain-Adversarial Training of Neural Networks" (JMLR 2016, Fig. 4a:
    fc 100 → ReLU → fc 100 → ReLU → fc 10).  The representation
    (what MGDA-UB and the alignment losses read) stays the backbone's output.
    ``input_shape`` is accepted for a uniform signature and unused.
    """
    tasks = check_tasks(tasks, "hard parameter sharing")
    if head_hidden is None:
        if head_dropout:
            raise ValueError(f"hard parameter sharing: head_dropout={head_dropout} needs head_hidden (the hidden width)")
        return MultiTaskModel.from_tasks(backbone_factory(), tasks)
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
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(head_dropout)]
        return nn.Sequential(*layers, task.make_head(sizes[-1]))

    heads = {name: head(task) for name, task in tasks.items()}
    return MultiTaskModel(backbone, heads)
