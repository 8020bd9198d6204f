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

    def stages(self) -> list[nn.Module]:
        """The network split into 3 consecutive stages (views of its own layers, no new
        parameters); composing them equals :meth:`forward`.  Used by architectures
        that act between stages (cross-stitch, MTAN)."""
        return [self.conv[0:3], self.conv[3:7], self.fc]

    def forward(self, x):
        return self.fc(self.conv(x))


class MultiLeNet(nn.Module):
    """The small shared encoder of the MultiMNIST literature: conv(10, k×k) → max-pool → ReLU
    → conv(20, 5×5) → max-pool → ReLU → linear(50) → ReLU.  ``out_features`` = 50.

    The default first kernel, 9×9, is the LeNet of Lin et al., "Pareto Multi-Task Learning"
    (NeurIPS 2019; Xi-L/ParetoMTL, multiMNIST/model_lenet.py), written for 36×36 canvases.
    Sener & Koltun's released encoder for 28×28 MultiMNIST (isl-org/MultiObjectiveOptimization,
    multi_task/models/multi_lenet.py, ``MultiLeNetR``) uses 5×5 (``conv1_kernel=5``: 320 conv
    outputs into the linear layer) and channel dropout (p = 0.5) on the second convolution
    (``dropout=0.5``; theirs draws one channel mask per batch and does not rescale, this is
    the standard ``nn.Dropout2d``).  Channel dropout with a positive scale commutes with the
    max-pool and ReLU that follow, so it sits at the end of ``conv`` here.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        feature_dim: int = 50,
        conv1_kernel: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiLeNet: dropout must lie in [0, 1), got {dropout}")
        small = image_size < 24
        kernel = conv1_kernel if conv1_kernel is not None else (3 if small else 9)  # 9×9 would not fit small canvases
        layers = [
            nn.Conv2d(in_channels, 10, kernel_size=kernel),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(10, 20, kernel_size=3 if small else 5),
            nn.Identity() if small else nn.MaxPool2d(2),
            nn.ReLU(),
        ]
        if dropout:
            layers.append(nn.Dropout2d(dropout))
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(_flat_size(self.conv, in_channels, image_size), feature_dim), nn.ReLU()
        )
        self.out_features = feature_dim

    def stages(self) -> list[nn.Module]:
        """The network split into 3 consecutive stages (views of its own layers, no new
        parameters); composing them equals :meth:`forward`.  Used by architectures
        that act between stages (cross-stitch, MTAN)."""
        return [self.conv[0:3], self.conv[3:], self.fc]

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

    def stages(self) -> list[nn.Module]:
        """The network split into 3 consecutive stages (views of its own layers, no new
        parameters); composing them equals :meth:`forward`.  Used by architectures
        that act between stages (cross-stitch, MTAN)."""
        return [self.conv[0:3], self.conv[3:7], self.fc]

    def forward(self, x):
        return self.fc(self.conv(x))


class DANNDigitNet(nn.Module):
    """Feature extractor of Ganin et al., "Domain-Adversarial Training of Neural
    Networks" (JMLR 2016), MNIST→MNIST-M experiment (their Fig. 4, after the
    Caffe MNIST example): conv(32, 5×5) → ReLU → max-pool 2 → conv(48, 5×5) →
    ReLU → max-pool 2, flattened (768 features for 28×28 inputs).  Only the
    convolutions are here: the paper's label predictor (fc 100 → fc 100 → 10)
    is not built; the classifier is the task's head, a single linear layer on
    these features (:meth:`mtl.tasks.ClassificationTask.make_head`).
    ``feature_dim`` appends one fully connected layer (Linear → ReLU) of that
    width to the shared part, so the heads and the alignment losses read it.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 28, feature_dim: int | None = None):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        flat = _flat_size(self.conv, in_channels, image_size)
        self.fc = nn.Identity() if feature_dim is None else nn.Sequential(nn.Linear(flat, feature_dim), nn.ReLU())
        self.out_features = flat if feature_dim is None else feature_dim

    def stages(self) -> list[nn.Module]:
        """The network split into 2 (3 with ``feature_dim``) consecutive stages (views of its own layers, no new
        parameters); composing them equals :meth:`forward`.  Used by architectures
        that act between stages (cross-stitch, MTAN)."""
        stages = [self.conv[0:3], self.conv[3:7]]
        return stages if isinstance(self.fc, nn.Identity) else [*stages, self.fc]

    def forward(self, x):
        return self.fc(self.conv(x))


class DANNSVHNNet(nn.Module):
    """Feature extractor of Ganin et al. (JMLR 2016) for SVHN→MNIST (after
    Srivastava et al. 2014): conv(64, 5×5) → ReLU → max-pool 3/2 → conv(64, 5×5)
    → ReLU → max-pool 3/2 → conv(128, 5×5) → ReLU, then fc 3072 → ReLU.
    The paper's remaining label layers (fc 2048 → 10) form the head side.
    Inputs 32×32, padding 2 keeps the spatial size through the convolutions.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, feature_dim: int = 3072, dropout: float = 0.5):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 128, 5, padding=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(
            nn.Linear(_flat_size(self.conv, in_channels, image_size), feature_dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.out_features = feature_dim

    def stages(self) -> list[nn.Module]:
        """The network split into 4 consecutive stages (views of its own layers, no new
        parameters); composing them equals :meth:`forward`.  Used by architectures
        that act between stages (cross-stitch, MTAN)."""
        return [self.conv[0:3], self.conv[3:6], self.conv[6:9], self.fc]

    def forward(self, x):
        return self.fc(self.conv(x))


from .mlp import MLP  # noqa: E402  (vector inputs; its own module)

BACKBONES: dict[str, type[nn.Module]] = {
    "dann_digits": DANNDigitNet,
    "dann_svhn": DANNSVHNNet,
    "lenet": LeNet,
    "mlp": MLP,
    "multilenet": MultiLeNet,
    "small_convnet": SmallConvNet,
}
