"""Image-folder domains (Office-31, Office-Home, DomainNet layouts): ``root/<domain>/<class>/*.jpg``.

These are too large to hold decoded in memory, so they stream from disk
through a ``DataLoader`` with worker processes.  Workers only decode, crop and
resize, producing uint8 tensors; normalisation runs on the batch on the
training device, as for the in-memory datasets.

Transforms (the standard ImageNet ones, as in Transfer-Learning-Library):
training: ``RandomResizedCrop(224)`` + horizontal flip; evaluation:
``Resize(256)`` + ``CenterCrop(224)``.  Normalise with ImageNet's mean/std in
the config.  Office-style domains have no official train/test split; the
usual protocol uses every target image, unlabelled, for adaptation and
reports accuracy on the same images, so ``train`` and ``test`` hold the same
files (with the training and evaluation transforms respectively).

Every file is checked when the folder is indexed, before any training: an
empty file, a file that is not an image, or a truncated one is an error naming
it (the check reads each file's first and last bytes, and decodes only a file
that does not end as its format should).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import default_loader

from mtl.tasks import ClassificationTask

from .base import ImageDataset
from .readers import CorruptDatasetError, DatasetNotFoundError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

#: how the image formats ImageFolder indexes start: (first bytes, format, how a complete file ends or None)
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG", b"\xff\xd9"),
    (b"\x89PNG\r\n\x1a\n", "PNG", b"IEND\xaeB`\x82"),
    (b"BM", "BMP", None),
    (b"RIFF", "WebP", None),
    (b"II*\x00", "TIFF", None),
    (b"MM\x00*", "TIFF", None),
    *((f"P{i}".encode(), "PNM", None) for i in range(1, 7)),
)
_TAIL_BYTES = 32


def check_image_files(paths: Sequence[str | Path]) -> None:
    """A CorruptDatasetError naming the first empty, non-image or truncated file of ``paths`` (and how many more)."""
    problems = [(path, reason) for path in paths if (reason := image_file_problem(Path(path)))]
    if problems:
        path, reason = problems[0]
        more = f" ({len(problems) - 1} more bad file(s) in the folder)" if len(problems) > 1 else ""
        raise CorruptDatasetError(f"{path}: {reason}{more}; remove or replace it")


def image_file_problem(path: Path) -> str | None:
    """What is wrong with an image file, or None: cheap for sound files (first and last bytes only)."""
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes), not an image"
    with open(path, "rb") as handle:
        head = handle.read(16)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    known = next(((name, end) for start, name, end in _SIGNATURES if head.startswith(start)), None)
    if known is None:
        return "not an image file (it starts like no JPEG, PNG, BMP, WebP, TIFF or PNM file)"
    name, end = known
    if end is not None and end in tail:
        return None
    return _decode_problem(path, name)


def _decode_problem(path: Path, name: str) -> str | None:
    """Decode the whole file: the check for formats without an end marker, or a file that lacks its marker."""
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:  # noqa: BLE001 - PIL raises many types for damaged files
        return f"truncated or damaged {name} image ({type(error).__name__}: {error})"
    return None


def load_rgb(path: str):
    """torchvision's image loader (PIL, RGB), with an error naming a file it cannot decode."""
    try:
        return default_loader(path)
    except (OSError, ValueError, SyntaxError) as error:  # PIL's errors for unreadable files
        raise CorruptDatasetError(f"{path}: cannot decode the image ({error}); remove or replace it") from error


def train_transform(size: int = 224):
    return transforms.Compose(
        [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.PILToTensor()]
    )


def eval_transform(size: int = 224):
    return transforms.Compose(
        [transforms.Resize(int(size * 256 / 224)), transforms.CenterCrop(size), transforms.PILToTensor()]
    )


@dataclass
class FolderSplit:
    """A split read from files: which images of an image folder, and the task their class index labels.

    Training streams read ``train_folder`` (random crops and flips);
    evaluation reads ``eval_folder`` (centre crop).  Both index the same files.
    """

    train_folder: ImageFolder
    eval_folder: ImageFolder
    task: str
    indices: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.train_folder) if self.indices is None else len(self.indices)

    def subset(self, index: torch.Tensor) -> "FolderSplit":
        base = torch.arange(len(self.train_folder)) if self.indices is None else self.indices
        return FolderSplit(self.train_folder, self.eval_folder, self.task, base[index])

    def dataset(self, training: bool):
        folder = self.train_folder if training else self.eval_folder
        return folder if self.indices is None else torch.utils.data.Subset(folder, self.indices.tolist())


