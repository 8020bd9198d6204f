"""The inter-twinning moons of Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016, §5.1.

* ``moons``: the source domain, scikit-learn's ``make_moons`` (two interleaved
  half circles, class 0 the upper one, class 1 the lower one) with Gaussian
  noise ``noise`` (default 0.1); ``n_samples`` training points (default 600,
  half per class) and ``n_test`` test points (default 600).
* ``moons-rotated``: the target domain, the same construction rotated by
  ``angle`` degrees (default 30, the paper's; counter-clockwise) about the
  centre of the construction, (0.5, 0.25), the middle of its bounding box.

Every split is an independent draw (so no target point is a rotated copy of a
source point), deterministic for ``data.data_seed``: split ``k`` (source
train, source test, target train, target test) uses ``random_state =
4·data_seed + k``.  Points are float32, stored as 2×1×1 "images" so the image
pipeline carries them unchanged; normalise them with ``data.mean``/``data.std``
and read them with the ``mlp`` backbone.  Set the parameters in a config with
``data.args``, e.g. ``data.args: {moons-rotated: {angle: 40}}``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from mtl.tasks import ClassificationTask

from .base import ImageDataset, ImageSplit

MOON_TASK = {"moon": ClassificationTask(name="moon", num_classes=2)}
#: the middle of make_moons' bounding box (x from −1 to 2, y from −0.5 to 1): the rotation centre
CENTRE = (0.5, 0.25)


def moon_points(n_samples: int, noise: float, random_state: int, angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``make_moons`` points (float64, (n, 2)) rotated by ``angle`` degrees about :data:`CENTRE`, and labels."""
    from sklearn.datasets import make_moons

    points, labels = make_moons(n_samples=n_samples, noise=noise, random_state=random_state)
    if angle:
        a = math.radians(angle)
        rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        centre = np.array(CENTRE)
        points = (points - centre) @ rotation.T + centre
    return points, labels


def _split(n_samples: int, noise: float, random_state: int, angle: float) -> ImageSplit:
    points, labels = moon_points(n_samples, noise, random_state, angle)
    images = torch.from_numpy(points.astype(np.float32)).view(-1, 2, 1, 1)
    return ImageSplit(images, {"moon": torch.from_numpy(labels.astype(np.int64))})


def _check(n_samples: int, n_test: int, noise: float) -> None:
    if n_samples < 2 or n_test < 2:
        raise ValueError(f"n_samples and n_test must be at least 2, got {n_samples} and {n_test}")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")


def load_moons(data_seed: int = 0, n_samples: int = 600, n_test: int = 600, noise: float = 0.1) -> ImageDataset:
    """The source domain: unrotated moons."""
    _check(n_samples, n_test, noise)
    train = _split(n_samples, noise, 4 * data_seed, 0.0)
    test = _split(n_test, noise, 4 * data_seed + 1, 0.0)
    return ImageDataset("moons", train, test, MOON_TASK, f"two moons, noise {noise}")


def load_moons_rotated(
    data_seed: int = 0, angle: float = 30.0, n_samples: int = 600, n_test: int = 600, noise: float = 0.1
) -> ImageDataset:
    """The target domain: moons rotated by ``angle`` degrees about :data:`CENTRE`."""
    _check(n_samples, n_test, noise)
    train = _split(n_samples, noise, 4 * data_seed + 2, float(angle))
    test = _split(n_test, noise, 4 * data_seed + 3, float(angle))
    return ImageDataset("moons-rotated", train, test, MOON_TASK, f"two moons rotated {angle}°, noise {noise}")
