"""Multi-Task Attention Network.

Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention",
CVPR 2019.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..tasks import TaskSpec
from .base import BackboneFactory, MultiTaskArchitecture, backbone_stages, check_tasks


def _as_map(t: Tensor) -> Tensor:
    """Feature vectors ``(B, D)`` are treated as ``D×1×1`` maps, so 1×1 convolutions apply."""
    return t if t.dim() == 4 else t.reshape(t.shape[0], -1, 1, 1)


class AttentionMask(nn.Module):
    """The paper's attention module ``g``: 1×1 conv → BN → ReLU → 1×1 conv → BN → sigmoid.

    Output: a mask in (0, 1) with ``channels`` channels and the input's spatial size.
    """

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
            nn.BatchNorm2d(channels),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Transition(nn.Module):
    """The paper's ``f_j``: maps stage ``j−1``'s attended features to stage ``j``'s shape.

    Maps onto a feature map: 3×3 conv → BN → ReLU → adaptive max-pool to the
    next stage's spatial size (the paper: a 3×3 conv block then pooling).
    Onto a feature vector: flatten → linear → BN → ReLU (the vector analogue).
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int]):
        super().__init__()
        self.out_shape = tuple(out_shape)
        if len(out_shape) == 3 and len(in_shape) == 3:
            self.body = nn.Sequential(
                nn.Conv2d(in_shape[0], out_shape[0], 3, padding=1), nn.BatchNorm2d(out_shape[0]), nn.ReLU()
            )
            self.to_map = True
        else:
            size = 1
            for s in in_shape:
                size *= s
            out = 1
            for s in out_shape:
                out *= s
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(size, out), nn.BatchNorm1d(out), nn.ReLU())
            self.to_map = False

    def forward(self, x: Tensor) -> Tensor:
        if self.to_map:
            return F.adaptive_max_pool2d(self.body(x), self.out_shape[1:])
        return self.body(x).reshape(x.shape[0], *self.out_shape)


