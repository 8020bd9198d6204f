"""Image-folder domains (Office-31 layout) through the DataLoader pipeline, on a tiny folder the test writes."""
import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.cli import main
from benchmarks.datasets import DatasetNotFoundError, load_dataset
from benchmarks.datasets.image_folder import LoaderBatcher


@pytest.fixture
def office(tmp_path):
    rng = np.random.default_rng(0)
    for domain, tint in (("amazon", 0), ("webcam", 80)):
        for label, cls in enumerate(("back_pack", "bike")):
            folder = tmp_path / domain / cls
            folder.mkdir(parents=True)
            for i in range(6):
                pixels = rng.integers(0, 120, size=(40, 48, 3)) + tint + 40 * label
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"frame_{i:04d}.jpg")
    return tmp_path


def test_domain_loads_with_classes_and_uint8_crops(office):
    dataset = load_dataset("imagefolder:amazon", str(office), image_size=32)
    assert dataset.extras["classes"] == ["back_pack", "bike"]
    assert len(dataset.train) == 12 and dataset.channels == 3 and dataset.image_size == 32
    image, label = dataset.test.dataset(training=False)[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and label == 0


def test_missing_domain_lists_what_is_there(office):
    with pytest.raises(DatasetNotFoundError, match="Folders under .*: amazon, webcam"):
        load_dataset("imagefolder:dslr", str(office))


def test_loader_batcher_covers_each_image_once_per_cycle_and_resumes(office):
    split = load_dataset("imagefolder:amazon", str(office), image_size=16).train
    batcher = LoaderBatcher(split, batch_size=4, seed=1, device="cpu", workers=0)
    labels = torch.cat([batcher.next()[1]["label"] for _ in range(3)])
    assert sorted(labels.tolist()) == [0] * 6 + [1] * 6
    batcher.next()
    state = batcher.state_dict()
    follow = [batcher.next()[1]["label"] for _ in range(2)]
    again = LoaderBatcher(split, batch_size=4, seed=1, device="cpu", workers=0)
    again.load_state_dict(state)
    assert all(torch.equal(again.next()[1]["label"], want) for want in follow)
    unlabelled = LoaderBatcher(split, batch_size=4, seed=1, device="cpu", workers=0, labelled=False)
    assert unlabelled.next()[1] == {}


def test_office_style_adaptation_runs_from_the_cli(office, tmp_path):
    args = [
        "run", "configs/experiments/digits_da.yaml",
        f"data.root={office}", "data.source=imagefolder:amazon", "data.target=imagefolder:webcam",
        "data.image_size=32", "data.batch_size=4", "data.workers=0", "data.val_fraction=0.34",
        "train.epochs=1", "train.steps_per_epoch=2", "method.name=dann", "report=[test/target/label/accuracy]",
        "train.selection_metric=val/source/label/accuracy", "--output", str(tmp_path / "runs"), "--no-progress",
    ]
    assert main(args) == 0


@pytest.mark.parametrize(
    "config, source, target",
    [
        ("configs/experiments/office/office31_resnet50.yaml", "amazon", "webcam"),
        ("configs/experiments/office/officehome_resnet50.yaml", "Art", "Clipart"),
    ],
)
def test_office_resnet50_configs_run_as_shipped_on_a_tiny_folder(tmp_path, config, source, target):
    """The shipped configs (ResNet-50, phases with a 0.1× backbone, DANN) run end to end; only what
    needs the internet or hours changes: no ImageNet weights, 32-pixel crops, two steps."""
    rng = np.random.default_rng(1)
    for domain in (source, target):
        for cls in ("back_pack", "bike"):
            folder = tmp_path / "data" / domain / cls
            folder.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, size=(36, 36, 3)).astype(np.uint8)).save(folder / f"{i}.jpg")
    from benchmarks.config import load_experiment
    from benchmarks.experiment import run_experiment

    cfg = load_experiment(config, [
        f"data.root={tmp_path / 'data'}", "model.weights=null", "data.image_size=32", "data.batch_size=4",
        "data.eval_batch_size=8", "data.workers=0", "data.val_fraction=0.25", "train.epochs=1",
        "train.steps_per_epoch=2", "train.phases=[{epochs: 1, backbone_lr_scale: 0.1}]", "train.progress_bar=false",
    ])
    assert cfg.model.backbone == "resnet50" and cfg.data.source == f"imagefolder:{source}"
    record = run_experiment(cfg, tmp_path / "run")
    assert 0.0 <= record["metrics"]["test/target/label/accuracy"] <= 1.0
    assert record["steps"] == 2
