"""Domain-adversarial loss (the DANN objective) as a standalone module."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..grl import reverse_gradient
from ._precision import at_least_float32


class DomainAdversarialLoss(nn.Module):
    """Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016.

    Binary cross-entropy of ``discriminator`` on gradient-reversed features,
    source labelled 1 and target 0, averaged over both batches.  Minimising it
    trains the discriminator to tell the domains apart while the reversed
    gradient trains the feature extractor to confuse it.  Set
    ``coefficient`` (the GRL λ, typically :func:`adapt.schedules.dann_ramp`)
    before each call.  After each call ``domain_accuracy`` holds the
    discriminator's accuracy on the batch as a 0-d tensor (0.5 means aligned).
    """

    def __init__(self, discriminator: nn.Module, coefficient: float = 1.0):
        super().__init__()
        self.discriminator = discriminator
        self.coefficient = float(coefficient)
        self.domain_accuracy: Tensor | None = None

    def forward(self, source_features: Tensor, target_features: Tensor) -> Tensor:
        features = torch.cat([source_features, target_features])
        logits = at_least_float32(self.discriminator(reverse_gradient(features, self.coefficient)))
        labels = torch.cat(
            [logits.new_ones(source_features.shape[0]), logits.new_zeros(target_features.shape[0])]
        )
        # kept as a tensor: converting to a float here would synchronise a GPU every step
        self.domain_accuracy = ((logits.detach() > 0).float() == labels).float().mean()
        return F.binary_cross_entropy_with_logits(logits, labels)
