"""The standard benchmark datasets, read from the files people have on disk.

Each builder returns an :class:`ImageDataset` with the official train/test
split and a classification task per label.  Files are found under the data
root (``data.root``, ``--data-root`` or ``$MTLDA_DATA``); nothing downloads
unless ``data.download=true``, which asks torchvision to fetch the official
files into the root first (MNIST, Fashion-MNIST, USPS LIBSVM, SVHN; MNIST-M
has no official downloader and must be placed by hand).

USPS comes in two common formats that are preprocessed differently; they are
two datasets here (``usps``: torchvision's LIBSVM files, ``usps-esl``: the
ESL text files) so one experiment can never mix them.

Multi-digit sets follow Sener & Koltun (NeurIPS 2018): a 36×36 canvas, the
first image top-left, the second offset by 6 px, pixel-wise max, resized to
28×28 (see :func:`readers.make_multi_digits`).  MultiFashion+MNIST pairs an
MNIST digit (top-left) with a Fashion-MNIST item (bottom-right), as in Lin et
al., "Pareto Multi-Task Learning", NeurIPS 2019.  They are built once per
seed and cached next to the data.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from mtl.tasks import ClassificationTask

from ..records import atomic_torch_save
from . import readers
from .base import ImageDataset, ImageSplit

ROOT_HINT = "pass --data-root, set data.root in the config, or export MTLDA_DATA=/path/to/data"


def require_root(root: str | None, dataset: str) -> Path:
    if not root:
        raise readers.DatasetNotFoundError(f"dataset '{dataset}' reads files from a data root, but none is set: {ROOT_HINT}")
    path = Path(root)
    if not path.is_dir():
        raise readers.DatasetNotFoundError(f"data root {path} (for dataset '{dataset}') is not a directory: {ROOT_HINT}")
    return path


def _download(name: str, root: Path) -> None:
    """Fetch official files with torchvision into ``root`` (only when the config asks for it)."""
    import torchvision.datasets as tvd

    if name in ("mnist", "fashion-mnist"):
        cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
        for train in (True, False):
            cls(str(root), train=train, download=True)
    elif name == "usps":
        for train in (True, False):
            tvd.USPS(str(root / "USPS"), train=train, download=True)
    elif name == "svhn":
        for split in ("train", "test"):
            tvd.SVHN(str(root / "SVHN"), split=split, download=True)
    else:
        raise readers.DatasetNotFoundError(
            f"dataset '{name}' has no official downloader; place its files under {root} by hand "
            "(see the dataset's docstring in benchmarks/datasets/readers.py for the layout and source)"
        )


def _digit_dataset(name: str, task: str, train, test, description: str) -> ImageDataset:
    make = lambda pair: ImageSplit(pair[0], {task: pair[1]})  # noqa: E731
    return ImageDataset(name, make(train), make(test), {task: ClassificationTask(task, num_classes=10)}, description)


def _single_domain(name: str, task: str, read_split, description: str, needs_root: bool = True):
    """A registry loader for a dataset with official train/test files: ``read_split(root, train)``."""

    def load(root, data_seed=0, download=False):
        if needs_root:
            root = require_root(root, name)
        if download:
            _download(name, require_root(root, name))
        return _digit_dataset(name, task, read_split(root, True), read_split(root, False), description)

    load.__name__ = name.replace("-", "_")
    load.__doc__ = f"{description} (official train/test split)."
    return load


mnist = _single_domain("mnist", "digit", readers.load_mnist, "MNIST 28×28 grey")
# Debian's package directory is also searched, so Fashion-MNIST needs no root there
fashion_mnist = _single_domain(
    "fashion-mnist", "item", readers.load_fashion_mnist, "Fashion-MNIST 28×28 grey", needs_root=False
)
usps = _single_domain(
    "usps", "digit", lambda root, train: readers.load_usps(root, train, "libsvm"),
    "USPS 16×16 grey, LIBSVM files (torchvision)",
)
usps_esl = _single_domain(
    "usps-esl", "digit", lambda root, train: readers.load_usps(root, train, "esl"), "USPS 16×16 grey, ESL text files"
)
mnist_m = _single_domain("mnist-m", "digit", readers.load_mnist_m, "MNIST-M 32×32 RGB")
svhn = _single_domain(
    "svhn", "digit", lambda root, train: readers.load_svhn(root, "train" if train else "test"), "SVHN 32×32 RGB"
)


def _multi(name: str, first, second, root, data_seed: int, download: bool) -> ImageDataset:
    """Build (or load the cached) multi-image set from two single-image datasets."""
    a = first(root, data_seed, download)
    b = second(root, data_seed, download) if second is not first else a
    cache_root = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mtlda"
    cache = readers.default_cache_dir(cache_root) / f"{name}-seed{data_seed}-v1.pt"
    splits = None
    if cache.is_file():
        payload = torch.load(cache, weights_only=True)
        splits = payload["splits"]
    if splits is None:
        splits = {}
        for offset, split in enumerate(("train", "test")):
            sa, sb = getattr(a, split), getattr(b, split)
            images, labels = readers.make_multi_digits(
                sa.images, next(iter(sa.labels.values())), sb.images, next(iter(sb.labels.values())),
                seed=data_seed * 2 + offset,
            )
            splits[split] = (images, labels)
        atomic_torch_save(cache, {"splits": splits})
    make = lambda pair: ImageSplit(pair[0], {"left": pair[1][:, 0], "right": pair[1][:, 1]})  # noqa: E731
    tasks = {t: ClassificationTask(t, num_classes=10) for t in ("left", "right")}
    return ImageDataset(name, make(splits["train"]), make(splits["test"]), tasks, f"{name} (Sener & Koltun construction)")


def multimnist(root, data_seed=0, download=False):
    return _multi("multimnist", mnist, mnist, root, data_seed, download)


def multifashion(root, data_seed=0, download=False):
    return _multi("multifashion", fashion_mnist, fashion_mnist, root, data_seed, download)


def multifashion_mnist(root, data_seed=0, download=False):
    return _multi("multifashion-mnist", mnist, fashion_mnist, root, data_seed, download)
