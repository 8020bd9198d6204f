"""Tests for benchmarks.datasets.readers: tiny synthetic files, plus real data under $MTLDA_DATA."""
from __future__ import annotations

import bz2
import gzip
import io
import os
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.datasets import readers
from benchmarks.datasets.readers import (
    CorruptDatasetError,
    DatasetNotFoundError,
    load_fashion_mnist,
    load_mnist,
    load_mnist_m,
    load_svhn,
    load_usps,
    load_usps_esl,
    load_usps_esl_as_libsvm,
    load_usps_libsvm,
    smooth_usps_like_libsvm,
    make_multi_digits,
    read_idx,
)


# --------------------------------------------------------------------------- #
# Writers for tiny files
# --------------------------------------------------------------------------- #
def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_bytes(path: Path, data: bytes, compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_idx_split(raw_dir: Path, train: bool, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    prefix = "train" if train else "t10k"
    suffix = ".gz" if gz else ""
    write_bytes(raw_dir / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), gz)
    write_bytes(raw_dir / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels), gz)


def random_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


MNIST_M_PIXELS = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(3)]
MNIST_M_LABELS = [7, 0, 3]


def mnist_m_members(split: str, drop: str | None = None) -> dict[str, bytes]:
    """Archive members (path -> content) for one split with 3 PNGs; ``drop`` leaves one PNG out."""
    names = [f"{i:08d}.png" for i in range(3)]
    pngs = {name: png_bytes(pixels) for name, pixels in zip(names, MNIST_M_PIXELS) if name != drop}
    members = {f"mnist_m/mnist_m_{split}/{name}": data for name, data in pngs.items()}
    labels = "".join(f"{n} {lab}\n" for n, lab in zip(names, MNIST_M_LABELS))
    members[f"mnist_m/mnist_m_{split}_labels.txt"] = labels.encode()
    return members


def write_tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_folder(root: Path, members: dict[str, bytes], strip: str = "") -> None:
    for name, data in members.items():
        write_bytes(root / name.removeprefix(strip), data)


# --------------------------------------------------------------------------- #
# IDX
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    images = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    labels = np.array([9, 0, 4], dtype=np.uint8)
    out_images = read_idx(write_bytes(tmp_path / "i.idx", idx_bytes(images), gz), ndim=3)
    out_labels = read_idx(write_bytes(tmp_path / "l.idx", idx_bytes(labels), gz))
    assert out_images.dtype == torch.uint8 and out_images.shape == (2, 3, 5)
    assert torch.equal(out_images, torch.from_numpy(images))
    assert torch.equal(out_labels, torch.from_numpy(labels))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"\x00\x01" + d[2:], "magic"),
        (lambda d: d[:2] + b"\x00" + d[3:], "magic"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d + b"\x00", "trailing"),
        (lambda d: d[:10], "truncated"),
        (lambda d: d[:2] + b"\x0d" + d[3:], "not supported"),
    ],
    ids=["magic-prefix", "unknown-type", "short-payload", "long-payload", "short-header", "float32"],
)
def test_read_idx_corrupt(tmp_path, mutate, message):
    path = write_bytes(tmp_path / "x.idx", mutate(idx_bytes(np.zeros((2, 3, 3), np.uint8))))
    with pytest.raises(CorruptDatasetError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_wrong_dimension_count(tmp_path):
    path = write_bytes(tmp_path / "labels.idx", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(CorruptDatasetError, match="dimension"):
        read_idx(path, ndim=3)


def test_read_idx_truncated_gzip(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10)))
    path = write_bytes(tmp_path / "x.idx.gz", data[:-12])
    with pytest.raises(CorruptDatasetError, match="gzip"):
        read_idx(path)


def test_read_idx_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nope.idx"):
        read_idx(tmp_path / "nope.idx")


# --------------------------------------------------------------------------- #
# MNIST / Fashion-MNIST
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_load_mnist_round_trip(tmp_path, gz, train):
    images, labels = random_digits(4)
    write_idx_split(tmp_path / "MNIST" / "raw", train, images, labels, gz)
    out_images, out_labels = load_mnist(tmp_path, train)
    assert out_images.shape == (4, 1, 28, 28) and out_images.dtype == torch.uint8
    assert out_labels.dtype == torch.int64
    assert torch.equal(out_images[:, 0], torch.from_numpy(images))
    assert out_labels.tolist() == labels.tolist()


