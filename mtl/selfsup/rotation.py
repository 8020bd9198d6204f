"""Rotation prediction.

Spyros Gidaris, Praveer Singh, Nikos Komodakis. "Unsupervised Representation
Learning by Predicting Image Rotations". ICLR 2018.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .augment import rotate_batch
from .base import Encoder, SelfSupervisedObjective

__all__ = ["RotationPrediction"]


class RotationPrediction(SelfSupervisedObjective):
    """Predict which of 4 rotations an image was given (Gidaris et al. 2018).

    Which of the four rotations 0°, 90°, 180° and 270°: Gidaris, Singh &
    Komodakis, "Unsupervised Representation Learning by Predicting Image
    Rotations", ICLR 2018.

    A 4-way classifier on the encoder's features, trained with cross-entropy.
    Paper defaults: the four rotations of every image in the same batch
    (``all_rotations=True``: "we feed the ConvNet model all four rotated copies
    of an image simultaneously", so a step sees 4× the batch), and the
    classifier is the network's last layer (here: ``hidden_dim=None``, one
    linear layer on the backbone's features).  ``all_rotations=False`` draws one
    rotation per image instead (a quarter of the cost), as auxiliary rotation
    tasks in domain adaptation commonly do (Sun et al. 2019, "Unsupervised
    Domain Adaptation through Self-Supervision"; Xu et al. 2019,
    "Self-Supervised Domain Adaptation for Computer Vision Tasks").

    Rotations need no colour or crop augmentation; images must be square.
    """

    name = "rotation"

    def __init__(self, feature_dim: int, hidden_dim: int | None = None, all_rotations: bool = True):
        super().__init__()
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be positive, not {feature_dim}")
        if hidden_dim is None:
            self.head = nn.Linear(feature_dim, 4)
        else:
            if hidden_dim < 1:
                raise ValueError(f"hidden_dim must be positive (or null for a linear head), not {hidden_dim}")
            self.head = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 4))
        self.all_rotations = bool(all_rotations)

    def pretext(self, images: Tensor, encoder: Encoder, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        rotated, labels = rotate_batch(images, self.all_rotations, generator)
        return self.head(encoder(rotated).flatten(1)), labels
