"""A corpus of corrupt data: damaged source files are errors naming the file (exit code 2, one line),
derived-dataset caches never outlive a change of what they were built from, a damaged cache is reported
with its path and rebuilt, and a bad image in an image folder is refused when the folder is indexed."""
import gzip
import os
import pathlib
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.cli import main
from benchmarks.datasets import CorruptDatasetError, load_dataset
from benchmarks.datasets.derived_cache import CACHE_FORMAT

MULTIMNIST = "configs/experiments/multitask/multimnist.yaml"
N_TRAIN, N_TEST = 40, 12


# --------------------------------------------------------------------------- a tiny MNIST on disk
def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_mnist(root: pathlib.Path, seed: int = 0, labels_seed: int | None = None) -> pathlib.Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    label_rng = np.random.default_rng(seed if labels_seed is None else labels_seed)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(label_rng.integers(0, 10, n)))
    return raw


@pytest.fixture
def mnist_root(tmp_path):
    write_mnist(tmp_path / "data")
    return tmp_path / "data"


def caches(root: pathlib.Path, name: str = "multimnist") -> list[pathlib.Path]:
    return sorted((root / ".cache").glob(f"{name}-seed*.pt"))


def load_quietly(name, root, data_seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sound cache or a fresh build warns about nothing
        return load_dataset(name, str(root), data_seed=data_seed)


# --------------------------------------------------------------------------- damaged source files
def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


SOURCE_DAMAGE = {
    "truncated images": ("train-images-idx3-ubyte", _truncate, "truncated"),
    "labels with a wrong magic number": (
        "train-labels-idx1-ubyte", lambda p: p.write_bytes(b"\x00\x00\x08\x03" + p.read_bytes()[4:]), "wrong dimension count"
    ),
    "labels out of range": (
        "t10k-labels-idx1-ubyte", lambda p: p.write_bytes(idx_bytes(np.full(N_TEST, 12))), "labels out of range"
    ),
    "fewer labels than images": (
        "train-labels-idx1-ubyte", lambda p: p.write_bytes(idx_bytes(np.zeros(N_TRAIN - 1))), "count mismatch"
    ),
    "not an IDX file": ("t10k-images-idx3-ubyte", lambda p: p.write_bytes(b"<html>not found</html>"), "wrong magic number"),
    "truncated gzip": (
        "train-images-idx3-ubyte", lambda p: (p.with_suffix(".gz").write_bytes(gzip.compress(p.read_bytes())[:200]), p.unlink()),
        "truncated or damaged gzip",
    ),
}


@pytest.mark.parametrize("case", sorted(SOURCE_DAMAGE))
def test_a_damaged_source_file_is_one_error_line_naming_it(mnist_root, tmp_path, capsys, case):
    name, damage, message = SOURCE_DAMAGE[case]
    damage(mnist_root / "MNIST" / "raw" / name)
    code = main(["run", MULTIMNIST, f"data.root={mnist_root}", "--output", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and name in lines[0] and message in lines[0]


# --------------------------------------------------------------------------- derived caches
def test_multimnist_cache_is_rebuilt_when_the_labels_file_is_replaced(mnist_root):
    raw = mnist_root / "MNIST" / "raw"
    good_labels = (raw / "train-labels-idx1-ubyte").read_bytes()
    write_mnist(mnist_root, labels_seed=7)  # a wrong labels file (same images)
    wrong = load_quietly("multimnist", mnist_root)
    (raw / "train-labels-idx1-ubyte").write_bytes(good_labels)  # restored
    write_mnist(mnist_root)
    restored = load_quietly("multimnist", mnist_root)
    fresh_mnist = load_dataset("mnist", str(mnist_root))
    assert torch.equal(restored.train.labels["left"], fresh_mnist.train.labels["digit"])
    assert not torch.equal(restored.train.labels["left"], wrong.train.labels["left"])
    assert len(caches(mnist_root)) == 2  # one per content: switching back and forth rebuilds nothing


def test_multimnist_cache_is_keyed_by_content_not_size_and_mtime(mnist_root):
    images = mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    first = load_quietly("multimnist", mnist_root)
    stat = images.stat()
    data = bytearray(images.read_bytes())
    data[-1] ^= 0xFF  # one pixel changes; size and modification time stay exactly the same
    images.write_bytes(bytes(data))
    os.utime(images, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = load_quietly("multimnist", mnist_root)
    assert not torch.equal(first.train.images, second.train.images)
    assert len(caches(mnist_root)) == 2


def test_cache_depends_on_the_seed_and_is_reused_otherwise(mnist_root):
    a = load_quietly("multimnist", mnist_root, data_seed=0)
    assert len(caches(mnist_root)) == 1
    stamp = caches(mnist_root)[0].stat().st_mtime_ns
    again = load_quietly("multimnist", mnist_root, data_seed=0)
    assert torch.equal(a.train.images, again.train.images) and caches(mnist_root)[0].stat().st_mtime_ns == stamp
    load_quietly("multimnist", mnist_root, data_seed=1)
    assert len(caches(mnist_root)) == 2


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


CACHE_DAMAGE = {
    "truncated": lambda path, tmp: _truncate(path, 0.3),
    "empty": lambda path, tmp: path.write_bytes(b""),
    "garbage": lambda path, tmp: path.write_bytes(b"not a torch file at all"),
    "malicious pickle": lambda path, tmp: torch.save({"format": CACHE_FORMAT, "x": _RunsCodeWhenUnpickled(tmp / "ran")}, path),
    "wrong structure": lambda path, tmp: torch.save({"format": CACHE_FORMAT, "key": "?", "data": {"train": 1}}, path),
}


@pytest.mark.parametrize("case", sorted(CACHE_DAMAGE))
@pytest.mark.parametrize("name", ["multimnist", "multimnist-m"])
def test_a_damaged_cache_is_reported_with_its_path_and_rebuilt(mnist_root, tmp_path, name, case):
    expected = load_quietly(name, mnist_root)
    (cache,) = caches(mnist_root, name)
    CACHE_DAMAGE[case](cache, tmp_path)
    with pytest.warns(UserWarning, match=f"rebuilding the dataset cache {cache}"):
        rebuilt = load_dataset(name, str(mnist_root))
    assert torch.equal(rebuilt.train.images, expected.train.images)
    assert torch.equal(rebuilt.test.labels["right"], expected.test.labels["right"])
    assert not (tmp_path / "ran").exists()
    load_quietly(name, mnist_root)  # repaired: the next run reads it without a word


def test_a_cache_written_by_the_old_code_is_never_read(mnist_root):
    expected = load_quietly("multimnist", mnist_root)
    wrong = {split: (getattr(expected, split).images, torch.zeros(len(getattr(expected, split)), 2, dtype=torch.int64))
             for split in ("train", "test")}
    torch.save({"splits": wrong}, mnist_root / ".cache" / "multimnist-seed0-v1.pt")  # keyed by name and seed only
    for cache in caches(mnist_root):
        if not cache.name.endswith("-v1.pt"):
            cache.unlink()
    again = load_quietly("multimnist", mnist_root)
    assert torch.equal(again.train.labels["left"], expected.train.labels["left"])


def test_multimnist_m_cache_follows_mnist_too(mnist_root):
    first = load_quietly("multimnist-m", mnist_root)
    write_mnist(mnist_root, seed=3)
    second = load_quietly("multimnist-m", mnist_root)
    assert not torch.equal(first.train.images, second.train.images)
    assert first.train.images.shape[1] == 3 and len(caches(mnist_root, "multimnist-m")) == 2


# --------------------------------------------------------------------------- image folders
def _jpeg(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (36, 36, 3)).astype(np.uint8)).save(path)


@pytest.fixture
def office(tmp_path):
    for domain in ("amazon", "webcam"):
        for cls in ("back_pack", "bike"):
            for i in range(4):
                _jpeg(tmp_path / "office" / domain / cls / f"{i}.jpg", i)
    return tmp_path / "office"


def _png_truncated(path):
    Image.fromarray(np.zeros((36, 36, 3), np.uint8)).save(path.with_suffix(".png"))
    _truncate(path.with_suffix(".png"), 0.6)
    return path.with_suffix(".png")


IMAGE_DAMAGE = {
    "zero bytes": (lambda p: (p.write_bytes(b""), p)[1], "empty file"),
    "not an image": (lambda p: (p.write_text("Office-31 README"), p)[1], "not an image file"),
    "truncated jpeg": (lambda p: (_truncate(p, 0.5), p)[1], "truncated or damaged JPEG"),
    "truncated png": (_png_truncated, "truncated or damaged PNG"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_DAMAGE))
def test_a_bad_file_in_an_image_folder_is_refused_when_indexed(office, tmp_path, capsys, case):
    damage, message = IMAGE_DAMAGE[case]
    bad = damage(office / "webcam" / "bike" / "2.jpg")
    with pytest.raises(CorruptDatasetError, match=f"{bad}: {message}"):
        load_dataset("imagefolder:webcam", str(office), image_size=32)
    args = [
        "run", "configs/experiments/digits_da.yaml", f"data.root={office}", "data.source=imagefolder:amazon",
        "data.target=imagefolder:webcam", "data.image_size=32", "data.batch_size=4", "data.workers=0",
        "data.val_fraction=0.25", "train.selection_metric=val/source/label/accuracy",
        "report=[test/target/label/accuracy]", "--output", str(tmp_path / "runs"), "--no-progress",
    ]
    code = main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in err, err
    assert not list((tmp_path / "runs").rglob("checkpoints"))  # refused before any training


def test_sound_image_folders_pass_the_check(office):
    assert len(load_dataset("imagefolder:amazon", str(office), image_size=32).train) == 8


# --------------------------------------------------------------------------- run records
def test_a_truncated_record_in_a_suite_is_one_error_line_naming_it(tmp_path, capsys, tiny_overrides):
    args = ["run", "configs/experiments/digits_da.yaml", *tiny_overrides, "--output", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    (record,) = tmp_path.rglob("record.json")
    _truncate(record, 0.5)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"error: {record}: damaged record" in lines[0] and "delete it" in lines[0], err