def test_load_mnist_count_mismatch(tmp_path):
    images, labels = random_digits(4)
    write_idx_split(tmp_path / "MNIST" / "raw", True, images, labels[:3], gz=False)
    with pytest.raises(CorruptDatasetError, match="count mismatch"):
        load_mnist(tmp_path, True)


def test_load_mnist_label_out_of_range(tmp_path):
    images, labels = random_digits(4)
    labels[2] = 10
    write_idx_split(tmp_path / "MNIST" / "raw", True, images, labels, gz=True)
    with pytest.raises(CorruptDatasetError, match="out of range"):
        load_mnist(tmp_path, True)


def test_load_mnist_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, False)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz") in message
    assert "download=True" in message


def test_fashion_mnist_torchvision_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    images, labels = random_digits(3, seed=1)
    write_idx_split(tmp_path / "FashionMNIST" / "raw", False, images, labels, gz=True)
    out_images, out_labels = load_fashion_mnist(tmp_path, False)
    assert torch.equal(out_images[:, 0], torch.from_numpy(images))
    assert out_labels.tolist() == labels.tolist()


@pytest.mark.parametrize("root_is_none", [True, False])
def test_fashion_mnist_debian_fallback(tmp_path, monkeypatch, root_is_none):
    debian = tmp_path / "debian"
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST_DIR", debian)
    images, labels = random_digits(3, seed=2)
    write_idx_split(debian, True, images, labels, gz=True)
    out_images, out_labels = load_fashion_mnist(None if root_is_none else tmp_path / "empty", True)
    assert torch.equal(out_images[:, 0], torch.from_numpy(images))
    assert out_labels.tolist() == labels.tolist()


def test_fashion_mnist_missing_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(tmp_path, True)
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte") in message
    assert str(tmp_path / "debian" / "train-labels-idx1-ubyte.gz") in message
    assert "apt-get install dataset-fashion-mnist" in message


# --------------------------------------------------------------------------- #
# USPS
# --------------------------------------------------------------------------- #
USPS_VALUES = np.linspace(-1.0, 1.0, 256)


def torchvision_mapping(values: np.ndarray) -> np.ndarray:
    return ((values.astype(np.float32) + 1) / 2 * 255).astype(np.uint8)


def libsvm_line(label: int, values: np.ndarray, skip: tuple[int, ...] = ()) -> str:
    pairs = " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(values) if i not in skip)
    return f"{label} {pairs}\n"


def write_libsvm(path: Path, lines: list[str]) -> Path:
    return write_bytes(path, bz2.compress("".join(lines).encode()))


def test_usps_libsvm_values_and_label_shift(tmp_path):
    values = np.round(USPS_VALUES, 6)
    path = write_libsvm(tmp_path / "usps.t.bz2", [libsvm_line(1, values), libsvm_line(10, -values)])
    images, labels = load_usps_libsvm(path)
    assert images.shape == (2, 1, 16, 16) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 9] and labels.dtype == torch.int64
    assert images[0].flatten().tolist() == torchvision_mapping(values).tolist()
    assert images[1].flatten().tolist() == torchvision_mapping(-values).tolist()
    assert images[0, 0, 0, 0] == 0 and images[0, 0, 15, 15] == 255  # -1 -> 0, 1 -> 255, row-major


def test_usps_libsvm_hand_checked_values_and_sparse_zero(tmp_path):
    values = np.full(256, -1.0)
    values[:3] = [0.5, -0.5, 0.999]
    path = write_libsvm(tmp_path / "u.bz2", [libsvm_line(3, values, skip=(3,))])  # feature 4 omitted -> 0
    images, labels = load_usps_libsvm(path)
    assert images[0, 0, 0, :5].tolist() == [191, 63, 254, 127, 0]  # truncation, as torchvision
    assert labels.tolist() == [2]


@pytest.mark.parametrize(
    "line, message",
    [
        ("11 1:0.5\n", "out of range"),
        ("0 1:0.5\n", "out of range"),
        ("3 257:0.5\n", "indices"),
        ("3 1:1.5\n", r"\[-1, 1\]"),
        ("3 1:abc\n", "malformed"),
    ],
)
def test_usps_libsvm_corrupt(tmp_path, line, message):
    path = write_libsvm(tmp_path / "u.bz2", [line])
    with pytest.raises(CorruptDatasetError, match=message):
        load_usps_libsvm(path)


