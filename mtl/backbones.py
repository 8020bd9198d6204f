"""Backbones for small images.  Each exposes ``out_features``."""
from __future__ import annotations

import torch
from torch import nn


def _flat_size(body: nn.Module, in_channels: int, image_size: int) -> int:
    with torch.no_grad():
        return body(torch.zeros(1, in_channels, image_size, image_size)).flatten(1).shape[1]


class LeNet(nn.Module):
    """LeNet-style feature extractor for 28×28 digits.

    The variant used in digit domain-adaptation benchmarks (for example
    Transfer-Learning-Library's MNIST↔USPS table, after LeCun et al.,
    "Gradient-based learning applied to document recognition", Proc. IEEE 1998):
    conv(20, 5×5) → max-pool → ReLU → conv(50, 5×5) → dropout → max-pool → ReLU
    → linear(500) → ReLU → dropout.  ``out_features`` = 500.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, feature_dim: int = 500, dropout: float = 0.5):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 20, kernel_size=5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(20, 50, kernel_size=5),
            nn.Dropout2d(dropout),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(_flat_size(self.conv, in_channels, image_size), feature_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.out_features = feature_dim

    def forward(self, x):
        return self.fc(self.conv(x))


class MultiLeNet(nn.Module):
    """Shared encoder of Sener & Koltun, "Multi-Task Learning as Multi-Objective
    Optimization" (NeurIPS 2018) for MultiMNIST: conv(10, 9×9) → max-pool → ReLU
    → conv(20, 5×5) → max-pool → ReLU → linear(50) → ReLU.  ``out_features`` = 50.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, feature_dim: int = 50):
        super().__init__()
        kernel = 9 if image_size >= 24 else 3  # the 9×9 kernel would not fit small canvases
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 10, kernel_size=kernel),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(10, 20, kernel_size=5 if image_size >= 24 else 3),
            nn.MaxPool2d(2) if image_size >= 24 else nn.Identity(),
            nn.ReLU(),
        )
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(_flat_size(self.conv, in_channels, image_size), feature_dim), nn.ReLU()
        )
        self.out_features = feature_dim

    def forward(self, x):
        return self.fc(self.conv(x))


class SmallConvNet(nn.Module):
    """A two-layer convolutional net for 8×8–16×16 images (the embedded quick-start data).

    conv(32, 3×3) → BN → ReLU → conv(64, 3×3) → BN → ReLU → max-pool → linear → ReLU.
    Not from a paper; sized so a quick-start run takes seconds on a CPU.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 8, feature_dim: int = 128, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(_flat_size(self.conv, in_channels, image_size), feature_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.out_features = feature_dim

    def forward(self, x):
        return self.fc(self.conv(x))


BACKBONES: dict[str, type[nn.Module]] = {
    "lenet": LeNet,
    "multilenet": MultiLeNet,
    "small_convnet": SmallConvNet,
}
