"""Readers for the standard digit benchmarks, straight from the files on disk.

Every loader is a plain function that returns ``(images, labels)``:

* ``images``: ``torch.uint8`` tensor of shape ``(N, C, H, W)``;
* ``labels``: ``torch.int64`` tensor of shape ``(N,)`` with digits/classes 0..9.

No ``torch.utils.data.Dataset`` or torchvision dataset class is involved, so the
result can be moved to a device once and indexed there. PIL is used only to
decode the MNIST-M PNGs and ``scipy.io.loadmat`` only to read SVHN.

Errors
------
A file that is not where it should be raises :class:`DatasetNotFoundError`
(a ``FileNotFoundError``) that lists every path that was tried and says where
the data comes from. A file that exists but cannot be read completely and
consistently raises :class:`CorruptDatasetError` (a ``ValueError``) naming the
file and the problem. Nothing is ever loaded partially.

Formats and sources
-------------------
IDX (MNIST, Fashion-MNIST)
    Big-endian binary: a 4-byte magic number ``0x0000TTDD`` (``TT`` the element
    type code, ``0x08`` = unsigned byte; ``DD`` the number of dimensions), then
    one big-endian ``uint32`` per dimension, then the row-major payload. Images
    are ``0x00000803`` (N x 28 x 28), labels ``0x00000801`` (N). Files may be
    gzip-compressed. MNIST: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner,
    "Gradient-based learning applied to document recognition", Proc. IEEE
    86(11), 1998; http://yann.lecun.com/exdb/mnist/ (torchvision mirrors it,
    ``torchvision.datasets.MNIST(root, download=True)``). Fashion-MNIST:
    H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
    Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017;
    https://github.com/zalandoresearch/fashion-mnist, also packaged by Debian
    (``apt-get install dataset-fashion-mnist`` installs the four ``.gz`` files
    in ``/usr/share/datasets/fashion-mnist/``).

USPS, LIBSVM format (``usps.bz2`` train 7,291 / ``usps.t.bz2`` test 2,007)
    J. J. Hull, "A database for handwritten text recognition research", IEEE
    TPAMI 16(5), 1994, as redistributed by the LIBSVM data sets page (C.-C. Chang
    and C.-J. Lin, "LIBSVM: a library for support vector machines", ACM TIST
    2(3), 2011), https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps ;
    this is the copy torchvision downloads. bzip2 text, one sample per line:
    ``label idx:value ...`` with labels 1..10 meaning digits 0..9, feature
    indices 1..256 (row-major 16 x 16) and values in [-1, 1]; omitted features
    are 0 (sparse LIBSVM convention).

USPS, ESL format (``zip.train.gz`` 7,291 / ``zip.test.gz`` 2,007)
    The copy distributed with T. Hastie, R. Tibshirani, J. Friedman, "The
    Elements of Statistical Learning", 2nd ed., Springer 2009;
    https://hastie.su.domains/ElemStatLearn/data.html . gzip text, one image
    per line: the digit (e.g. ``6`` or ``6.0000``) then 256 values in [-1, 1].
    Same images and order as the LIBSVM files but preprocessed differently:
    do not mix the two formats in one experiment. The difference is one
    smoothing: the LIBSVM copy is the ESL copy convolved with a sampled
    Gaussian, σ = 0.75 px, 5 × 5 taps normalised to sum 1, zero ink outside
    the 16 × 16 frame (measured on the test split, where both files are here:
    every pixel within 0.18 grey level of 255 before rounding, and within one
    level after torchvision's truncation to uint8).
    :func:`load_usps_esl_as_libsvm` applies it, which rebuilds the LIBSVM
    train split (``usps.bz2``) from ``zip.train.gz``.

    Both USPS formats are mapped to ``uint8`` exactly as torchvision's ``USPS``
    does: ``((v + 1) / 2 * 255)`` computed in float32 and then *truncated*
    (``astype(uint8)``), so results are bit-identical to torchvision's.

MNIST-M (59,001 train / 9,001 test, 32 x 32 RGB)
    Y. Ganin and V. Lempitsky, "Unsupervised Domain Adaptation by
    Backpropagation", ICML 2015; Y. Ganin et al., "Domain-Adversarial Training
    of Neural Networks", JMLR 17, 2016. MNIST digits blended with patches of
    BSDS500 (P. Arbelaez et al., TPAMI 2011). The original archive
    ``mnist_m.tar.gz`` (linked from the DANN project page, e.g. via
    https://github.com/fungtion/DANN) holds ``mnist_m/mnist_m_{train,test}/NNNNNNNN.png``
    and ``mnist_m/mnist_m_{train,test}_labels.txt`` (lines ``00000000.png 5``).
    Decoded images are cached as a ``.pt`` file (see :func:`load_mnist_m`).

SVHN (``{train,test,extra}_32x32.mat``)
    Y. Netzer, T. Wang, A. Coates, A. Bissacco, B. Wu, A. Y. Ng, "Reading Digits
    in Natural Images with Unsupervised Feature Learning", NIPS Workshop on
    Deep Learning and Unsupervised Feature Learning, 2011;
    http://ufldl.stanford.edu/housenumbers/ . MATLAB v5 files with ``X`` of
    shape (32, 32, 3, N) uint8 and ``y`` of shape (N, 1) with 10 meaning 0.

MultiMNIST (built, not read)
    :func:`make_multi_digits` overlays two digits following O. Sener and
    V. Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS
    2018 (after S. Sabour, N. Frosst, G. Hinton, "Dynamic Routing Between
    Capsules", NeurIPS 2017).
"""