def test_usps_libsvm_truncated_bz2(tmp_path):
    data = bz2.compress(libsvm_line(1, USPS_VALUES).encode() * 20)
    path = write_bytes(tmp_path / "usps.bz2", data[: len(data) // 2])
    with pytest.raises(CorruptDatasetError, match="bzip2"):
        load_usps_libsvm(path)


def esl_line(label: str, values: np.ndarray) -> str:
    return label + " " + " ".join(f"{v:.3f}" for v in values) + "\n"


def test_usps_esl_round_trip(tmp_path):
    values = np.round(USPS_VALUES, 3)
    text = esl_line("6.0000", values) + esl_line("0", -values)
    path = write_bytes(tmp_path / "zip.test.gz", text.encode(), compress=True)
    images, labels = load_usps_esl(path)
    assert images.shape == (2, 1, 16, 16) and images.dtype == torch.uint8
    assert labels.tolist() == [6, 0]
    assert images[0].flatten().tolist() == torchvision_mapping(values).tolist()
    assert images[1].flatten().tolist() == torchvision_mapping(-values).tolist()


@pytest.mark.parametrize(
    "text, message",
    [
        (esl_line("6", USPS_VALUES)[:-8] + "\n", "expected 257"),
        (esl_line("6.5", USPS_VALUES), "non-integer"),
        (esl_line("10", USPS_VALUES), "out of range"),
    ],
)
def test_usps_esl_corrupt(tmp_path, text, message):
    path = write_bytes(tmp_path / "zip.train.gz", text.encode(), compress=True)
    with pytest.raises(CorruptDatasetError, match=message):
        load_usps_esl(path)


def test_libsvm_smoothing_conserves_ink_and_blank():
    blank = -np.ones((1, 256))
    assert np.allclose(smooth_usps_like_libsvm(blank), blank)  # no ink in, no ink out
    rng = np.random.default_rng(0)
    ink = np.zeros((3, 16, 16))
    ink[:, 2:14, 2:14] = rng.uniform(0, 1, (3, 12, 12))  # strokes two pixels from the border
    smoothed = (smooth_usps_like_libsvm(ink.reshape(3, 256) * 2 - 1) + 1) / 2
    assert np.allclose(smoothed.sum(1), ink.reshape(3, 256).sum(1))  # kernel sums to 1
    assert smoothed.max() < ink.max() and smoothed.min() >= 0  # an averaging kernel


def test_libsvm_smoothing_is_the_sampled_gaussian():
    dot = -np.ones((16, 16))
    dot[8, 8] = 1.0  # one full-ink pixel: the output is the kernel itself
    response = (smooth_usps_like_libsvm(dot.reshape(1, 256)).reshape(16, 16) + 1) / 2
    kernel = response[6:11, 6:11]
    assert np.isclose(kernel.sum(), 1.0) and np.allclose(kernel, kernel.T)
    assert np.allclose(kernel, np.outer(kernel[2], kernel[2]) / kernel[2, 2])  # separable
    assert np.isclose(kernel[2, 3] / kernel[2, 2], np.exp(-1 / (2 * 0.75**2)))  # σ = 0.75
    assert response.sum() == pytest.approx(kernel.sum())  # nothing beyond two pixels


def test_usps_esl_as_libsvm_reads_esl_and_smooths(tmp_path):
    values = np.round(USPS_VALUES, 3)
    path = write_bytes(tmp_path / "USPS" / "zip.test.gz", esl_line("3", values).encode(), compress=True)
    images, labels = load_usps_esl_as_libsvm(path)
    assert labels.tolist() == [3]
    expected = torchvision_mapping(smooth_usps_like_libsvm(values.reshape(1, 256))[0])
    assert images.flatten().tolist() == expected.tolist()
    assert torch.equal(load_usps(tmp_path, False, "esl-as-libsvm")[0], images)


def test_load_usps_picks_format_and_never_mixes(tmp_path):
    usps = tmp_path / "USPS"
    write_bytes(usps / "zip.train.gz", esl_line("4", USPS_VALUES).encode(), compress=True)
    write_libsvm(usps / "usps.t.bz2", [libsvm_line(2, USPS_VALUES)])
    assert load_usps(tmp_path, True, "esl")[1].tolist() == [4]
    assert load_usps(tmp_path, False, "libsvm")[1].tolist() == [1]
    with pytest.raises(DatasetNotFoundError) as info:
        load_usps(tmp_path, True, "libsvm")  # zip.train.gz exists but is the other format
    message = str(info.value)
    assert str(usps / "usps.bz2") in message and "cjlin/libsvmtools" in message
    with pytest.raises(DatasetNotFoundError, match="hastie.su.domains") as info:
        load_usps(tmp_path, False, "esl")
    assert str(usps / "zip.test.gz") in str(info.value)
    with pytest.raises(ValueError, match="fmt"):
        load_usps(tmp_path, True, "csv")


# --------------------------------------------------------------------------- #
# MNIST-M
# --------------------------------------------------------------------------- #
def assert_mnist_m(images: torch.Tensor, labels: torch.Tensor) -> None:
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == MNIST_M_LABELS
    for image, pixels in zip(images, MNIST_M_PIXELS):
        assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1))


