"""``mtlda extend``: a shorter run continued to a longer budget equals the longer run trained straight."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks.commands import main
from benchmarks.config import ConfigError, load_experiment
from benchmarks.extend import budget_dependence, plan_extensions
from benchmarks.suite import plan_single

DA = "configs/experiments/digits_da.yaml"
#: a length-free recipe: lr over absolute steps, DANN's ramp over 4 absolute steps
LENGTH_FREE = ["method.name=dann", "method.args.ramp_steps=4", "optim.lr_schedule=inverse", "train.test_every_epoch=true"]


def _record(root, name="digits_to_digits-m"):
    return json.loads((root / name / "seed0" / "record.json").read_text())


def _run(*args) -> int:
    return main([*map(str, args)])


def test_an_extended_run_equals_the_longer_run_trained_straight(tmp_path, tiny_overrides, capsys):
    base = [*tiny_overrides, *LENGTH_FREE]
    short, long, straight = tmp_path / "short", tmp_path / "long", tmp_path / "straight"
    assert _run("run", DA, *base, "train.epochs=2", "--output", short, "--no-progress") == 0
    assert _run("extend", DA, *base, "train.epochs=3", "--from", short, "--output", long) == 0
    assert "after epoch 2 of 3" in capsys.readouterr().out
    assert _run("run", DA, *base, "train.epochs=3", "--output", long, "--no-progress") == 0
    assert _run("run", DA, *base, "train.epochs=3", "--output", straight, "--no-progress") == 0
    extended, reference = _record(long), _record(straight)
    assert extended["config_hash"] == reference["config_hash"]
    assert extended["history"] == reference["history"]  # every epoch's val and test metrics, bit for bit
    assert extended["metrics"] == reference["metrics"]
    assert extended["steps"] == reference["steps"] == 3 * 3
    assert extended["extended_from"]["epochs"] == 2
    assert extended["extended_from"]["config_hash"] == _record(short)["config_hash"]
    assert "extended_from" not in reference
    a = torch.load(long / "digits_to_digits-m" / "seed0" / "checkpoints" / "last.pt", weights_only=True)["problem"]
    b = torch.load(straight / "digits_to_digits-m" / "seed0" / "checkpoints" / "last.pt", weights_only=True)["problem"]
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["method.name=dann"], "method.args.ramp_steps"),  # the paper's ramp runs over the fraction of the run done
        (["method.name=cdan"], "method.args.ramp_steps"),
        (["method.name=jan"], "method.args.schedule=constant"),
        (["method.name=dann", "method.args.ramp_steps=4", "optim.lr_schedule=cosine"], "optim.lr_schedule=cosine"),
        (["method.name=dann", "method.args.ramp_steps=4", "optim.lr_schedule=dann"], "optim.lr_schedule=dann"),
    ],
)
def test_length_dependent_recipes_are_named(tiny_overrides, overrides, key):
    assert any(key in reason for reason in budget_dependence(load_experiment(DA, [*tiny_overrides, *overrides])))


@pytest.mark.parametrize(
    "overrides",
    [
        ["method.name=source_only"],
        ["method.name=coral", "optim.lr_schedule=inverse"],
        ["method.name=mcd"],  # its update never reads the run's progress
        ["method.name=dann", "method.args.schedule=constant"],
        ["method.name=cdan", "method.args.ramp_steps=10000", "optim.lr_schedule=inverse"],
    ],
)
def test_length_free_recipes_pass(tiny_overrides, overrides):
    assert budget_dependence(load_experiment(DA, [*tiny_overrides, *overrides])) == []


def _plan(tmp_path, overrides, output):
    _, runs = plan_single(DA, tmp_path / output, [0], overrides)
    return runs


def test_refusals_come_before_anything_is_written(tmp_path, tiny_overrides):
    base = [*tiny_overrides, *LENGTH_FREE]
    assert _run("run", DA, *base, "train.epochs=2", "--output", tmp_path / "short", "--no-progress") == 0
    short = tmp_path / "short"
    with pytest.raises(ConfigError, match="configuration hash differs"):  # another lr is another run, not a prefix
        plan_extensions(_plan(tmp_path, [*base, "train.epochs=3", "optim.lr=0.5"], "long"), short, tmp_path / "long")
    with pytest.raises(ConfigError, match="not fewer than train.epochs=2"):
        plan_extensions(_plan(tmp_path, [*base, "train.epochs=2"], "long"), short, tmp_path / "long")
    with pytest.raises(ConfigError, match="does not exist"):
        plan_extensions(_plan(tmp_path, [*base, "train.epochs=3"], "long"), tmp_path / "nowhere", tmp_path / "long")
    with pytest.raises(ConfigError, match="ramp_steps"):
        plan_extensions(_plan(tmp_path, [*tiny_overrides, "method.name=dann", "train.epochs=3"], "long"), short, tmp_path / "long")
    assert not (tmp_path / "long").exists()
    runs = _plan(tmp_path, [*base, "train.epochs=3"], "short2")
    (runs[0].run_dir / "checkpoints").mkdir(parents=True)
    (runs[0].run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="has started already"):
        plan_extensions(runs, short, tmp_path / "short2")


def test_the_command_refuses_with_one_line(tmp_path, tiny_overrides, capsys):
    code = _run("extend", DA, *tiny_overrides, "method.name=dann", "train.epochs=3", "--from", tmp_path, "--output", tmp_path / "x")
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "method.args.ramp_steps" in err[0]


class _Stop(Exception):
    pass


def test_an_unfinished_shorter_run_can_be_extended_too(tmp_path, tiny_overrides):
    """A 3-epoch run killed after epoch 1 is also the first epoch of a 4-epoch run."""
    from benchmarks.experiment import build_trainer

    base = [*tiny_overrides, *LENGTH_FREE]
    runs = _plan(tmp_path, [*base, "train.epochs=3"], "short")

    def stop_after_one(trainer, epoch):
        raise _Stop

    with pytest.raises(_Stop):
        build_trainer(runs[0].config, runs[0].run_dir, callbacks=[stop_after_one]).fit()
    (extension,) = plan_extensions(_plan(tmp_path, [*base, "train.epochs=4"], "long"), tmp_path / "short", tmp_path / "long")
    assert extension.source_epochs == 1


def test_no_method_reads_progress_without_naming_it():
    """The length check trusts a hook's signature: a hook that uses ``progress`` must name it (not take it from **kw)."""
    import inspect

    from benchmarks import registry
    from benchmarks.extend import training_hooks

    for name, cls in registry.METHOD_CLASSES.items():
        for hook, function in training_hooks(cls).items():
            named = "progress" in inspect.signature(function).parameters
            assert named or "progress" not in inspect.getsource(function), f"{name}.{hook} uses progress without naming it"
