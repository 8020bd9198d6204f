"""The registered real datasets: errors without data, and the real files when present."""
import pytest
import torch

from benchmarks.cli import main
from benchmarks.datasets import DATASETS, DatasetNotFoundError, load_dataset
from benchmarks.datasets.base import resize_dataset


@pytest.mark.parametrize("name", ["mnist", "usps", "usps-esl", "mnist-m", "svhn", "multimnist"])
def test_real_datasets_without_a_root_say_how_to_set_one(name):
    with pytest.raises(DatasetNotFoundError, match="MTLDA_DATA"):
        load_dataset(name, None)


def test_missing_files_name_the_expected_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "MNIST" / "raw")):
        load_dataset("mnist", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="zip.train.gz"):
        load_dataset("usps-esl", str(tmp_path))


def test_cli_reports_missing_data_cleanly(tmp_path, capsys):
    code = main(["run", "configs/experiments/digits/mnist_to_usps.yaml", f"data.root={tmp_path}", "--output", str(tmp_path / "runs")])
    assert code == 2
    assert "MNIST" in capsys.readouterr().err


def test_list_shows_every_dataset(capsys):
    main(["list", "datasets"])
    out = capsys.readouterr().out
    for name in DATASETS:
        assert name in out


@pytest.mark.real_data
@pytest.mark.slow
def test_multimnist_is_deterministic_and_cached(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = load_dataset("multimnist", data_root, data_seed=0)
    again = load_dataset("multimnist", data_root, data_seed=0)
    assert torch.equal(first.train.images, again.train.images)
    assert first.train.images.shape == (60000, 1, 28, 28) and first.test.images.shape == (10000, 1, 28, 28)
    mnist = load_dataset("mnist", data_root)
    assert torch.equal(first.train.labels["left"], mnist.train.labels["digit"])  # left digit keeps MNIST order


@pytest.mark.real_data
def test_usps_resized_to_28(data_root):
    usps = resize_dataset(load_dataset("usps-esl", data_root), 28)
    assert usps.train.images.shape == (7291, 1, 28, 28) and usps.train.images.dtype == torch.uint8


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        "configs/experiments/digits/mnist_to_usps.yaml",
        "configs/experiments/digits/usps_to_mnist.yaml",
        "configs/experiments/digits/mnist_to_mnistm.yaml",
        "configs/experiments/multitask/multimnist.yaml",
        "configs/experiments/multitask/multifashion-mnist.yaml",
    ],
)
def test_real_configs_run_from_the_cli(data_root, tmp_path, config, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # decoded MNIST-M stays out of the user's cache
    args = ["run", config, f"data.root={data_root}", "train.epochs=1", "train.steps_per_epoch=3", "method.name=dann"]
    if "multitask" in config:
        args.remove("method.name=dann")
    assert main([*args, "--output", str(tmp_path), "--no-progress"]) == 0