def forbid_tar(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tarfile.open called although the cache should be used")

    monkeypatch.setattr(tarfile, "open", refuse)


@pytest.mark.parametrize("train", [True, False])
def test_mnist_m_archive_and_cache(tmp_path, monkeypatch, train):
    split = "train" if train else "test"
    members = {**mnist_m_members("train"), **mnist_m_members("test")}
    archive = write_tar_gz(tmp_path / "mnist_m.tar.gz", members)
    cache = tmp_path / "cache"
    assert_mnist_m(*load_mnist_m(tmp_path, train, cache_dir=cache))
    stat = archive.stat()
    assert [f.name for f in cache.iterdir()] == [f"mnist_m-{split}-{stat.st_size}-{stat.st_mtime_ns}.pt"]
    with monkeypatch.context() as patch:
        forbid_tar(patch)
        assert_mnist_m(*load_mnist_m(tmp_path, train, cache_dir=cache))
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
    assert_mnist_m(*load_mnist_m(tmp_path, train, cache_dir=cache))  # changed archive: decoded again
    assert len(list(cache.iterdir())) == 2


def test_mnist_mdefault_cache_dir(tmp_path, monkeypatch):
    write_tar_gz(tmp_path / "mnist_m.tar.gz", mnist_m_members("test"))
    load_mnist_m(tmp_path, False)
    assert len(list((tmp_path / ".cache").glob("mnist_m-test-*.pt"))) == 1
    forbid_tar(monkeypatch)
    assert_mnist_m(*load_mnist_m(tmp_path, False))


def test_mnist_m_damaged_cache_is_rebuilt(tmp_path):
    write_tar_gz(tmp_path / "mnist_m.tar.gz", mnist_m_members("train"))
    load_mnist_m(tmp_path, True, cache_dir=tmp_path / "c")
    [cache_file] = (tmp_path / "c").iterdir()
    cache_file.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="cache"):
        assert_mnist_m(*load_mnist_m(tmp_path, True, cache_dir=tmp_path / "c"))


def test_mnist_m_archive_missing_png(tmp_path):
    write_tar_gz(tmp_path / "mnist_m.tar.gz", mnist_m_members("train", drop="00000001.png"))
    with pytest.raises(CorruptDatasetError, match="00000001.png is listed"):
        load_mnist_m(tmp_path, True, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_mnist_m_archive_unlisted_png(tmp_path):
    members = mnist_m_members("train")
    members["mnist_m/mnist_m_train/00000099.png"] = png_bytes(MNIST_M_PIXELS[0])
    write_tar_gz(tmp_path / "mnist_m.tar.gz", members)
    with pytest.raises(CorruptDatasetError, match="not listed"):
        load_mnist_m(tmp_path, True, cache_dir=tmp_path / "c")


def test_mnist_m_truncated_archive(tmp_path):
    archive = write_tar_gz(tmp_path / "mnist_m.tar.gz", mnist_m_members("train"))
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDatasetError, match="mnist_m.tar.gz"):
        load_mnist_m(tmp_path, True, cache_dir=tmp_path / "c")


def test_mnist_m_bad_png(tmp_path):
    members = mnist_m_members("test")
    members["mnist_m/mnist_m_test/00000002.png"] = b"\x89PNG\r\n\x1a\n broken"
    write_tar_gz(tmp_path / "mnist_m.tar.gz", members)
    with pytest.raises(CorruptDatasetError, match="00000002.png"):
        load_mnist_m(tmp_path, False, cache_dir=tmp_path / "c")


