"""The standard benchmark datasets, read from the files people have on disk.

Each builder returns an :class:`ImageDataset` with the official train/test
split and a classification task per label.  Files are found under the data
root (``data.root``, ``--data-root`` or ``$MTLDA_DATA``); nothing downloads
unless ``data.download=true``, which asks torchvision to fetch the official
files into the root first (MNIST, Fashion-MNIST, USPS LIBSVM, SVHN; MNIST-M
has no official downloader and must be placed by hand).

USPS comes in two common formats that are preprocessed differently; they are
two datasets here (``usps``: torchvision's LIBSVM files, ``usps-esl``: the
ESL text files) so one experiment can never mix them. The LIBSVM copy is the
ESL copy smoothed by a small Gaussian (:func:`readers.smooth_usps_like_libsvm`);
``usps-esl-as-libsvm`` applies it to the ESL files, which rebuilds the LIBSVM
train split where only the ESL files are at hand.

Multi-digit sets follow Sener & Koltun (NeurIPS 2018): a 36×36 canvas, the
first image top-left, the second offset by 6 px, pixel-wise max, resized to
28×28 (see :func:`readers.make_multi_digits`).  MultiFashion+MNIST pairs an
MNIST digit (top-left) with a Fashion-MNIST item (bottom-right), as in Lin et
al., "Pareto Multi-Task Learning", NeurIPS 2019.  They are built once per
seed and cached next to the data, keyed by the content of the images and labels
they are built from and by the construction's parameters and version
(:mod:`.derived_cache`), so a cache never outlives a change of its inputs.

The multi-task domain pair ``multimnist-source`` → ``multimnist-m`` splits
MNIST in two: a permutation seeded by ``data_seed`` halves the MNIST train set
and, separately, the MNIST test set; the source's canvases are built from the
first halves and the target's from the second, both digits of a canvas from
the same half, with the MultiMNIST construction above.  No MNIST image is in
both domains, and the target's unlabelled training canvases share no image
with its test canvases.  The target canvases are then made MNIST-M-like with
MNIST-M's blending rule, ``|patch − canvas|`` per channel with a random colour
patch per canvas (Ganin & Lempitsky, ICML 2015).  One difference from MNIST-M:
its patches come from BSDS500, which is not available offline, so here they
are cut from the two photographs bundled with scikit-learn
(``load_sample_images``, full resolution), as in ``digits-m``: less varied
textures and colours than BSDS500's 500 photographs.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from mtl.tasks import ClassificationTask

from . import readers
from .base import ImageDataset, ImageSplit
from .derived_cache import cached, content_key
from .embedded import PAIR_TASKS, _photo_pool, blend_with_photo_patches

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
usps_esl_as_libsvm = _single_domain(
    "usps-esl-as-libsvm", "digit", lambda root, train: readers.load_usps(root, train, "esl-as-libsvm"),
    "USPS 16×16 grey, ESL text files smoothed into the LIBSVM (torchvision) copy",
)
mnist_m = _single_domain("mnist-m", "digit", readers.load_mnist_m, "MNIST-M 32×32 RGB")
svhn = _single_domain(
    "svhn", "digit", lambda root, train: readers.load_svhn(root, "train" if train else "test"), "SVHN 32×32 RGB"
)


#: the MultiMNIST geometry (arguments of readers.make_multi_digits), part of every pair cache's key
PAIR_GEOMETRY = {"size": 28, "offset": 6, "pad": 8}
#: bump when a pair construction changes in a way its parameters do not show: older caches are then rebuilt
PAIR_CONSTRUCTION_VERSION = 2


def _cached_pair_splits(name: str, root, data_seed: int, build, inputs: dict) -> dict[str, ImageSplit]:
    """``{"train", "test"}`` left/right splits from the cache, or ``build()`` → ``{split: (images, labels)}`` saved
    there; the cache is keyed by ``inputs`` (everything ``build`` reads), the seed and the construction."""
    key = content_key(name, PAIR_CONSTRUCTION_VERSION, data_seed, PAIR_GEOMETRY, inputs)
    cache_root = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mtlda"
    cache = readers.default_cache_dir(cache_root) / f"{name}-seed{data_seed}-{key[:16]}.pt"
    splits = cached(cache, key, build, _valid_pair_splits)
    make = lambda pair: ImageSplit(pair[0], {"left": pair[1][:, 0], "right": pair[1][:, 1]})  # noqa: E731
    return {split: make(splits[split]) for split in ("train", "test")}


def _valid_pair_splits(splits) -> bool:
    """Whether a cache holds ``{"train", "test"}`` → (uint8 (N, C, H, W) images, int64 (N, 2) labels)."""
    try:
        pairs = [splits[split] for split in ("train", "test")]
        return all(
            images.dtype == torch.uint8 and images.dim() == 4
            and labels.dtype == torch.int64 and tuple(labels.shape) == (images.shape[0], 2)
            for images, labels in pairs
        )
    except (TypeError, KeyError, ValueError, AttributeError):
        return False


def _split_contents(dataset: ImageDataset) -> dict:
    """The tensors a derived dataset is built from: each split's images and labels."""
    return {split: (getattr(dataset, split).images, getattr(dataset, split).labels) for split in ("train", "test")}


