"""Datasets built from data that ships inside scikit-learn, so the quick start runs offline.

* ``digits``: scikit-learn's 8×8 handwritten digits (1,797 images, 16 grey
  levels; UCI "Optical Recognition of Handwritten Digits", Alpaydin & Kaynak
  1998), scaled to 0–255.
* ``digits-m``: an MNIST-M-style target domain (Ganin & Lempitsky, ICML 2015):
  each digit is blended with a random colour patch cut from the two
  photographs bundled with scikit-learn (``load_sample_images``), as
  ``|patch − digit|`` per channel, the MNIST-M blending rule.  The photographs
  are first shrunk 4× (area averaging) so an 8×8 patch holds texture rather
  than one flat colour.
* ``multidigits``: two digits on one 12×12 canvas, the first at the top-left
  and the second shifted 4 pixels down and right, combined by pixel-wise
  maximum; tasks ``left`` and ``right`` classify the two digits (the
  MultiMNIST construction of Sener & Koltun, NeurIPS 2018, scaled to 8×8
  digits without the final resize, which would blur 8×8 strokes away).
* ``multidigits-source`` and ``multidigits-m``: the multi-task domain pair, the
  ``multidigits`` construction applied to the two halves of the ``digits`` /
  ``digits-m`` split; ``multidigits-m``'s canvases are then blended with photo
  patches exactly as ``digits-m`` is.  Each half is split 75/25 into train and
  test before pairing, and both digits of a canvas come from the same split, so
  no digit image appears in two of the four splits.

Domain protocol: the 1,797 digits are split once (by ``data_seed``) into two
disjoint halves; ``digits`` uses the first and ``digits-m`` is built from the
second, so source and target never share an image.  Each half is split 75/25
into train and test.  Everything is deterministic for a seed.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from mtl.tasks import ClassificationTask

from .base import ImageDataset, ImageSplit
from .readers import overlay_pair_canvas

DIGIT_TASK = {"digit": ClassificationTask(name="digit", num_classes=10)}


@lru_cache(maxsize=4)
def _digit_halves(data_seed: int):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(data_seed))
    half = len(order) // 2
    return (images[order[:half]], labels[order[:half]]), (images[order[half:]], labels[order[half:]])


def _train_test(images, labels, data_seed: int, train_fraction: float = 0.75):
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(data_seed + 1))
    cut = int(len(order) * train_fraction)
    make = lambda idx: ImageSplit(images[idx], {"digit": labels[idx]})  # noqa: E731
    return make(order[:cut]), make(order[cut:])


def load_digits_source(data_seed: int = 0) -> ImageDataset:
    (images, labels), _ = _digit_halves(data_seed)
    train, test = _train_test(images, labels, data_seed)
    return ImageDataset("digits", train, test, DIGIT_TASK, "scikit-learn 8×8 digits (source half)")


@lru_cache(maxsize=2)
def _photo_pool(shrink: int = 4) -> list[torch.Tensor]:
    from sklearn.datasets import load_sample_images

    photos = []
    for photo in load_sample_images().images:
        t = torch.from_numpy(np.array(photo, copy=True)).permute(2, 0, 1).float().unsqueeze(0)
        photos.append(F.avg_pool2d(t, shrink).squeeze(0) if shrink > 1 else t.squeeze(0))
    return photos


def blend_with_photo_patches(images: torch.Tensor, seed: int, shrink: int = 4) -> torch.Tensor:
    """MNIST-M blending: ``|patch − digit|`` per channel with a random photo patch per image.

    ``images``: uint8 (N, 1, H, W) → uint8 (N, 3, H, W).  The photographs are
    scikit-learn's two sample images (427×640), shrunk ``shrink``× by area
    averaging first: 4 for 8×8 digits, 1 (full resolution, as MNIST-M crops
    BSDS500) for 28×28 ones.
    """
    generator = torch.Generator().manual_seed(seed)
    photos = _photo_pool(shrink)
    n, _, h, w = images.shape
    which = torch.randint(len(photos), (n,), generator=generator)
    out = torch.empty((n, 3, h, w), dtype=torch.uint8)
    digits = images.float()
    for i in range(n):
        photo = photos[int(which[i])]
        top = int(torch.randint(photo.shape[1] - h + 1, (1,), generator=generator))
        left = int(torch.randint(photo.shape[2] - w + 1, (1,), generator=generator))
        patch = photo[:, top : top + h, left : left + w]
        out[i] = (patch - digits[i]).abs().round().clamp(0, 255).to(torch.uint8)
    return out


def load_digits_m(data_seed: int = 0) -> ImageDataset:
    _, (images, labels) = _digit_halves(data_seed)
    blended = blend_with_photo_patches(images, seed=data_seed + 2)
    train, test = _train_test(blended, labels, data_seed)
    return ImageDataset("digits-m", train, test, DIGIT_TASK, "digits blended with photo patches (target half)")


PAIR_TASKS = {name: ClassificationTask(name=name, num_classes=10) for name in ("left", "right")}


def _pair_canvases(images, labels, index, generator, pairs_per_image: int, shift: int) -> ImageSplit:
    """``pairs_per_image`` canvases per image of ``index``, its partner drawn from ``index`` too."""
    first = index.repeat(pairs_per_image)
    second = index[torch.randint(len(index), (len(first),), generator=generator)]
    return ImageSplit(
        overlay_pair_canvas(images[first], images[second], offset=shift, pad=shift),
        {"left": labels[first], "right": labels[second]},
    )


def load_multidigits(data_seed: int = 0, pairs_per_image: int = 2, shift: int = 4) -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    generator = torch.Generator().manual_seed(data_seed)
    order = torch.randperm(len(labels), generator=generator)
    cut = int(0.8 * len(order))
    build = lambda index: _pair_canvases(images, labels, index, generator, pairs_per_image, shift)  # noqa: E731
    return ImageDataset(
        "multidigits", build(order[:cut]), build(order[cut:]), PAIR_TASKS, "two overlaid 8×8 digits (MultiMNIST-style)"
    )


def _multidigits_half(data_seed: int, half: int, pairs_per_image: int = 2, shift: int = 4):
    """Train and test canvases from one half of the ``digits``/``digits-m`` split (0: source, 1: target)."""
    images, labels = _digit_halves(data_seed)[half]
    generator = torch.Generator().manual_seed(data_seed * 2 + half + 17)
    order = torch.randperm(len(labels), generator=generator)
    cut = int(0.75 * len(order))
    build = lambda index: _pair_canvases(images, labels, index, generator, pairs_per_image, shift)  # noqa: E731
    return build(order[:cut]), build(order[cut:])


def load_multidigits_source(data_seed: int = 0) -> ImageDataset:
    train, test = _multidigits_half(data_seed, 0)
    return ImageDataset(
        "multidigits-source", train, test, PAIR_TASKS, "two overlaid 8×8 digits from the source half (multi-task DA)"
    )


def load_multidigits_m(data_seed: int = 0) -> ImageDataset:
    train, test = _multidigits_half(data_seed, 1)
    blend = lambda split, seed: ImageSplit(blend_with_photo_patches(split.images, seed), split.labels)  # noqa: E731
    return ImageDataset(
        "multidigits-m", blend(train, data_seed + 3), blend(test, data_seed + 4), PAIR_TASKS,
        "two overlaid 8×8 digits from the target half, blended with photo patches (multi-task DA)",
    )