@pytest.mark.parametrize("strip", ["", "mnist_m/"], ids=["root/mnist_m", "root"])
def test_mnist_m_extracted_folder(tmp_path, strip):
    write_folder(tmp_path / "data", mnist_m_members("train"), strip=strip)
    assert_mnist_m(*load_mnist_m(tmp_path / "data", True, cache_dir=tmp_path / "c"))
    assert len(list((tmp_path / "c").iterdir())) == 1
    assert_mnist_m(*load_mnist_m(tmp_path / "data", True, cache_dir=tmp_path / "c"))


def test_mnist_m_grayscale_png_is_converted_to_rgb(tmp_path):
    from PIL import Image

    members = mnist_m_members("test")
    gray = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gray, mode="L").save(buffer, format="PNG")
    members["mnist_m/mnist_m_test/00000001.png"] = buffer.getvalue()
    write_folder(tmp_path, members)
    images, _ = load_mnist_m(tmp_path, False, cache_dir=tmp_path / "c")
    assert torch.equal(images[1], torch.from_numpy(gray).expand(3, 32, 32))


def test_mnist_m_unwritable_cache_only_warns(tmp_path):
    write_tar_gz(tmp_path / "mnist_m.tar.gz", mnist_m_members("train"))
    blocker = write_bytes(tmp_path / "not_a_dir", b"")
    with pytest.warns(UserWarning, match="could not write"):
        assert_mnist_m(*load_mnist_m(tmp_path, True, cache_dir=blocker / "cache"))


def test_mnist_m_extracted_folder_missing_png(tmp_path):
    write_folder(tmp_path, mnist_m_members("test", drop="00000000.png"))
    with pytest.raises(CorruptDatasetError, match="00000000.png is listed"):
        load_mnist_m(tmp_path, False, cache_dir=tmp_path / "c")


def test_mnist_m_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist_m(tmp_path, True, cache_dir=tmp_path / "c")
    message = str(info.value)
    assert str(tmp_path / "mnist_m.tar.gz") in message
    assert str(tmp_path / "mnist_m" / "mnist_m_train_labels.txt") in message


# --------------------------------------------------------------------------- #
# SVHN
# --------------------------------------------------------------------------- #
def write_svhn(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    import scipy.io

    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x, "y": y})


def svhn_arrays(n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = np.array([[10], [1], [9]][:n], dtype=np.uint8)
    return x, y


@pytest.mark.parametrize("layout", ["SVHN", "flat"])
def test_svhn_axis_order_and_label_10(tmp_path, layout):
    x, y = svhn_arrays()
    write_svhn(tmp_path / ("SVHN" if layout == "SVHN" else "") / "test_32x32.mat", x, y)
    images, labels = load_svhn(tmp_path, "test")
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8 and images.is_contiguous()
    assert labels.tolist() == [0, 1, 9] and labels.dtype == torch.int64
    n, c, h, w = 2, 1, 5, 17
    assert images[n, c, h, w] == x[h, w, c, n]
    assert torch.equal(images[1], torch.from_numpy(x[..., 1]).permute(2, 0, 1))


def test_svhn_corrupt(tmp_path):
    x, y = svhn_arrays()
    write_svhn(tmp_path / "SVHN" / "train_32x32.mat", x, y[:2])
    with pytest.raises(CorruptDatasetError, match="count mismatch"):
        load_svhn(tmp_path, "train")
    write_svhn(tmp_path / "SVHN" / "train_32x32.mat", x[:, :, :2], y)
    with pytest.raises(CorruptDatasetError, match="expected uint8"):
        load_svhn(tmp_path, "train")
    path = tmp_path / "SVHN" / "train_32x32.mat"
    write_svhn(path, x, y)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CorruptDatasetError, match="train_32x32.mat"):
        load_svhn(tmp_path, "train")


def test_svhn_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_svhn(tmp_path, "extra")
    message = str(info.value)
    assert str(tmp_path / "SVHN" / "extra_32x32.mat") in message
    assert "ufldl.stanford.edu/housenumbers" in message and "download=True" in message
    with pytest.raises(ValueError, match="split"):
        load_svhn(tmp_path, "valid")


# --------------------------------------------------------------------------- #
# make_multi_digits
# --------------------------------------------------------------------------- #
def digit_set(n: int, side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, side, side), generator=g, dtype=torch.uint8)
    return images, torch.arange(n) % 10


