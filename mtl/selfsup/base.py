"""What a self-supervised objective is: a loss on unlabelled images, given an encoder.

Every objective that sets ``name`` registers itself in :data:`OBJECTIVES` (the
names configs list under ``selfsup``) when its module is imported, and
:mod:`mtl.selfsup` imports all of its modules: a new objective is one new
file there.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._registry import register

#: images in [0, 1] (augmented) → representation ``(N, feature_dim)``; normalisation belongs in here
Encoder = Callable[[Tensor], Tensor]

#: config name (an entry of ``selfsup``) → objective class, filled by the classes themselves
OBJECTIVES: dict[str, type["SelfSupervisedObjective"]] = {}


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
    A subclass's docstring starts with one line naming the objective and its
    paper (``mtlda list`` shows it).
    """

    #: the name configs use (an entry of ``selfsup``); a class that sets one is registered in
    #: :data:`OBJECTIVES`
    name: str = ""
    #: constructor arguments that follow from the model, not hyperparameters: the backbone's output
    #: size (whoever builds the objective passes it; a config cannot set it)
    derived_arguments: tuple[str, ...] = ("feature_dim",)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(OBJECTIVES, cls)

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
