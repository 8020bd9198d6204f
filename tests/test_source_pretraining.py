"""A source-only stage before a domain-adaptation method (train.source_pretraining_epochs; TLLib's bsp.py)."""
from __future__ import annotations

import pytest
import torch

import benchmarks.experiment as experiment
from benchmarks.config import ConfigError, config_hash, load_experiment
from benchmarks.experiment import build_trainer, run_experiment
from benchmarks.source_pretraining import FOLDER, pretraining_config

DA = "configs/experiments/digits_da.yaml"
SGD = ["optim.name=sgd", "optim.lr=0.05", "optim.lr_schedule=inverse", "optim.lr_gamma=0.01"]


def _cfg(tiny_overrides, *more):
    return load_experiment(DA, [*tiny_overrides, *SGD, "method.name=dann", *more])


def test_the_stage_is_the_same_run_trained_on_the_source_alone(tiny_overrides):
    cfg = _cfg(tiny_overrides, "train.source_pretraining_epochs=3", "train.source_pretraining_lr=0.001")
    stage = pretraining_config(cfg)
    assert stage.method.name == "source_only" and dict(stage.method.args) == {}
    assert (stage.optim.lr, stage.train.epochs, stage.train.select) == (0.001, 3, "last")
    assert stage.train.source_pretraining_epochs == 0
    # everything else is the run's own: network, data, optimiser kind and schedule
    for key in ("model", "data", "weighting"):
        assert stage[key] == cfg[key]
    assert (stage.optim.name, stage.optim.lr_schedule, stage.optim.lr_gamma) == ("sgd", "inverse", 0.01)
    # without a stage lr the stage trains at optim.lr
    assert pretraining_config(_cfg(tiny_overrides, "train.source_pretraining_epochs=1")).optim.lr == 0.05


def test_configs_without_a_stage_keep_their_hash(tiny_overrides):
    assert config_hash(_cfg(tiny_overrides)) == config_hash(_cfg(tiny_overrides, "train.source_pretraining_epochs=0"))
    assert config_hash(_cfg(tiny_overrides)) != config_hash(_cfg(tiny_overrides, "train.source_pretraining_epochs=1"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.source_pretraining_epochs=-1", "train.source_pretraining_epochs"),
        ("train.source_pretraining_lr=0", "train.source_pretraining_lr"),
    ],
)
def test_bad_values_are_refused_naming_the_key(tiny_overrides, override, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(tiny_overrides, override)


def test_a_stage_is_refused_where_it_cannot_apply(tiny_overrides, tmp_path):
    multitask = load_experiment("configs/experiments/multidigits_mtl.yaml", [*tiny_overrides, "train.source_pretraining_epochs=1"])
    with pytest.raises(ConfigError, match="applies to domain adaptation only"):
        run_experiment(multitask, tmp_path / "mt")
    phased = _cfg(tiny_overrides, "train.source_pretraining_epochs=1", "train.phases=[{epochs: 2}]")
    with pytest.raises(ConfigError, match="cannot be combined with train.phases"):
        run_experiment(phased, tmp_path / "phased")
    assert not (tmp_path / "mt").exists() and not (tmp_path / "phased" / FOLDER).exists()  # refused before training


def _parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_the_method_starts_from_the_stages_last_weights(tiny_overrides, tmp_path):
    """With lr 0 the method cannot move the network, so the run ends where the stage ended."""
    cfg = _cfg(tiny_overrides, "train.source_pretraining_epochs=2", "train.source_pretraining_lr=0.1",
               "optim.lr=0", "optim.weight_decay=0")
    record = run_experiment(cfg, tmp_path / "run")
    stage = build_trainer(pretraining_config(cfg), tmp_path / "run" / FOLDER)
    stage.resume_if_possible()
    after_stage = _parameters(stage.problem.model)
    fresh = _parameters(build_trainer(cfg, tmp_path / "fresh").problem.model)
    main = build_trainer(cfg, tmp_path / "run")
    main.resume_if_possible()
    ended = _parameters(main.problem.model)
    assert ended.keys() == after_stage.keys()
    for name in ended:
        torch.testing.assert_close(ended[name], after_stage[name], rtol=0, atol=0)
    assert any(not torch.equal(after_stage[n], fresh[n]) for n in fresh)  # the stage did train
    summary = record["source_pretraining"]
    assert summary["epochs"] == 2 and summary["steps"] == 2 * 3 and summary["lr"] == 0.1
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert record["steps"] == 2 * 3  # the method's own steps, counted apart
    assert not (tmp_path / "run" / FOLDER / "record.json").exists()  # never mistaken for a run of its own


def test_a_run_that_has_started_never_repeats_the_stage(tiny_overrides, tmp_path, monkeypatch):
    cfg = _cfg(tiny_overrides, "train.source_pretraining_epochs=1")
    first = run_experiment(cfg, tmp_path / "run")
    (tmp_path / "run" / "record.json").unlink()  # as if killed after the last epoch's checkpoint

    def must_not_run(*_, **__):
        raise AssertionError("the stage ran again")

    monkeypatch.setattr(experiment, "pretrain_on_source", must_not_run)
    again = run_experiment(cfg, tmp_path / "run")
    assert again["source_pretraining"] == first["source_pretraining"]
    assert again["metrics"] == first["metrics"]


def test_a_stage_killed_midway_resumes_inside_its_folder(tiny_overrides, tmp_path):
    cfg = _cfg(tiny_overrides, "train.source_pretraining_epochs=2")
    straight = run_experiment(cfg, tmp_path / "straight")

    class Killed(Exception):
        pass

    def kill_after_first_epoch(trainer, epoch):
        raise Killed

    stage = build_trainer(pretraining_config(cfg), tmp_path / "resumed" / FOLDER, callbacks=[kill_after_first_epoch])
    with pytest.raises(Killed):
        stage.fit()
    resumed = run_experiment(cfg, tmp_path / "resumed")
    assert resumed["source_pretraining"]["metrics"] == straight["source_pretraining"]["metrics"]
    assert resumed["metrics"] == straight["metrics"]