def test_multi_digits_deterministic_and_seeded():
    a, la = digit_set(40, 28, 0)
    b, lb = digit_set(40, 28, 1)
    first = make_multi_digits(a, la, b, lb, seed=3)
    again = make_multi_digits(a, la, b, lb, seed=3)
    other = make_multi_digits(a, la, b, lb, seed=4)
    assert first[0].shape == (40, 1, 28, 28) and first[0].dtype == torch.uint8
    assert first[1].shape == (40, 2) and first[1].dtype == torch.int64
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_multi_digits_labels_are_left_then_right():
    a, la = digit_set(30, 28, 0)
    b = torch.arange(30, dtype=torch.uint8).view(30, 1, 1, 1).expand(30, 1, 28, 28).contiguous()
    lb = torch.arange(30) + 100  # label identifies the drawn image
    images, labels = make_multi_digits(a, la, b, lb, seed=0)
    assert labels[:, 0].tolist() == la.tolist()
    drawn = labels[:, 1] - 100
    assert drawn.min() >= 0 and drawn.max() < 30
    # bottom-right corner of the output only sees b (constant value = its index) -> identifies the partner
    assert images[:, 0, -3, -3].tolist() == drawn.tolist()


def test_multi_digits_hand_checkable_geometry():
    a = torch.full((1, 1, 28, 28), 255, dtype=torch.uint8)
    b = torch.zeros((1, 1, 28, 28), dtype=torch.uint8)
    canvas = readers.overlay_pair_canvas(a, b, offset=6, pad=8)
    assert canvas.shape == (1, 1, 36, 36)
    assert canvas[..., :28, :28].eq(255).all()
    assert canvas[..., 28:, :].eq(0).all() and canvas[..., :, 28:].eq(0).all()
    swapped = readers.overlay_pair_canvas(b, a, offset=6, pad=8)
    assert swapped[..., 6:34, 6:34].eq(255).all() and swapped.sum() == 255 * 28 * 28
    images, labels = make_multi_digits(a, torch.tensor([1]), b, torch.tensor([2]), seed=0)
    assert labels.tolist() == [[1, 2]]
    out = images[0, 0]
    assert out[:20, :20].eq(255).all()  # 28/36 of the side is a's
    assert out[23:, :].eq(0).all() and out[:, 23:].eq(0).all()


def test_multi_digits_any_size_and_3d_input():
    a = torch.randint(0, 17, (10, 8, 8), dtype=torch.uint8)  # like sklearn's 8x8 digits
    labels = torch.arange(10)
    images, pair_labels = make_multi_digits(a, labels, a, labels, seed=1, size=8)
    assert images.shape == (10, 1, 8, 8) and pair_labels.shape == (10, 2)
    wide, _ = make_multi_digits(a, labels, a, labels, seed=1, size=12)
    assert wide.shape == (10, 1, 12, 12)
    with pytest.raises(TypeError):
        make_multi_digits(a.float(), labels, a.float(), labels, seed=1)


# --------------------------------------------------------------------------- #
# Real data ($MTLDA_DATA)
# --------------------------------------------------------------------------- #
def real_file(*parts: str) -> Path:
    root = os.environ.get("MTLDA_DATA")
    if not root:
        pytest.skip("MTLDA_DATA is not set (point it at the real data folder, e.g. /work/shared/data)")
    path = Path(root, *parts)
    if not path.exists():
        pytest.skip(f"real data file {path} is absent")
    return Path(root)


@pytest.mark.real_data
def test_real_mnist_counts():
    root = real_file("MNIST", "raw", "train-images-idx3-ubyte.gz")
    for train, count in [(True, 60000), (False, 10000)]:
        images, labels = load_mnist(root, train)
        assert images.shape == (count, 1, 28, 28) and labels.shape == (count,)
        assert torch.bincount(labels, minlength=10).min() > count // 20


