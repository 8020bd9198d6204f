"""Model stacking: several backbones read the same image and their features are concatenated.

Feature-level stacking ("concatenate the penultimate features of several
pretrained networks and train one classifier on them") is the simplest form of
model ensembling for transfer learning; it is how off-the-shelf CNN features
were combined in, for example, Razavian et al., "CNN Features off-the-shelf:
an Astounding Baseline for Recognition", CVPRW 2014.  The heads of a
:class:`~mtl.MultiTaskModel` (or a domain-adaptation method reading the
features) see one vector of size ``sum(member.out_features)``.

Example::

    backbone = ConcatBackbones([pretrained_backbone("resnet18", weights="DEFAULT"),
                                pretrained_backbone("efficientnet_b0", weights="DEFAULT")])
    model = MultiTaskModel.from_tasks(backbone, tasks)       # heads read 512 + 1280 features
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ConcatBackbones"]


class ConcatBackbones(nn.Module):
    """Run every member on the same input and concatenate their (flattened) features.

    Each member must expose ``out_features`` (every backbone of
    :mod:`mtl.backbones` and :func:`mtl.pretrained_backbone` does);
    ``out_features`` of the stack is their sum, in member order.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"stacking needs at least two backbones, got {len(members)}")
        sizes = []
        for i, member in enumerate(members):
            size = getattr(member, "out_features", None)
            if not isinstance(size, int) or size < 1:
                raise ValueError(
                    f"member {i} ({type(member).__name__}) has no integer 'out_features'; "
                    "set it to the size of the features the member returns"
                )
            sizes.append(size)
        self.members = nn.ModuleList(members)
        self.feature_sizes = sizes
        self.out_features = sum(sizes)

    def forward(self, x: Tensor) -> Tensor:
        features = [member(x).flatten(1) for member in self.members]
        for i, (f, size) in enumerate(zip(features, self.feature_sizes)):
            if f.shape[1] != size:
                raise RuntimeError(f"member {i} returned {f.shape[1]} features but declares out_features={size}")
        return torch.cat(features, dim=1)
