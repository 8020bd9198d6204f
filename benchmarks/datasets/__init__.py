"""Dataset registry: every dataset a config can name."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .base import ImageDataset, ImageSplit, split_train_val
from . import standard
from .image_folder import load_image_folder_domain
from .embedded import load_digits_m, load_digits_source, load_multidigits, load_multidigits_m, load_multidigits_source
from .digit_sum import load_multidigits_sum
from .moons import load_moons, load_moons_rotated
from .readers import CorruptDatasetError, DatasetNotFoundError


@dataclass(frozen=True)
class DatasetEntry:
    loader: Callable[..., ImageDataset]
    kind: str  # "domain" (a DA source/target; one task, or several for multi-task DA) or "multitask"
    needs_root: bool
    description: str
    #: the function whose keyword parameters (other than ``data_seed``) ``data.args.<name>`` may set;
    #: the loader passes them on to it. None: the dataset takes no parameters
    parameters: Callable | None = None

    def parameter_names(self) -> list[str]:
        if self.parameters is None:
            return []
        return [n for n in inspect.signature(self.parameters).parameters if n != "data_seed"]


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(
        lambda root, data_seed, download: load_digits_source(data_seed), "domain", False, "sklearn 8×8 digits (embedded)"
    ),
    "digits-m": DatasetEntry(
        lambda root, data_seed, download: load_digits_m(data_seed), "domain", False, "digits blended with photo patches (embedded)"
    ),
    "multidigits": DatasetEntry(
        lambda root, data_seed, download: load_multidigits(data_seed), "multitask", False, "two overlaid digits, left/right (embedded)"
    ),
    "multidigits-sum": DatasetEntry(
        lambda root, data_seed, download, **args: load_multidigits_sum(data_seed, **args), "multitask", False,
        "multidigits plus a third task, the digits' sum as a regression in raw units (embedded)", load_multidigits_sum,
    ),
    "multidigits-source": DatasetEntry(
        lambda root, data_seed, download: load_multidigits_source(data_seed), "domain", False,
        "two overlaid digits, left/right, from the digits half (embedded; multi-task DA source)",
    ),
    "multidigits-m": DatasetEntry(
        lambda root, data_seed, download: load_multidigits_m(data_seed), "domain", False,
        "multidigits-source's construction on the digits-m half, photo-blended (embedded; multi-task DA target)",
    ),
    "moons": DatasetEntry(
        lambda root, data_seed, download, **args: load_moons(data_seed, **args), "domain", False,
        "two interleaved half circles, 2-D points (embedded; Ganin et al. 2016 §5.1)", load_moons,
    ),
    "moons-rotated": DatasetEntry(
        lambda root, data_seed, download, **args: load_moons_rotated(data_seed, **args), "domain", False,
        "moons rotated about their centre by data.args.moons-rotated.angle degrees (default 30; embedded)",
        load_moons_rotated,
    ),
    "mnist": DatasetEntry(standard.mnist, "domain", True, "MNIST 28×28 grey (torchvision layout)"),
    "usps": DatasetEntry(standard.usps, "domain", True, "USPS 16×16 grey, LIBSVM usps.bz2/usps.t.bz2"),
    "usps-esl": DatasetEntry(standard.usps_esl, "domain", True, "USPS 16×16 grey, ESL zip.train.gz/zip.test.gz"),
    "usps-esl-as-libsvm": DatasetEntry(
        standard.usps_esl_as_libsvm, "domain", True,
        "USPS 16×16 grey, ESL zip.train.gz/zip.test.gz smoothed into the LIBSVM copy (Gaussian σ 0.75 px)",
    ),
    "mnist-m": DatasetEntry(standard.mnist_m, "domain", True, "MNIST-M 32×32 RGB (mnist_m.tar.gz or extracted)"),
    "svhn": DatasetEntry(standard.svhn, "domain", True, "SVHN 32×32 RGB (torchvision .mat files)"),
    "fashion-mnist": DatasetEntry(standard.fashion_mnist, "domain", False, "Fashion-MNIST (torchvision or Debian layout)"),
    "multimnist": DatasetEntry(standard.multimnist, "multitask", True, "two MNIST digits, left/right (Sener & Koltun)"),
    "multimnist-source": DatasetEntry(
        standard.multimnist_source, "domain", True, "MultiMNIST from one half of MNIST, left/right (multi-task DA source)"
    ),
    "multimnist-m": DatasetEntry(
        standard.multimnist_m, "domain", True,
        "MultiMNIST from the other half of MNIST, blended with photo patches (multi-task DA target)",
    ),
    "multifashion": DatasetEntry(standard.multifashion, "multitask", False, "two Fashion-MNIST items, left/right"),
    "multifashion-mnist": DatasetEntry(
        standard.multifashion_mnist, "multitask", True, "MNIST digit + Fashion-MNIST item, left/right"
    ),
}


IMAGE_FOLDER_PREFIX = "imagefolder:"


def dataset_kind(name: str) -> str | None:
    """'domain' or 'multitask' for a known name (``imagefolder:<domain>`` included), else None."""
    if name.startswith(IMAGE_FOLDER_PREFIX) and len(name) > len(IMAGE_FOLDER_PREFIX):
        return "domain"
    return DATASETS[name].kind if name in DATASETS else None


def check_dataset_args(name: str, args: Mapping) -> dict:
    """``args`` as keyword arguments for dataset ``name``; a ValueError names any it does not take."""
    args = dict(args or {})
    if not args:
        return args
    entry = DATASETS.get(name)
    allowed = entry.parameter_names() if entry is not None else []
    if not allowed:
        raise ValueError(f"dataset {name!r} takes no parameters")
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ValueError(f"dataset {name!r} has no parameter(s) {', '.join(unknown)}; its parameters: {', '.join(allowed)}")
    return args


def load_dataset(
    name: str, root: str | None = None, data_seed: int = 0, download: bool = False, image_size: int | None = None,
    args: Mapping | None = None,
) -> ImageDataset:
    """Load a registered dataset, or ``imagefolder:<domain>`` read from ``root/<domain>/<class>/*``.

    ``args``: the dataset's parameters (:func:`check_dataset_args`), for those that have any."""
    args = check_dataset_args(name, args)
    if name.startswith(IMAGE_FOLDER_PREFIX):
        return load_image_folder_domain(root, name[len(IMAGE_FOLDER_PREFIX) :], image_size or 224)
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}, imagefolder:<domain>")
    return DATASETS[name].loader(root, data_seed, download, **args)


__all__ = ["IMAGE_FOLDER_PREFIX", "check_dataset_args", "dataset_kind", "CorruptDatasetError", "DatasetNotFoundError", "DATASETS", "DatasetEntry", "ImageDataset", "ImageSplit", "load_dataset", "split_train_val"]
