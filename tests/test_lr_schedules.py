"""The multistep learning-rate schedule: torch's MultiStepLR stepped once per epoch, and its config checks."""
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from benchmarks.config import ConfigError, load_experiment
from benchmarks.engine import lr_factor
from benchmarks.experiment import run_experiment

DA = "configs/experiments/digits_da.yaml"


@pytest.mark.parametrize("milestones, factor", [([15, 30, 45, 60, 75, 90], 0.5), (list(range(9, 100, 10)), 0.85), ([1], 0.1)])
def test_multistep_equals_torchs_multisteplr_stepped_per_epoch(milestones, factor):
    steps_per_epoch, base = 7, 0.05
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=factor)
    for epoch in range(100):
        expected = optimizer.param_groups[0]["lr"]
        for step in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch):
            got = base * lr_factor("multistep", step / 700, step, milestones=tuple(milestones), step_factor=factor,
                                   steps_per_epoch=steps_per_epoch)
            assert got == pytest.approx(expected, rel=1e-12), (epoch, step)
        optimizer.step()
        scheduler.step()
    if milestones[0] == 9:  # Sener & Koltun's loop: × 0.85 from the 10th epoch on, ten times by the last one
        assert lr_factor("multistep", 1.0, 99 * 7, milestones=tuple(milestones), step_factor=0.85, steps_per_epoch=7) == pytest.approx(0.85 ** 10)


def test_trainer_applies_the_milestones_at_epoch_starts(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "train.epochs=3", "train.steps_per_epoch=2", "train.log_every=1", "optim.name=sgd",
                 "optim.lr=0.2", "optim.lr_schedule=multistep", "optim.lr_milestones=[1,2]", "optim.lr_step_factor=0.5"]
    run_experiment(load_experiment(DA, overrides), tmp_path)
    logged = {}
    for path in (tmp_path / "tb").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(path))
        acc.Reload()
        if "lr" in acc.Tags()["scalars"]:
            logged.update({e.step: e.value for e in acc.Scalars("lr")})
    # the lr logged after step k is the lr step k ran with
    assert [logged[k] for k in range(1, 7)] == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05, 0.05])


@pytest.mark.parametrize("overrides, words", [
    (["optim.lr_schedule=multistep"], "needs increasing whole epochs"),
    (["optim.lr_schedule=multistep", "optim.lr_milestones=[3,2]"], "optim.lr_milestones"),
    (["optim.lr_schedule=multistep", "optim.lr_milestones=[2,9]"], "train.epochs - 1 = 4"),
    (["optim.lr_milestones=[2]"], "no other schedule reads them"),
    (["optim.lr_schedule=multistep", "optim.lr_milestones=[2]", "optim.lr_step_factor=0"], "optim.lr_step_factor"),
])
def test_bad_milestones_are_one_error_naming_the_key(overrides, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_experiment(DA, ["train.epochs=5", *overrides])
