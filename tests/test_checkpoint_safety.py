"""Checkpoints after a kill: the reported test metrics always come from the selected epoch's weights,
interrupted writes leave no litter, and a damaged or malicious checkpoint is refused by name."""
import pathlib

import pytest
import torch

from benchmarks import engine
from benchmarks.cli import main
from benchmarks.config import load_experiment
from benchmarks.engine import Trainer
from benchmarks.experiment import build_trainer
from benchmarks.records import RunFileError

DA = "configs/experiments/digits_da.yaml"
TEST_METRIC = "test/target/digit/accuracy"


class _Kill(Exception):
    """Stands for a kill -9 of the process."""


def _kill_after_first_checkpoint_write_of(epoch: int, monkeypatch) -> None:
    """Die right after the first checkpoint file of ``epoch`` is written, before the second one is
    (whatever order the engine writes last.pt and best.pt in)."""
    real = engine.atomic_torch_save

    def save(path, payload):
        real(path, payload)
        if payload.get("epoch") == epoch:
            raise _Kill(path)

    monkeypatch.setattr(engine, "atomic_torch_save", save)


def _weights(trainer) -> dict:
    return {k: v.clone() for k, v in trainer.problem.state_dict().items()}


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture
def cfg(tiny_overrides):
    # test_every_epoch: each epoch's own test metrics are in the history, to compare the reported ones with
    overrides = ["train.epochs=3", "train.select=best", "train.test_every_epoch=true", "method.name=dann"]
    return load_experiment(DA, [*tiny_overrides, *overrides])


@pytest.mark.parametrize(
    "improves, killed_epoch, selected",
    [
        (lambda trainer: True, 3, 3),  # kill in the final, improving epoch: best.pt still holds epoch 2
        (lambda trainer: trainer.best_epoch is None, 1, 1),  # kill at the first improvement: no best.pt at all
    ],
    ids=["final-epoch-improves", "first-improvement"],
)
def test_kill_between_the_checkpoint_writes_reports_the_selected_epochs_test_metrics(
    tmp_path, cfg, monkeypatch, improves, killed_epoch, selected
):
    monkeypatch.setattr(Trainer, "_improved", lambda self, value: improves(self))
    straight = build_trainer(cfg, tmp_path / "straight")
    expected = straight.fit()

    with monkeypatch.context() as kill:
        _kill_after_first_checkpoint_write_of(killed_epoch, kill)
        with pytest.raises(_Kill):
            build_trainer(cfg, tmp_path / "killed").fit()
    torch.manual_seed(999)  # a fresh process has another RNG state
    resumed = build_trainer(cfg, tmp_path / "killed")
    result = resumed.fit()

    assert result["selected_epoch"] == expected["selected_epoch"] == selected
    at_selected_epoch = result["history"][selected - 1]
    assert result["metrics"][TEST_METRIC] == at_selected_epoch[TEST_METRIC] == expected["metrics"][TEST_METRIC]
    assert result["metrics"] == expected["metrics"]
    _assert_same_weights(_weights(resumed), _weights(straight))  # the test split was scored with these
    exported = torch.load(tmp_path / "killed" / "checkpoints" / "best.pt", weights_only=True)
    assert exported["epoch"] == selected  # best.pt is brought up to date at the end
    _assert_same_weights(exported["problem"], _weights(straight))


def test_interrupted_checkpoint_temporaries_are_removed_on_restart(tmp_path, cfg):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    litter = [checkpoints / ".last.pt.x1y2z3", checkpoints / ".best.pt.abc"]
    for path in litter:
        path.write_bytes(b"half a checkpoint")
    keep = checkpoints / "notes.txt"
    keep.write_text("not ours")
    build_trainer(cfg, tmp_path).fit()
    assert not any(p.exists() for p in litter) and keep.exists()
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.pt", "last.pt", "notes.txt"]


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _plant(path: pathlib.Path, payload) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def test_a_malicious_checkpoint_is_refused_with_its_path_and_never_run(tmp_path, cfg):
    marker = tmp_path / "code-ran"
    last = _plant(tmp_path / "run" / "checkpoints" / "last.pt", {"version": 1, "x": _RunsCodeWhenUnpickled(marker)})
    with pytest.raises(RunFileError) as caught:
        build_trainer(cfg, tmp_path / "run").fit()
    message = str(caught.value)
    assert str(last) in message and "refused" in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_is_reported_with_its_path(tmp_path, cfg, damage):
    trainer = build_trainer(cfg, tmp_path)
    trainer.epochs = 1
    trainer.fit()
    last = tmp_path / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint", "empty": b""}[damage])
    with pytest.raises(RunFileError, match=f"{last}: cannot be read, the file is truncated or damaged"):
        build_trainer(cfg, tmp_path).fit()


def test_the_cli_names_a_malicious_checkpoint_in_one_error_line(tmp_path, tiny_overrides, capsys):
    marker = tmp_path / "code-ran"
    last = _plant(tmp_path / "runs" / "digits_to_digits-m" / "seed0" / "checkpoints" / "last.pt", {"x": _RunsCodeWhenUnpickled(marker)})
    code = main(["run", DA, *tiny_overrides, "--output", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(last) in lines[0], err
