"""Backbones for small images and vectors.  Each exposes ``out_features``.

Every :class:`Backbone` that sets ``name`` registers itself in
:data:`BACKBONES`, the names configs use (``model.backbone``): a new backbone
is one more class here.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._registry import register

#: config name (``model.backbone``) → backbone class, filled by the classes themselves
BACKBONES: dict[str, type[nn.Module]] = {}


class Backbone(nn.Module):
    """Base class of the named backbones: a feature extractor with an integer ``out_features``, the size
    of its flat output, and ``stages()`` for the architectures that act between stages (cross-stitch,
    MTAN).  The first line of a subclass's docstring is what ``mtlda list`` shows."""

    #: the name configs use (``model.backbone``); a class that sets one is registered in :data:`BACKBONES`
    name: str = ""
    #: constructor arguments that follow from the data, not hyperparameters: the images' channels and
    #: size (whoever builds the backbone passes them; a config cannot set them)
    derived_arguments: tuple[str, ...] = ("in_channels", "image_size")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(BACKBONES, cls)


def _flat_size(body: nn.Module, in_channels: int, image_size: int) -> int:
    with torch.no_grad():
        return body(torch.zeros(1, in_channels, image_size, image_size)).flatten(1).shape[1]


class LeNet(Backbone):
    """LeNet-style feature extractor for 28×28 digits.

    The variant used in digit domain-adaptation benchmarks (for example
    Transfer-Learning-Library's MNIST↔USPS table, after LeCun et al.,
    "Gradient-based learning applied to document recognition", Proc. IEEE 1998):
    conv(20, 5×5) → max-pool → ReLU → conv(50, 5×5) → dropout → max-pool → ReLU
    → linear(500) → ReLU → dropout.  ``out_features`` = 500.
    """

    name = "lenet"

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


class MultiLeNet(Backbone):
    """The small shared encoder of the MultiMNIST literature (Sener & Koltun 2018; Lin et al. 2019).

    conv(10, k×k) → max-pool → ReLU → conv(20, 5×5) → max-pool → ReLU →
    linear(50) → ReLU.  ``out_features`` = 50.

    The default first kernel, 9×9, is the LeNet of Lin et al., "Pareto Multi-Task Learning"
    (NeurIPS 2019; Xi-L/ParetoMTL, multiMNIST/model_lenet.py), written for 36×36 canvases.
    Sener & Koltun's released encoder for 28×28 MultiMNIST (isl-org/MultiObjectiveOptimization,
    multi_task/models/multi_lenet.py, ``MultiLeNetR``) uses 5×5 (``conv1_kernel=5``: 320 conv
    outputs into the linear layer) and channel dropout (p = 0.5) on the second convolution
    (``dropout=0.5``; theirs draws one channel mask per batch and does not rescale, this is
    the standard ``nn.Dropout2d``).  Channel dropout with a positive scale commutes with the
    max-pool and ReLU that follow, so it sits at the end of ``conv`` here.
    """

    name = "multilenet"

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


class SmallConvNet(Backbone):
    """A two-layer convolutional net for 8×8–16×16 images (the embedded quick-start data).

    conv(32, 3×3) → BN → ReLU → conv(64, 3×3) → BN → ReLU → max-pool → linear → ReLU.
    Not from a paper; sized so a quick-start run takes seconds on a CPU.
    """

    name = "small_convnet"

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


class DANNDigitNet(Backbone):
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

    name = "dann_digits"

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


class DANNSVHNNet(Backbone):
    """Feature extractor of Ganin et al. 2016 for SVHN→MNIST (after Srivastava et al. 2014).

    Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016:
    conv(64, 5×5) → ReLU → max-pool 3/2 → conv(64, 5×5)
    → ReLU → max-pool 3/2 → conv(128, 5×5) → ReLU, then fc 3072 → ReLU.
    The paper's remaining label layers (fc 2048 → 10) form the head side.
    Inputs 32×32, padding 2 keeps the spatial size through the convolutions.
    """

    name = "dann_svhn"

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


class MLP(Backbone, nn.Sequential):
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

    name = "mlp"

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
