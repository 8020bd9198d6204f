"""What a self-supervised objective is: a loss on unlabelled images, given an encoder."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: images in [0, 1] (augmented) → representation ``(N, feature_dim)``; normalisation belongs in here
Encoder = Callable[[Tensor], Tensor]


class SelfSupervisedObjective(nn.Module):
    """Base class of the self-supervised objectives.

    ``objective(images, encoder)`` returns a scalar loss: ``images`` are an
    unlabelled float batch in ``[0, 1]`` (``(N, C, H, W)``, before
    normalisation, so colour augmentations act on pixel values), ``encoder``
    maps a batch of such images to features (typically ``backbone(normalise(x))``).
    The objective owns its head (a rotation classifier, a projection head) and
    applies its own augmentations on the device.

    Both objectives here are a cross-entropy over a pretext classification,
    so a subclass only implements :meth:`pretext`, returning the logits and
    their targets; :meth:`metrics` reports the loss and the pretext accuracy.
    """

    def pretext(self, images: Tensor, encoder: Encoder, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, images: Tensor, encoder: Encoder, generator: torch.Generator | None = None) -> Tensor:
        logits, targets = self.pretext(images, encoder, generator)
        return F.cross_entropy(logits.float(), targets)

    @torch.no_grad()
    def metrics(self, images: Tensor, encoder: Encoder, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Mean ``loss`` and pretext ``accuracy`` on one batch (0-d tensors)."""
        logits, targets = self.pretext(images, encoder, generator)
        logits = logits.float()
        return {
            "loss": F.cross_entropy(logits, targets),
            "accuracy": (logits.argmax(dim=1) == targets).float().mean(),
        }