def load_image_folder_domain(root: str | None, domain: str, image_size: int = 224) -> ImageDataset:
    if not root:
        raise DatasetNotFoundError(
            f"image-folder domain '{domain}' needs a data root holding '{domain}/<class>/<image>' folders: "
            "pass --data-root, set data.root, or export MTLDA_DATA"
        )
    path = Path(root) / domain
    if not path.is_dir():
        available = sorted(p.name for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
        raise DatasetNotFoundError(
            f"domain folder {path} not found; expected {path}/<class>/<image>.jpg (Office-31, Office-Home and "
            f"DomainNet ship this layout). Folders under {root}: {', '.join(available) or 'none'}"
        )
    try:
        train = ImageFolder(str(path), transform=train_transform(image_size), loader=load_rgb, allow_empty=False)
    except (FileNotFoundError, RuntimeError) as error:
        raise DatasetNotFoundError(f"{path}: {error}") from error
    check_image_files([file for file, _ in train.samples])
    test = ImageFolder(str(path), transform=eval_transform(image_size), loader=load_rgb)
    task = ClassificationTask("label", num_classes=len(train.classes))
    split = FolderSplit(train, test, "label")
    return ImageDataset(
        f"imagefolder:{domain}",
        split,  # type: ignore[arg-type]
        split,  # type: ignore[arg-type]
        {"label": task},
        f"image folder {path} ({len(train)} images, {len(train.classes)} classes)",
        extras={"classes": train.classes, "image_size": image_size},
    )


class _CycleSampler(torch.utils.data.Sampler):
    """Yields the owner's current permutation from its current offset (read at each ``iter``)."""

    def __init__(self, owner: "LoaderBatcher"):
        self.owner = owner

    def __iter__(self):
        return iter(self.owner.order[self.owner.offset :].tolist())

    def __len__(self):
        return len(self.owner.order) - self.owner.offset


class LoaderBatcher:
    """The :class:`~benchmarks.batching.DeviceBatcher` interface over files read by DataLoader workers.

    Seeded permutation per cycle and a (cycle, offset) position, so a
    checkpoint resumes the stream exactly; pinned memory and persistent
    workers on CUDA.
    """

    def __init__(
        self,
        split: FolderSplit,
        batch_size: int,
        seed: int,
        device,
        workers: int = 4,
        drop_last: bool = True,
        labelled: bool = True,
    ):
        if drop_last and len(split) < batch_size:
            raise ValueError(f"split has {len(split)} images, fewer than one batch of {batch_size}")
        self.split, self.batch_size, self.seed, self.device = split, batch_size, seed, torch.device(device)
        self.drop_last = drop_last
        self.labelled = labelled
        self.cycle, self.offset = 0, 0
        self.order = self._permutation(0)
        cuda = self.device.type == "cuda"
        self.loader = torch.utils.data.DataLoader(
            split.dataset(training=True),
            batch_size=batch_size,
            sampler=_CycleSampler(self),
            num_workers=workers,
            pin_memory=cuda,
            persistent_workers=cuda and workers > 0,
            drop_last=drop_last,
        )
        self._iterator = None

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _permutation(self, cycle: int) -> torch.Tensor:
        return torch.randperm(len(self.split), generator=torch.Generator().manual_seed(self.seed * 1_000_003 + cycle))

    def next(self):
        if self._iterator is None:
            self._iterator = iter(self.loader)
        try:
            images, labels = next(self._iterator)
        except StopIteration:
            self.cycle, self.offset = self.cycle + 1, 0
            self.order = self._permutation(self.cycle)
            self._iterator = iter(self.loader)
            images, labels = next(self._iterator)
        self.offset += images.shape[0]
        labels = {self.split.task: labels.to(self.device, non_blocking=True)} if self.labelled else {}
        return images.to(self.device, non_blocking=True), labels

    def state_dict(self) -> dict:
        return {"cycle": self.cycle, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:
        self.cycle, self.offset = int(state["cycle"]), int(state["offset"])
        self.order = self._permutation(self.cycle)
        self._iterator = None  # restarts the sampler at the restored offset


def iterate_folder(split: FolderSplit, batch_size: int, device, workers: int = 0):
    loader = torch.utils.data.DataLoader(
        split.dataset(training=False), batch_size=batch_size, shuffle=False, num_workers=workers,
        pin_memory=torch.device(device).type == "cuda",
    )
    for images, labels in loader:
        yield images.to(device, non_blocking=True), {split.task: labels.to(device, non_blocking=True)}