from __future__ import annotations

import bz2
import gzip
import io
import math
import os
import struct
import tarfile
import warnings
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..records import atomic_torch_save

__all__ = [
    "DatasetNotFoundError",
    "CorruptDatasetError",
    "DEBIAN_FASHION_MNIST_DIR",
    "read_idx",
    "load_mnist",
    "load_fashion_mnist",
    "load_usps_libsvm",
    "load_usps_esl",
    "load_usps",
    "load_mnist_m",
    "load_svhn",
    "make_multi_digits",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Where Debian's ``dataset-fashion-mnist`` package installs the IDX ``.gz`` files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file is not where it was expected; the message says where to get it."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but is malformed, truncated or inconsistent."""


# --------------------------------------------------------------------------- #
# Shared helpers
# --------------------------------------------------------------------------- #
_MNIST_SOURCE = (
    "Get it from http://yann.lecun.com/exdb/mnist/ (or a torchvision mirror), "
    "or run torchvision.datasets.MNIST(root, download=True) once."
)
_FASHION_SOURCE = (
    "Get it from https://github.com/zalandoresearch/fashion-mnist, run "
    "torchvision.datasets.FashionMNIST(root, download=True) once, or install the "
    "Debian package: apt-get install dataset-fashion-mnist."
)
_USPS_LIBSVM_SOURCE = (
    "Get it from https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps "
    "or run torchvision.datasets.USPS(root=<root>/USPS, train=..., download=True) once."
)
_USPS_ESL_SOURCE = (
    "Get it from https://hastie.su.domains/ElemStatLearn/data.html "
    "(files zip.train.gz and zip.test.gz)."
)
_MNIST_M_SOURCE = (
    "Get the original archive mnist_m.tar.gz (Ganin & Lempitsky, linked from the DANN "
    "project page, e.g. via https://github.com/fungtion/DANN) and put it in root, "
    "or extract it there."
)
_SVHN_SOURCE = (
    "Get it from http://ufldl.stanford.edu/housenumbers/ "
    "or run torchvision.datasets.SVHN(root=<root>/SVHN, split=..., download=True) once."
)


def _not_found(what: str, looked: list[Path], how: str) -> DatasetNotFoundError:
    places = "\n".join(f"  - {p}" for p in looked)
    return DatasetNotFoundError(f"{what} not found. Looked for:\n{places}\n{how}")


def _first_existing(candidates: list[Path]) -> Optional[Path]:
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _split_name(train: bool) -> str:
    return "train" if train else "test"


def _read_decompressed(path: Path) -> bytes:
    """Read ``path`` fully, transparently decompressing gzip or bzip2.

    The compression is recognised by the file's magic bytes, not its suffix.
    Truncated or damaged streams raise :class:`CorruptDatasetError`.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        kind, decompress = "gzip", gzip.decompress
    elif raw[:3] == b"BZh":
        kind, decompress = "bzip2", bz2.decompress
    else:
        return raw
    try:
        return decompress(raw)
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise CorruptDatasetError(f"{path}: truncated or damaged {kind} stream ({exc})") from exc


def _decode_text(data: bytes, path: Path) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise CorruptDatasetError(f"{path}: not an ASCII text file ({exc})") from exc


def _check_labels(labels: torch.Tensor, low: int, high: int, where: object) -> None:
    if labels.numel() and (int(labels.min()) < low or int(labels.max()) > high):
        raise CorruptDatasetError(
            f"{where}: labels out of range: found {int(labels.min())}..{int(labels.max())}, "
            f"expected {low}..{high}"
        )


def _check_counts(n_images: int, n_labels: int, where: object) -> None:
    if n_images != n_labels:
        raise CorruptDatasetError(
            f"{where}: label/image count mismatch: {n_images} images but {n_labels} labels"
        )


# --------------------------------------------------------------------------- #
# IDX: MNIST and Fashion-MNIST
# --------------------------------------------------------------------------- #
_IDX_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}


def read_idx(path: PathLike, *, ndim: Optional[int] = None) -> torch.Tensor:
    """Read an IDX file (plain or gzip-compressed) into a ``uint8`` tensor.

    Parameters
    ----------
    path
        The IDX file, e.g. ``train-images-idx3-ubyte`` or ``...-ubyte.gz``.
        gzip is recognised by content, whatever the suffix.
    ndim
        If given, the number of dimensions the header must declare
        (3 for images, magic ``0x00000803``; 1 for labels, ``0x00000801``).

    Returns
    -------
    torch.Tensor
        ``torch.uint8`` tensor with the shape given in the header.

    Raises
    ------
    DatasetNotFoundError
        If ``path`` does not exist.
    CorruptDatasetError
        On a wrong magic number, an element type other than unsigned byte, a
        wrong number of dimensions, a truncated gzip stream, or a payload whose
        length differs from the one the header declares.
    """
    path = Path(path)
    if not path.is_file():
        raise _not_found("IDX file", [path], "Check the path.")
    data = _read_decompressed(path)
    dims, offset = _parse_idx_header(data, path, ndim)
    expected = math.prod(dims)
    actual = len(data) - offset
    if actual != expected:
        raise CorruptDatasetError(
            f"{path}: size mismatch: header declares shape {tuple(dims)} = {expected} bytes "
            f"of payload but the file has {actual} ({'truncated' if actual < expected else 'trailing bytes'})"
        )
    array = np.frombuffer(data, dtype=np.uint8, count=expected, offset=offset)
    return torch.from_numpy(array.reshape(dims).copy())


def _parse_idx_header(data: bytes, path: Path, ndim: Optional[int]) -> tuple[list[int], int]:
    """Validate the IDX magic number; return the dimensions and the payload offset."""
    if len(data) < 4:
        raise CorruptDatasetError(f"{path}: only {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    type_code, n_dims = data[2], data[3]
    if data[:2] != b"\x00\x00" or type_code not in _IDX_TYPE_NAMES or n_dims == 0:
        raise CorruptDatasetError(
            f"{path}: wrong magic number 0x{magic:08X}; not an IDX file "
            "(expected 0x00000803 for images or 0x00000801 for labels)"
        )
    if type_code != 0x08:
        raise CorruptDatasetError(
            f"{path}: IDX element type 0x{type_code:02X} ({_IDX_TYPE_NAMES[type_code]}) is not "
            "supported; only 0x08 (unsigned byte) is"
        )
    if ndim is not None and n_dims != ndim:
        raise CorruptDatasetError(
            f"{path}: wrong dimension count: magic 0x{magic:08X} declares {n_dims} dimensions, "
            f"expected {ndim} (magic 0x{0x800 | ndim:08X})"
        )
    offset = 4 + 4 * n_dims
    if len(data) < offset:
        raise CorruptDatasetError(f"{path}: truncated IDX header ({len(data)} of {offset} bytes)")
    dims = list(struct.unpack(f">{n_dims}I", data[4:offset]))
    return dims, offset


def _idx_split_candidates(directory: Path, train: bool) -> dict[str, list[Path]]:
    """Candidate paths (extracted first, then ``.gz``) of a split's image and label files."""
    prefix = "train" if train else "t10k"
    names = {"images": f"{prefix}-images-idx3-ubyte", "labels": f"{prefix}-labels-idx1-ubyte"}
    return {kind: [directory / name, directory / f"{name}.gz"] for kind, name in names.items()}


def _find_idx_split(directory: Path, train: bool) -> Optional[dict[str, Path]]:
    found = {k: _first_existing(c) for k, c in _idx_split_candidates(directory, train).items()}
    if any(path is None for path in found.values()):
        return None
    return found  # type: ignore[return-value]


def _load_idx_split(files: dict[str, Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and cross-check a 28x28 image file and its label file."""
    images = read_idx(files["images"], ndim=3)
    labels = read_idx(files["labels"], ndim=1)
    if tuple(images.shape[1:]) != (28, 28):
        raise CorruptDatasetError(
            f"{files['images']}: images are {tuple(images.shape[1:])}, expected (28, 28)"
        )
    _check_counts(images.shape[0], labels.shape[0], f"{files['images']} / {files['labels']}")
    _check_labels(labels, 0, 9, files["labels"])
    return images.unsqueeze(1), labels.long()


def _idx_not_found(what: str, directories: list[Path], train: bool, how: str) -> DatasetNotFoundError:
    looked = []
    for directory in directories:
        for candidates in _idx_split_candidates(directory, train).values():
            looked.extend(candidates)
    return _not_found(f"{what} {_split_name(train)} split (images and labels)", looked, how)


def load_mnist(root: PathLike, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST from torchvision's layout ``root/MNIST/raw/``.

    Parameters
    ----------
    root
        Directory containing ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
        (extracted or ``.gz``; extracted files win when both exist).
    train
        Training split (60,000) if True, test split (10,000) otherwise.

    Returns
    -------
    images, labels
        ``(N, 1, 28, 28)`` uint8 and ``(N,)`` int64.
    """
    raw_dir = Path(root) / "MNIST" / "raw"
    files = _find_idx_split(raw_dir, train)
    if files is None:
        raise _idx_not_found("MNIST", [raw_dir], train, _MNIST_SOURCE)
    return _load_idx_split(files)


def load_fashion_mnist(root: Optional[PathLike], train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Load Fashion-MNIST from torchvision's layout or Debian's package directory.

    Parameters
    ----------
    root
        Directory containing ``FashionMNIST/raw/`` (torchvision layout), or None.
        If None, or if that layout lacks the split's files, the Debian directory
        :data:`DEBIAN_FASHION_MNIST_DIR` (``apt-get install dataset-fashion-mnist``)
        is tried.
    train
        Training split (60,000) if True, test split (10,000) otherwise.

    Returns
    -------
    images, labels
        ``(N, 1, 28, 28)`` uint8 and ``(N,)`` int64.
    """
    directories = [] if root is None else [Path(root) / "FashionMNIST" / "raw"]
    directories.append(Path(DEBIAN_FASHION_MNIST_DIR))
    for directory in directories:
        files = _find_idx_split(directory, train)
        if files is not None:
            return _load_idx_split(files)
    raise _idx_not_found("Fashion-MNIST", directories, train, _FASHION_SOURCE)


# --------------------------------------------------------------------------- #
# USPS
# --------------------------------------------------------------------------- #
_USPS_FILES = {
    "libsvm": {True: "usps.bz2", False: "usps.t.bz2"},
    "esl": {True: "zip.train.gz", False: "zip.test.gz"},
}
_USPS_PIXELS = 256
_USPS_VALUE_TOLERANCE = 1e-6


def _usps_values_to_uint8(values: np.ndarray, path: Path) -> torch.Tensor:
    """Map (N, 256) values in [-1, 1] to (N, 1, 16, 16) uint8 like torchvision.

    torchvision computes ``((v + 1) / 2 * 255).astype(np.uint8)`` in float32,
    i.e. it truncates; we do the same so both give identical pixels.
    """
    limit = 1.0 + _USPS_VALUE_TOLERANCE
    if not np.all(np.isfinite(values)) or np.abs(values).max(initial=0.0) > limit:
        raise CorruptDatasetError(f"{path}: pixel values outside [-1, 1]")
    scaled = (values.astype(np.float32) + 1) / 2 * 255
    pixels = np.clip(scaled, 0, 255).astype(np.uint8)
    return torch.from_numpy(pixels.reshape(-1, 1, 16, 16))


def _integral_labels(raw: np.ndarray, path: Path) -> torch.Tensor:
    if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
        raise CorruptDatasetError(f"{path}: non-integer labels")
    return torch.from_numpy(raw.astype(np.int64))


def _nonempty_lines(path: Path) -> list[str]:
    lines = [line for line in _decode_text(_read_decompressed(path), path).splitlines() if line.strip()]
    if not lines:
        raise CorruptDatasetError(f"{path}: contains no samples")
    return lines


def _parse_libsvm_line(line: str, values: np.ndarray, path: Path, lineno: int) -> float:
    """Fill ``values`` (256,) from one LIBSVM line; return the raw label."""
    label, features = (line.split(None, 1) + [""])[:2]
    try:
        label_value = float(label)
        numbers = np.array(features.replace(":", " ").split(), dtype=np.float64)
    except ValueError as exc:
        raise CorruptDatasetError(f"{path}, line {lineno}: malformed LIBSVM line ({exc})") from exc
    if features.count(":") * 2 != numbers.size:
        raise CorruptDatasetError(f"{path}, line {lineno}: malformed 'index:value' pair")
    indices, feature_values = numbers[0::2], numbers[1::2]
    if indices.size and (
        indices.min() < 1 or indices.max() > _USPS_PIXELS or np.any(indices != np.round(indices))
        or np.unique(indices).size != indices.size
    ):
        raise CorruptDatasetError(
            f"{path}, line {lineno}: feature indices must be distinct integers in 1..{_USPS_PIXELS}"
        )
    values[indices.astype(np.int64) - 1] = feature_values
    return label_value


def load_usps_libsvm(path: PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a USPS file in LIBSVM format (``usps.bz2`` or ``usps.t.bz2``).

    Parameters
    ----------
    path
        The bzip2 (or plain) text file; lines are ``label idx:value ...`` with
        labels 1..10 for digits 0..9, indices 1..256 and values in [-1, 1].
        Omitted features count as 0.

    Returns
    -------
    images, labels
        ``(N, 1, 16, 16)`` uint8 (``((v + 1) / 2 * 255)`` truncated, as
        torchvision) and ``(N,)`` int64 digits 0..9.
    """
    values, labels = _read_usps_libsvm_values(path)
    return _usps_values_to_uint8(values, Path(path)), labels


def _read_usps_libsvm_values(path: PathLike) -> tuple[np.ndarray, torch.Tensor]:
    """``(N, 256)`` float64 values in [-1, 1] and ``(N,)`` int64 digits 0..9 of a LIBSVM USPS file."""
    path = Path(path)
    if not path.is_file():
        raise _not_found("USPS (LIBSVM format) file", [path], _USPS_LIBSVM_SOURCE)
    lines = _nonempty_lines(path)
    values = np.zeros((len(lines), _USPS_PIXELS), dtype=np.float64)
    raw_labels = np.empty(len(lines), dtype=np.float64)
    for i, line in enumerate(lines):
        raw_labels[i] = _parse_libsvm_line(line, values[i], path, i + 1)
    labels = _integral_labels(raw_labels, path)
    _check_labels(labels, 1, 10, path)
    return values, labels - 1


def load_usps_esl(path: PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a USPS file in the ESL text format (``zip.train.gz`` or ``zip.test.gz``).

    Parameters
    ----------
    path
        The gzip (or plain) text file; one image per line: the digit (``6`` or
        ``6.0000``) followed by 256 values in [-1, 1].

    Returns
    -------
    images, labels
        ``(N, 1, 16, 16)`` uint8 (same mapping as :func:`load_usps_libsvm`) and
        ``(N,)`` int64 digits 0..9.
    """
    values, labels = _read_usps_esl_values(path)
    return _usps_values_to_uint8(values, Path(path)), labels


#: the smoothing that turns the ESL copy of USPS into the LIBSVM (torchvision) copy, measured on the
#: test split where both files exist (see the module docstring): a sampled Gaussian of this σ in pixels …
USPS_LIBSVM_SMOOTHING_SIGMA = 0.75
#: … over this many taps per axis, normalised to sum 1
USPS_LIBSVM_SMOOTHING_TAPS = 5


def smooth_usps_like_libsvm(values: np.ndarray) -> np.ndarray:
    """Smooth ESL USPS values ``(N, 256)`` in [-1, 1] into the LIBSVM copy's values.

    A separable sampled Gaussian (:data:`USPS_LIBSVM_SMOOTHING_SIGMA`,
    :data:`USPS_LIBSVM_SMOOTHING_TAPS` taps, normalised) on ink ``(v + 1) / 2``
    with no ink outside the frame, mapped back to [-1, 1]. Ink is conserved for
    strokes at least two pixels from the border, and a blank image stays blank.
    """
    half = USPS_LIBSVM_SMOOTHING_TAPS // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    taps = np.exp(-(offsets**2) / (2 * USPS_LIBSVM_SMOOTHING_SIGMA**2))
    taps /= taps.sum()
    ink = (np.asarray(values, dtype=np.float64).reshape(-1, 16, 16) + 1) / 2
    padded = np.pad(ink, ((0, 0), (half, half), (half, half)))
    rows = sum(w * padded[:, i : i + 16, :] for i, w in enumerate(taps))
    smoothed = sum(w * rows[:, :, j : j + 16] for j, w in enumerate(taps))
    return (smoothed * 2 - 1).reshape(-1, _USPS_PIXELS)


def load_usps_esl_as_libsvm(path: PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an ESL USPS file smoothed into the LIBSVM copy (:func:`smooth_usps_like_libsvm`).

    With ``zip.train.gz`` this rebuilds torchvision's USPS train split
    (``usps.bz2``, which Transfer-Learning-Library trains on) from the ESL files:
    on the test split, where both copies exist, the result is within one grey
    level of :func:`load_usps_libsvm` on every pixel.

    Returns
    -------
    images, labels
        ``(N, 1, 16, 16)`` uint8 (torchvision's mapping) and ``(N,)`` int64 digits 0..9.
    """
    values, labels = _read_usps_esl_values(path)
    return _usps_values_to_uint8(smooth_usps_like_libsvm(values), Path(path)), labels


def _read_usps_esl_values(path: PathLike) -> tuple[np.ndarray, torch.Tensor]:
    """``(N, 256)`` float64 values in [-1, 1] and ``(N,)`` int64 digits of an ESL USPS file."""
    path = Path(path)
    if not path.is_file():
        raise _not_found("USPS (ESL format) file", [path], _USPS_ESL_SOURCE)
    rows = [line.split() for line in _nonempty_lines(path)]
    for lineno, row in enumerate(rows, start=1):
        if len(row) != 1 + _USPS_PIXELS:
            raise CorruptDatasetError(
                f"{path}, line {lineno}: {len(row)} numbers, expected {1 + _USPS_PIXELS} "
                "(label and 256 pixel values)"
            )
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError as exc:
        raise CorruptDatasetError(f"{path}: non-numeric value ({exc})") from exc
    labels = _integral_labels(table[:, 0], path)
    _check_labels(labels, 0, 9, path)
    return table[:, 1:], labels


def load_usps(root: PathLike, train: bool, fmt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load USPS from ``root/USPS/`` (or ``root/``) in one explicitly chosen format.

    Parameters
    ----------
    root
        Directory containing ``USPS/`` with the files (``root`` itself is tried second).
    train
        Training split (7,291) if True, test split (2,007) otherwise.
    fmt
        ``"libsvm"`` (``usps.bz2`` / ``usps.t.bz2``), ``"esl"``
        (``zip.train.gz`` / ``zip.test.gz``) or ``"esl-as-libsvm"`` (the ESL
        files smoothed into the LIBSVM copy, :func:`load_usps_esl_as_libsvm`). The formats are never mixed: a
        missing file of the chosen format is an error even if the other exists.

    Returns
    -------
    images, labels
        ``(N, 1, 16, 16)`` uint8 and ``(N,)`` int64.
    """
    # format → (files it reads, reader); esl-as-libsvm reads the ESL files
    formats = {"libsvm": ("libsvm", load_usps_libsvm), "esl": ("esl", load_usps_esl),
               "esl-as-libsvm": ("esl", load_usps_esl_as_libsvm)}
    if fmt not in formats:
        raise ValueError(f"fmt must be one of {sorted(formats)}, got {fmt!r}")
    files, reader = formats[fmt]
    name = _USPS_FILES[files][train]
    candidates = [Path(root) / "USPS" / name, Path(root) / name]
    path = _first_existing(candidates)
    if path is None:
        source = _USPS_LIBSVM_SOURCE if files == "libsvm" else _USPS_ESL_SOURCE
        raise _not_found(f"USPS {_split_name(train)} split ({fmt} format, {name})", candidates, source)
    return reader(path)


# --------------------------------------------------------------------------- #
# MNIST-M
# --------------------------------------------------------------------------- #
_MNIST_M_ARCHIVE = "mnist_m.tar.gz"
_MNIST_M_SHAPE = (32, 32, 3)
_MNIST_M_CACHE_FORMAT = "mtlda.mnist_m.v1"


def _mnist_m_names(split: str) -> tuple[str, str]:
    """(PNG directory name, labels file name) of a split."""
    return f"mnist_m_{split}", f"mnist_m_{split}_labels.txt"


def _locate_mnist_m(root: Path, split: str) -> tuple[str, Path]:
    """Find MNIST-M under ``root``: ``("archive", file)`` or ``("folder", dir)``."""
    archive = root / _MNIST_M_ARCHIVE
    if archive.is_file():
        return "archive", archive
    _, labels_name = _mnist_m_names(split)
    folders = [root / "mnist_m", root]
    for folder in folders:
        if (folder / labels_name).is_file():
            return "folder", folder
    looked = [archive] + [folder / labels_name for folder in folders]
    raise _not_found(f"MNIST-M {split} split", looked, _MNIST_M_SOURCE)


def _parse_mnist_m_labels(data: bytes, where: str) -> tuple[list[str], torch.Tensor]:
    """Parse ``NNNNNNNN.png <digit>`` lines into file names and labels."""
    text = data.decode("ascii", errors="replace")
    names, labels = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].endswith(".png") or "/" in parts[0] or not parts[1].isdigit():
            raise CorruptDatasetError(f"{where}, line {lineno}: expected '<name>.png <digit>', got {line!r}")
        names.append(parts[0])
        labels.append(int(parts[1]))
    if not names:
        raise CorruptDatasetError(f"{where}: contains no labels")
    if len(set(names)) != len(names):
        raise CorruptDatasetError(f"{where}: the same PNG is listed more than once")
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    _check_labels(label_tensor, 0, 9, where)
    return names, label_tensor


def _decode_rgb_png(data: bytes, where: str) -> np.ndarray:
    """Decode one 32x32 PNG with PIL to a (32, 32, 3) uint8 RGB array (other modes are converted)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
            image.load()
            rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptDatasetError(f"{where}: cannot decode PNG ({exc})") from exc
    if rgb.shape != _MNIST_M_SHAPE:
        raise CorruptDatasetError(f"{where}: image is {rgb.shape[1]}x{rgb.shape[0]}, expected 32x32")
    return rgb


def _decode_listed_pngs(
    names: list[str], fetch: Callable[[str], Optional[bytes]], where: Callable[[str], str], labels_where: str
) -> torch.Tensor:
    """Decode the PNGs in label-file order into an (N, 3, 32, 32) uint8 tensor."""
    pixels = np.empty((len(names), 3, 32, 32), dtype=np.uint8)
    for i, name in enumerate(names):
        data = fetch(name)
        if data is None:
            raise CorruptDatasetError(f"{where(name)} is listed in {labels_where} but missing")
        pixels[i] = _decode_rgb_png(data, where(name)).transpose(2, 0, 1)
    return torch.from_numpy(pixels)


def _check_no_unlisted(unlisted: set[str], where: str, labels_where: str) -> None:
    if unlisted:
        example = sorted(unlisted)[0]
        raise CorruptDatasetError(
            f"{where}: label/image count mismatch: {len(unlisted)} PNG(s) not listed in "
            f"{labels_where} (e.g. {example})"
        )


def _scan_mnist_m_archive(archive: Path, split: str) -> tuple[dict[str, bytes], Optional[bytes]]:
    """Stream the archive once; return the split's PNG bytes by name and its labels file."""
    png_dir, labels_name = _mnist_m_names(split)
    pngs: dict[str, bytes] = {}
    labels_data = None
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or not parts:
                    continue
                if parts[-1] == labels_name:
                    labels_data = tar.extractfile(member).read()
                elif len(parts) >= 2 and parts[-2] == png_dir and parts[-1].endswith(".png"):
                    if parts[-1] in pngs:
                        raise CorruptDatasetError(f"{archive}: {member.name} appears twice")
                    pngs[parts[-1]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise CorruptDatasetError(f"{archive}: truncated or damaged tar archive ({exc})") from exc
    return pngs, labels_data


def _read_mnist_m_archive(archive: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    png_dir, labels_name = _mnist_m_names(split)
    pngs, labels_data = _scan_mnist_m_archive(archive, split)
    if labels_data is None:
        raise CorruptDatasetError(f"{archive}: no member named .../{labels_name}")
    labels_where = f"{archive}:{labels_name}"
    names, labels = _parse_mnist_m_labels(labels_data, labels_where)
    images = _decode_listed_pngs(
        names, lambda n: pngs.pop(n, None), lambda n: f"{archive}:{png_dir}/{n}", labels_where
    )
    _check_no_unlisted(set(pngs), str(archive), labels_where)
    return images, labels


def _read_mnist_m_folder(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    png_dir, labels_name = _mnist_m_names(split)
    labels_path, image_dir = folder / labels_name, folder / png_dir
    names, labels = _parse_mnist_m_labels(labels_path.read_bytes(), str(labels_path))
    present: set[str] = set()
    if image_dir.is_dir():
        present = {entry.name for entry in os.scandir(image_dir) if entry.name.endswith(".png")}

    def fetch(name: str) -> Optional[bytes]:
        return (image_dir / name).read_bytes() if name in present else None

    images = _decode_listed_pngs(names, fetch, lambda n: str(image_dir / n), str(labels_path))
    _check_no_unlisted(present - set(names), str(image_dir), str(labels_path))
    return images, labels


def _mnist_m_cache_key(kind: str, source: Path, split: str) -> str:
    """Cache key: split plus size and mtime of the archive (or of the folder's labels file and image dir)."""
    if kind == "archive":
        stat = source.stat()
        return f"mnist_m-{split}-{stat.st_size}-{stat.st_mtime_ns}"
    png_dir, labels_name = _mnist_m_names(split)
    labels_stat = (source / labels_name).stat()
    dir_mtime = (source / png_dir).stat().st_mtime_ns if (source / png_dir).is_dir() else 0
    return f"mnist_m-{split}-folder-{labels_stat.st_size}-{labels_stat.st_mtime_ns}-{dir_mtime}"


def default_cache_dir(root: Path) -> Path:
    """``root/.cache`` if it can be written, else ``$XDG_CACHE_HOME/mtlda`` (``~/.cache/mtlda``)."""
    local = root / ".cache"
    if os.access(local if local.is_dir() else root, os.W_OK):
        return local
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "mtlda"


def _load_cache(path: Path, key: str) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """Return the cached tensors if ``path`` holds a valid cache for ``key``, else None."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = payload["images"], payload["labels"]
        valid = (
            payload.get("format") == _MNIST_M_CACHE_FORMAT and payload.get("key") == key
            and images.dtype == torch.uint8 and tuple(images.shape[1:]) == (3, 32, 32)
            and labels.dtype == torch.int64 and labels.shape == (images.shape[0],)
        )
    except Exception as exc:  # a damaged cache is rebuilt, never trusted
        warnings.warn(f"ignoring unreadable MNIST-M cache {path}: {exc}", stacklevel=3)
        return None
    if not valid:
        warnings.warn(f"ignoring invalid MNIST-M cache {path}", stacklevel=3)
        return None
    return images, labels


def load_mnist_m(
    root: PathLike, train: bool, cache_dir: Optional[PathLike] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST-M from its original archive or extracted folder, with a decode cache.

    Parameters
    ----------
    root
        Directory containing ``mnist_m.tar.gz`` (used first when present), or
        the extracted ``mnist_m/`` folder, or itself holding ``mnist_m_train/``,
        ``mnist_m_train_labels.txt`` etc.
    train
        Training split (59,001) if True, test split (9,001) otherwise.
    cache_dir
        Where to keep the decoded tensors. Default: ``root/.cache/`` when
        writable, else ``$XDG_CACHE_HOME/mtlda`` (``~/.cache/mtlda``). The cache
        file ``mnist_m-<split>-<size>-<mtime_ns>.pt`` is keyed by the split and
        by the archive's size and modification time, so a replaced archive is
        decoded again. For a folder the key uses the labels file's size and
        mtime and the image directory's mtime (in-place edits of single PNGs are
        not detected). The file is written atomically; failing to write it only
        warns.

    Returns
    -------
    images, labels
        ``(N, 3, 32, 32)`` uint8 RGB (PNGs decoded with PIL, converted to RGB),
        and ``(N,)`` int64, in the order of the labels file.

    Raises
    ------
    DatasetNotFoundError
        If neither the archive nor an extracted folder is found.
    CorruptDatasetError
        On a truncated archive, a PNG listed in the labels file but absent, a
        PNG not listed, an undecodable or non-32x32 PNG, or a bad labels line.
    """
    root = Path(root)
    split = _split_name(train)
    kind, source = _locate_mnist_m(root, split)
    key = _mnist_m_cache_key(kind, source, split)
    cache_path = (Path(cache_dir) if cache_dir is not None else default_cache_dir(root)) / f"{key}.pt"
    cached = _load_cache(cache_path, key)
    if cached is not None:
        return cached
    reader = _read_mnist_m_archive if kind == "archive" else _read_mnist_m_folder
    images, labels = reader(source, split)
    payload = {"format": _MNIST_M_CACHE_FORMAT, "key": key, "images": images, "labels": labels}
    try:
        atomic_torch_save(cache_path, payload)
    except OSError as exc:
        warnings.warn(f"could not write MNIST-M cache {cache_path}: {exc}", stacklevel=2)
    return images, labels


# --------------------------------------------------------------------------- #
# SVHN
# --------------------------------------------------------------------------- #
_SVHN_SPLITS = ("train", "test", "extra")


def _loadmat_checked(path: Path) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(path, variable_names=["X", "y"])
    except MemoryError:
        raise
    except Exception as exc:  # scipy raises many types on damaged files
        raise CorruptDatasetError(f"{path}: cannot read MATLAB file ({type(exc).__name__}: {exc})") from exc


def load_svhn(root: PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load SVHN (cropped digits) from ``root/SVHN/{split}_32x32.mat`` or ``root/{split}_32x32.mat``.

    Parameters
    ----------
    root
        Directory with torchvision's ``SVHN/`` folder (or the ``.mat`` files directly).
    split
        ``"train"`` (73,257), ``"test"`` (26,032) or ``"extra"`` (531,131).

    Returns
    -------
    images, labels
        ``(N, 3, 32, 32)`` uint8 (``X`` is stored as (32, 32, 3, N)) and
        ``(N,)`` int64 with label 10 mapped to digit 0.
    """
    if split not in _SVHN_SPLITS:
        raise ValueError(f"split must be one of {_SVHN_SPLITS}, got {split!r}")
    name = f"{split}_32x32.mat"
    candidates = [Path(root) / "SVHN" / name, Path(root) / name]
    path = _first_existing(candidates)
    if path is None:
        raise _not_found(f"SVHN {split} split", candidates, _SVHN_SOURCE)
    mat = _loadmat_checked(path)
    if "X" not in mat or "y" not in mat:
        raise CorruptDatasetError(f"{path}: missing variable 'X' or 'y'")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise CorruptDatasetError(f"{path}: X is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, N)")
    _check_counts(x.shape[3], y.shape[0], path)
    labels = _integral_labels(y.astype(np.float64), path)
    _check_labels(labels, 1, 10, path)
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    return images, labels % 10


# --------------------------------------------------------------------------- #
# MultiMNIST-style pairs
# --------------------------------------------------------------------------- #
_MULTI_CHUNK = 4096


def _as_nchw_uint8(images: torch.Tensor, name: str) -> torch.Tensor:
    if images.dtype != torch.uint8:
        raise TypeError(f"{name} must be torch.uint8, got {images.dtype}")
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"{name} must be (N, H, W) or (N, 1, H, W), got {tuple(images.shape)}")
    return images


def overlay_pair_canvas(a: torch.Tensor, b: torch.Tensor, offset: int, pad: int) -> torch.Tensor:
    """Pixel-wise max of ``a`` (N,1,H,W) at (0, 0) and ``b`` at (offset, offset) on an (H+pad, W+pad) zero canvas."""
    n, _, height, width = a.shape
    canvas = torch.zeros((n, 1, height + pad, width + pad), dtype=torch.uint8, device=a.device)
    canvas[..., :height, :width] = a
    window = canvas[..., offset:offset + height, offset:offset + width]
    window.copy_(torch.maximum(window, b))
    return canvas


def resize_images(images: torch.Tensor, size: int, chunk: int = 8192) -> torch.Tensor:
    """Bilinear, antialiased resize of uint8 (N, C, H, W) images, in chunks to bound memory."""
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8, device=images.device)
    for start in range(0, images.shape[0], chunk):
        resized = torch.nn.functional.interpolate(
            images[start : start + chunk].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def make_multi_digits(
    images_a: torch.Tensor,
    labels_a: torch.Tensor,
    images_b: torch.Tensor,
    labels_b: torch.Tensor,
    seed: int,
    size: int = 28,
    *,
    offset: int = 6,
    pad: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlay digit pairs as in MultiMNIST (Sener & Koltun, NeurIPS 2018).

    Sener & Koltun (Sec. 5.1) put one digit at the top-left and another at the
    bottom-right of a larger image. Their released loader uses a 36x36 canvas
    for 28x28 MNIST: the left digit at rows/cols [0, 28), the right one at
    [6, 34), pixel-wise maximum where they overlap, then a resize back to
    28x28. This function follows that geometry for any H x W:

    * canvas of (H + pad) x (W + pad) zeros, ``pad = 8`` by default;
    * ``a_i`` at rows [0, H), cols [0, W) (top-left, "left" task);
    * ``b_j`` at rows [offset, offset + H), cols [offset, offset + W),
      ``offset = 6`` by default (bottom-right, "right" task), so for 28x28 the
      bottom and right 2 pixels of the canvas stay zero, as in the original;
    * the two layers are combined by pixel-wise maximum;
    * the canvas is resized to ``size`` x ``size`` with bilinear, antialiased
      interpolation (``torch.nn.functional.interpolate(..., antialias=True)``),
      rounded to uint8. (The original used scipy's nearest-neighbour
      ``imresize``; bilinear + antialias is this project's choice.)

    For every ``i``, ``j`` is drawn uniformly from ``range(len(images_b))``
    (with replacement, independently per sample, as in the original) by a
    ``torch.Generator`` seeded with ``seed``, so the result is deterministic.

    Parameters
    ----------
    images_a, labels_a
        (N, H, W) or (N, 1, H, W) uint8 images and (N,) labels, used in order.
    images_b, labels_b
        (M, H, W) or (M, 1, H, W) uint8 images and (M,) labels to draw from.
        ``images_a`` may be passed again here to pair a set with itself.
    seed
        Seed of the draw of ``j``.
    size
        Side of the square output.
    offset, pad
        Placement of ``b`` and canvas enlargement (``0 <= offset <= pad``).

    Returns
    -------
    images, labels
        ``(N, 1, size, size)`` uint8 and ``(N, 2)`` int64 with columns
        ``[label_a (top-left), label_b (bottom-right)]``.
    """
    a = _as_nchw_uint8(images_a, "images_a")
    b = _as_nchw_uint8(images_b, "images_b")
    if a.shape[2:] != b.shape[2:]:
        raise ValueError(f"image sizes differ: {tuple(a.shape[2:])} vs {tuple(b.shape[2:])}")
    if labels_a.shape != (a.shape[0],) or labels_b.shape != (b.shape[0],):
        raise ValueError("labels must be 1-D with one label per image")
    if b.shape[0] == 0:
        raise ValueError("images_b is empty")
    if not 0 <= offset <= pad:
        raise ValueError(f"need 0 <= offset <= pad, got offset={offset}, pad={pad}")
    generator = torch.Generator().manual_seed(int(seed))
    partner = torch.randint(b.shape[0], (a.shape[0],), generator=generator)
    out = torch.empty((a.shape[0], 1, size, size), dtype=torch.uint8, device=a.device)
    for start in range(0, a.shape[0], _MULTI_CHUNK):
        stop = start + _MULTI_CHUNK
        chosen = b[partner[start:stop].to(b.device)].to(a.device)
        out[start:stop] = resize_images(overlay_pair_canvas(a[start:stop], chosen, offset, pad), size)
    partner_labels = labels_b.long()[partner.to(labels_b.device)].to(labels_a.device)
    return out, torch.stack([labels_a.long(), partner_labels], dim=1)
