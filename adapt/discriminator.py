"""Domain discriminator: an MLP that tells source features (label 1) from target features (label 0)."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class DomainDiscriminator(nn.Module):
    """MLP ``in_features → hidden… → 1 logit``.

    Ganin et al. (JMLR 2016) use one hidden layer of 100 units for the digit
    experiments and two of 1024 for Office; Transfer-Learning-Library uses
    two 1024-unit layers with batch norm.  ``hidden_sizes`` sets the depth and
    width; ``batch_norm`` adds BN after each hidden linear layer.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (1024, 1024),
        batch_norm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers.append(nn.Linear(width, hidden))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features):
        return self.net(features).squeeze(-1)
