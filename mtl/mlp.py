"""A fully connected backbone for vector inputs."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class MLP(nn.Sequential):
    """Fully connected feature extractor: flatten, then Linear → ReLU per hidden width.

    For inputs that are vectors rather than pictures, such as the two-moons
    points of Ganin et al., "Domain-Adversarial Training of Neural Networks"
    (JMLR 2016, §5.1), which the harness stores as 2×1×1 "images".  The input
    size is ``in_channels × image_size²``.  Defaults: two hidden layers of 64
    units (2→64→64 for the moons, the quick start's network); the paper's
    moons network has one hidden layer of 15 units (``hidden_sizes=[15]``).
    ``out_features`` is the last hidden width.  A plain ``nn.Sequential``
    underneath, so fine-tuning splits it into one block per Linear layer.
    """

    def __init__(self, in_channels: int = 2, image_size: int = 1, hidden_sizes: Sequence[int] = (64, 64)):
        widths = [int(w) for w in hidden_sizes]
        if not widths or min(widths) < 1:
            raise ValueError(f"hidden_sizes must list at least one positive width, got {list(hidden_sizes)}")
        sizes = [in_channels * image_size * image_size, *widths]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        super().__init__(*layers)
        self.out_features = widths[-1]

    def stages(self) -> list[nn.Module]:
        """One stage per hidden layer (views of its own layers, no new parameters); composing
        them equals :meth:`forward`.  Used by architectures that act between stages (cross-stitch, MTAN)."""
        layers = list(self)
        first = nn.Sequential(*layers[:3])  # the flatten joins the first layer
        return [first, *(nn.Sequential(*layers[i : i + 2]) for i in range(3, len(layers), 2))]
