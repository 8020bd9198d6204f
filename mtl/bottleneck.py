"""A feature bottleneck between a backbone and the heads: Linear → BatchNorm → ReLU → Dropout.

Domain-adaptation models usually put a narrow, batch-normalised layer on top of
the feature extractor and let the heads and the alignment losses read its
output: Long et al., "Learning Transferable Features with Deep Adaptation
Networks" (ICML 2015) adapt such a bottleneck, Transfer-Learning-Library's
``ImageClassifier`` adds a 256-wide Linear–BN–ReLU one by default, and Xu et al.,
"Larger Norm More Transferable: An Adaptive Feature Norm Approach for
Unsupervised Domain Adaptation" (ICCV 2019) apply their feature-norm loss after
an FC–BN–ReLU–Dropout bottleneck.  The batch norm matters for AFN: it removes
the scale of everything below it, so enlarging the bottleneck's feature norms
cannot feed back into the backbone's activations and blow them up.

Example::

    backbone = WithBottleneck(LeNet(), dim=256, dropout=0.5)   # out_features = 256
    model = MultiTaskModel.from_tasks(backbone, tasks)
"""
from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn import functional as F

from .architectures.base import backbone_stages, out_features

__all__ = ["WithBottleneck", "L2PreservingDropout"]


class L2PreservingDropout(nn.Module):
    """Dropout whose kept units are scaled by ``1/sqrt(1 − p)`` instead of ``1/(1 − p)``.

    Xu et al., "Larger Norm More Transferable" (ICCV 2019: "L2-preserved dropout"), as in
    Transfer-Learning-Library's ``tllib/normalization/afn.py`` (``Block``): standard
    dropout keeps the expected *value* of a unit, this keeps the expected *squared L2 norm*
    of the feature vector, so the feature norms AFN enlarges in training are the norms seen
    at test time.  Identity in eval mode.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return F.dropout(x, self.p, training=True) * math.sqrt(1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WithBottleneck(nn.Module):
    """``bottleneck(backbone(x))`` with ``bottleneck = Flatten → Linear(dim) → BatchNorm1d → ReLU → Dropout``.

    ``out_features`` is ``dim``.  :meth:`stages` is the backbone's stages with
    the bottleneck as one more, so cross-stitch and MTAN can use it too.

    ``batch_norm=False`` leaves the batch norm out (an identity in its place, so
    parameter names do not move): Linear → ReLU → Dropout, the bottleneck of
    Transfer-Learning-Library's DAN (``tllib/alignment/dan.py`` ``ImageClassifier``).
    ``l2_dropout=True`` uses :class:`L2PreservingDropout` (AFN's, Xu et al. 2019).
    """

    def __init__(
        self,
        backbone: nn.Module,
        dim: int = 256,
        dropout: float = 0.0,
        batch_norm: bool = True,
        l2_dropout: bool = False,
    ):
        super().__init__()
        if int(dim) != dim or dim < 1:
            raise ValueError(f"bottleneck dim must be a positive integer, got {dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"bottleneck dropout must be in [0, 1), got {dropout!r}")
        self.backbone = backbone
        self.bottleneck = nn.Sequential(
            nn.Flatten(),
            nn.Linear(out_features(backbone, "a bottleneck"), int(dim)),
            nn.BatchNorm1d(int(dim)) if batch_norm else nn.Identity(),
            nn.ReLU(),
            L2PreservingDropout(dropout) if l2_dropout else nn.Dropout(dropout),
        )
        self.out_features = int(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneck(self.backbone(x))

    def stages(self) -> list[nn.Module]:
        return [*backbone_stages(self.backbone, "a bottleneck's stages"), self.bottleneck]