def _multi(name: str, first, second, root, data_seed: int, download: bool) -> ImageDataset:
    """Build (or load the cached) multi-image set from two single-image datasets."""
    a = first(root, data_seed, download)
    b = second(root, data_seed, download) if second is not first else a

    def build():
        splits = {}
        for offset, split in enumerate(("train", "test")):
            sa, sb = getattr(a, split), getattr(b, split)
            splits[split] = readers.make_multi_digits(
                sa.images, next(iter(sa.labels.values())), sb.images, next(iter(sb.labels.values())),
                seed=data_seed * 2 + offset, **PAIR_GEOMETRY,
            )
        return splits

    inputs = {"first": _split_contents(a), "second": _split_contents(b)}
    splits = _cached_pair_splits(name, root, data_seed, build, inputs)
    tasks = {t: ClassificationTask(t, num_classes=10) for t in ("left", "right")}
    return ImageDataset(name, splits["train"], splits["test"], tasks, f"{name} (Sener & Koltun construction)")


def multimnist(root, data_seed=0, download=False):
    return _multi("multimnist", mnist, mnist, root, data_seed, download)


def multifashion(root, data_seed=0, download=False):
    return _multi("multifashion", fashion_mnist, fashion_mnist, root, data_seed, download)


def multifashion_mnist(root, data_seed=0, download=False):
    return _multi("multifashion-mnist", mnist, fashion_mnist, root, data_seed, download)


def mnist_halves(n: int, data_seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two disjoint halves (source, target) of an MNIST split of ``n`` images, as indices.

    One permutation per (seed, split), shared by both halves, so they never overlap.
    """
    offset = ("train", "test").index(split)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(data_seed * 2 + offset))
    return order[: n // 2], order[n // 2 :]


#: multimnist-m cuts its patches from the full-resolution photographs, as MNIST-M crops BSDS500
PHOTO_SHRINK = 1


def _multimnist_half(name: str, half: int, blend: bool, root, data_seed: int, download: bool) -> ImageDataset:
    """MultiMNIST canvases from one half (0: source, 1: target) of MNIST train and of MNIST test."""
    digits = mnist(root, data_seed, download)

    def build():
        splits = {}
        for offset, split in enumerate(("train", "test")):
            images, labels = getattr(digits, split).images, getattr(digits, split).labels["digit"]
            keep = mnist_halves(len(labels), data_seed, split)[half]
            seed = data_seed * 2 + offset + 1_000 * (half + 1)
            canvases, pair_labels = readers.make_multi_digits(
                images[keep], labels[keep], images[keep], labels[keep], seed=seed, **PAIR_GEOMETRY
            )
            if blend:
                canvases = blend_with_photo_patches(canvases, seed=seed + 1, shrink=PHOTO_SHRINK)
            splits[split] = (canvases, pair_labels)
        return splits

    # the photographs the patches are cut from are an input too (they ship with scikit-learn)
    inputs = {"mnist": _split_contents(digits), "half": half, "blend": blend,
              "photos": list(_photo_pool(PHOTO_SHRINK)) if blend else None}
    splits = _cached_pair_splits(name, root, data_seed, build, inputs)
    kind = "blended with colour photo patches (MNIST-M rule)" if blend else "grey"
    return ImageDataset(
        name, splits["train"], splits["test"], dict(PAIR_TASKS),
        f"MultiMNIST from {'the second' if half else 'the first'} half of MNIST, {kind}",
    )


def multimnist_source(root, data_seed=0, download=False):
    """The source of the multi-task DA pair: MultiMNIST from the first half of MNIST train / test."""
    return _multimnist_half("multimnist-source", 0, False, root, data_seed, download)


def multimnist_m(root, data_seed=0, download=False):
    """The target of the multi-task DA pair: MultiMNIST from the second halves, MNIST-M-blended."""
    return _multimnist_half("multimnist-m", 1, True, root, data_seed, download)