@pytest.mark.real_data
def test_real_fashion_mnist_debian():
    if not (readers.DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    for train, count in [(True, 60000), (False, 10000)]:
        images, labels = load_fashion_mnist(None, train)
        assert images.shape == (count, 1, 28, 28)
        assert torch.bincount(labels, minlength=10).tolist() == [count // 10] * 10


@pytest.mark.real_data
def test_real_usps_esl_counts():
    root = real_file("USPS", "zip.test.gz")
    for train, count in [(True, 7291), (False, 2007)]:
        images, labels = load_usps(root, train, "esl")
        assert images.shape == (count, 1, 16, 16) and labels.shape == (count,)
        assert set(labels.tolist()) == set(range(10))


@pytest.mark.real_data
def test_real_usps_libsvm_test_matches_torchvision():
    root = real_file("USPS", "usps.t.bz2")
    images, labels = load_usps(root, False, "libsvm")
    assert images.shape == (2007, 1, 16, 16)
    from torchvision.datasets import USPS

    reference = USPS(str(root / "USPS"), train=False, download=False)
    assert np.array_equal(images[:, 0].numpy(), reference.data)
    assert labels.tolist() == list(reference.targets)
    _, esl_labels = load_usps(root, False, "esl")
    assert torch.equal(labels, esl_labels)  # same images, same order


@pytest.mark.real_data
def test_real_usps_esl_as_libsvm_rebuilds_the_libsvm_test_split():
    """The one smoothing explains the two copies: within one grey level everywhere, equal on most pixels."""
    root = real_file("USPS", "usps.t.bz2")
    real_file("USPS", "zip.test.gz")
    libsvm, libsvm_labels = load_usps(root, False, "libsvm")
    rebuilt, labels = load_usps(root, False, "esl-as-libsvm")
    plain, _ = load_usps(root, False, "esl")
    assert torch.equal(labels, libsvm_labels)
    difference = (rebuilt.int() - libsvm.int()).abs()
    assert difference.max() <= 1 and (difference == 0).float().mean() > 0.95
    assert (plain.int() - libsvm.int()).abs().max() > 100  # unsmoothed, the copies differ a lot


@pytest.mark.real_data
def test_real_usps_libsvm_copy_is_a_gaussian_smoothing_of_the_esl_copy():
    """A free 5 × 5 least-squares fit from ESL to LIBSVM ink finds the Gaussian the reader uses (README's claim)."""
    root = real_file("USPS", "usps.t.bz2")
    real_file("USPS", "zip.test.gz")
    libsvm, _ = readers._read_usps_libsvm_values(root / "USPS" / "usps.t.bz2")
    esl, _ = readers._read_usps_esl_values(root / "USPS" / "zip.test.gz")
    target = ((libsvm + 1) / 2).reshape(-1, 16, 16)
    padded = np.pad(((esl + 1) / 2).reshape(-1, 16, 16), ((0, 0), (2, 2), (2, 2)))
    shifted = np.stack([padded[:, i : i + 16, j : j + 16].ravel() for i in range(5) for j in range(5)], 1)
    kernel, *_ = np.linalg.lstsq(shifted, target.ravel(), rcond=None)
    residual = target.ravel() - shifted @ kernel
    assert 1 - residual.var() / target.var() > 0.999999  # R²: one linear filter explains the copy
    kernel = kernel.reshape(5, 5)
    taps = np.exp(-np.arange(-2, 3) ** 2 / (2 * readers.USPS_LIBSVM_SMOOTHING_SIGMA**2))
    np.testing.assert_allclose(kernel, np.outer(taps, taps) / taps.sum() ** 2, atol=5e-4)
    # and the reader's Gaussian itself: within 0.18 grey level (of 255) before rounding, as its docstring says
    assert np.abs(smooth_usps_like_libsvm(esl) - libsvm).max() * 255 / 2 < 0.18


@pytest.fixture(scope="session")
def mnist_m_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mnist_m_cache")


@pytest.mark.real_data
@pytest.mark.slow
def test_real_mnist_m(mnist_m_cache):
    root = real_file("mnist_m.tar.gz")
    mnist_train = load_mnist(root, True)[1] if (root / "MNIST" / "raw").is_dir() else None
    mnist_test = load_mnist(root, False)[1] if mnist_train is not None else None
    for train, count, mnist_labels in [(True, 59001, mnist_train), (False, 9001, mnist_test)]:
        images, labels = load_mnist_m(root, train, cache_dir=mnist_m_cache)
        assert images.shape == (count, 3, 32, 32) and labels.shape == (count,)
        if mnist_labels is not None:
            assert torch.equal(labels, mnist_labels[:count])
        cached_images, cached_labels = load_mnist_m(root, train, cache_dir=mnist_m_cache)
        assert torch.equal(cached_images, images) and torch.equal(cached_labels, labels)
    assert len(list(mnist_m_cache.glob("mnist_m-*.pt"))) == 2