class MTAN(MultiTaskArchitecture):
    """Multi-task attention network: per-task attention masks on a shared backbone (Liu et al. 2019).

    MTAN: a shared backbone plus, per task, a soft attention mask at every stage.

    With ``p_j`` the output of shared stage ``j`` and ``â_{k,j}`` task ``k``'s
    attended features at stage ``j`` (paper, Eq. 1):

    * ``a_{k,1} = g_{k,1}(p_1)``, and for ``j > 1``
      ``a_{k,j} = g_{k,j}([p_j ; f_j(â_{k,j−1})])`` (channel concatenation);
    * ``â_{k,j} = a_{k,j} ⊙ p_j``; task ``k``'s head reads the flattened ``â_{k,S}``.

    ``g`` is :class:`AttentionMask` (1×1 conv → BN → ReLU → 1×1 conv → BN →
    sigmoid, as in the paper) and ``f_j`` a :class:`Transition`, shared across
    tasks as in the paper (``share_transitions=True``).

    Simplifications for the small backbones of :mod:`mtl.backbones`, whose
    stages are a few layers each rather than the paper's SegNet/ResNet blocks:
    the mask's shared input is the stage *output* ``p_j`` (the paper takes the
    features after the block's first layer ``u_j`` and masks the block's
    output ``p_j``), fully connected stages are treated as ``D×1×1`` maps, and
    ``f_j`` is a 3×3 conv block with adaptive max-pooling (a linear block
    before a fully connected stage).  There is no decoder (classification
    heads only).

    Args:
        backbone_factory: zero-argument callable returning a backbone with
            ``stages()``; called once.
        tasks: task specs; heads are built with ``make_head`` on the final
            attended features.
        input_shape: one sample's shape, e.g. ``(C, H, W)``, to size the
            attention modules.
        share_transitions: share each ``f_j`` across tasks (the paper) or
            give every task its own.

    Parameters: the backbone is shared, the attention masks and heads are
    task-specific; shared transitions count as shared.  Representation:
    with ``share_transitions=False``, the concatenation of all flattened
    stage outputs ``[p_1, …, p_S]`` (shape ``(batch, Σ_j |p_j|)``): the tasks
    read the stage outputs only through it, so MGDA-UB-style methods may
    differentiate it.  With shared transitions (the default) it is ``None``:
    the shared ``f_j`` lie after the stage outputs, so no single tensor
    precedes all shared parameters.
    """

    name = "mtan"

    def __init__(
        self,
        backbone_factory: BackboneFactory,
        tasks: Mapping[str, TaskSpec],
        input_shape: Sequence[int],
        share_transitions: bool = True,
    ):
        super().__init__()
        tasks = check_tasks(tasks, "MTAN")
        self.backbone = backbone_factory()
        stages = backbone_stages(self.backbone, "MTAN")
        shapes = self._stage_shapes(stages, tuple(int(s) for s in input_shape))
        self.stage_shapes = shapes
        self.share_transitions = bool(share_transitions)
        self.has_shared_representation = not self.share_transitions
        channels = [_channels(s) for s in shapes]
        self.attention = nn.ModuleDict(
            {
                name: nn.ModuleList(
                    [AttentionMask(channels[0], channels[0])]
                    + [AttentionMask(2 * channels[j], channels[j]) for j in range(1, len(shapes))]
                )
                for name in tasks
            }
        )

        def transitions() -> nn.ModuleList:
            return nn.ModuleList([Transition(shapes[j - 1], shapes[j]) for j in range(1, len(shapes))])

        if self.share_transitions:
            self.transitions = transitions()
        else:
            self.task_transitions = nn.ModuleDict({name: transitions() for name in tasks})
        size = 1
        for s in shapes[-1]:
            size *= s
        self.out_features = size
        self.heads = nn.ModuleDict({name: task.make_head(size) for name, task in tasks.items()})

    @staticmethod
    def _stage_shapes(stages, input_shape) -> list[tuple[int, ...]]:
        shapes = []
        with torch.no_grad():
            training = [s.training for s in stages]
            for s in stages:
                s.eval()
            x = torch.zeros(1, *input_shape)
            for s in stages:
                x = s(x)
                if x.dim() not in (2, 4):
                    raise ValueError(f"MTAN: stage outputs must be (B, D) or (B, C, H, W), got {tuple(x.shape)}")
                shapes.append(tuple(x.shape[1:]))
            for s, was in zip(stages, training):
                s.train(was)
        return shapes

    @classmethod
    def build(
        cls,
        backbone_factory: BackboneFactory,
        tasks: Mapping[str, TaskSpec],
        input_shape: Sequence[int],
        share_transitions: bool = True,
    ) -> "MTAN":
        """The harness's constructor (same arguments)."""
        return cls(backbone_factory, tasks, input_shape, share_transitions=share_transitions)

    def _transitions(self, name: str) -> nn.ModuleList:
        return self.transitions if self.share_transitions else self.task_transitions[name]

    def stage_outputs(self, x: Tensor) -> list[Tensor]:
        outputs = []
        for stage in backbone_stages(self.backbone, "MTAN"):
            x = stage(x)
            outputs.append(x)
        return outputs

    def _attend(self, shared: list[Tensor], keep_masks: bool = False):
        features, masks = {}, {}
        for name, modules in self.attention.items():
            transitions = self._transitions(name)
            attended, task_masks = None, []
            for j, (p, g) in enumerate(zip(shared, modules)):
                p_map = _as_map(p)
                inputs = p_map if j == 0 else torch.cat([p_map, _as_map(transitions[j - 1](attended))], dim=1)
                mask = g(inputs)
                task_masks.append(mask)
                attended = (mask * p_map).reshape(p.shape)
            features[name] = attended.flatten(1)
            masks[name] = task_masks
        return features, masks

    def attention_masks(self, x: Tensor) -> dict[str, list[Tensor]]:
        """``{task: [mask per stage]}``, each in (0, 1) with the stage output's shape (vectors as ``D×1×1``)."""
        return self._attend(self.stage_outputs(x))[1]

    def forward(self, x: Tensor, return_features: bool = False):
        shared = self.stage_outputs(x)
        representation = None
        if return_features and self.has_shared_representation:
            # the tasks read the stage outputs through this one tensor (see the class docstring)
            representation = torch.cat([p.flatten(1) for p in shared], dim=1)
            sizes = [p[0].numel() for p in shared]
            shared = [piece.reshape(p.shape) for piece, p in zip(representation.split(sizes, dim=1), shared)]
        features = self._attend(shared)[0]
        outputs = {name: self.heads[name](features[name]) for name in self.heads}
        return (outputs, representation) if return_features else outputs

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        shared = list(self.backbone.parameters())
        if self.share_transitions:
            shared += list(self.transitions.parameters())
        return iter(shared)


def _channels(shape: Sequence[int]) -> int:
    """Channels of a stage output: ``C`` of ``(C, H, W)``, ``D`` of ``(D,)``."""
    return int(shape[0])
