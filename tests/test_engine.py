"""A run's record, exact resume, NaN guard, TensorBoard, batching.

Every registered method and weighting trains end to end and resumes exactly in
tests/test_adapt_methods.py and tests/test_loss_weightings.py (parametrised from the registry)."""
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from benchmarks.batching import DeviceBatcher
from benchmarks.config import ConfigError, load_experiment
from benchmarks.datasets import ImageSplit, load_dataset
from benchmarks.engine import NonFiniteLossError
from benchmarks.experiment import build_trainer, run_experiment

DA = "configs/experiments/digits_da.yaml"
MTL = "configs/experiments/multidigits_mtl.yaml"


def test_a_run_writes_its_record(tmp_path, tiny_overrides):
    method = "dann"
    cfg = load_experiment(DA, [*tiny_overrides, f"method.name={method}"])
    record = run_experiment(cfg, tmp_path)
    assert 0.0 <= record["metrics"]["test/target/digit/accuracy"] <= 1.0
    assert record["steps"] == 6 and record["epochs_run"] == 2
    saved = json.loads((tmp_path / "record.json").read_text())
    assert saved["config"]["method"]["name"] == method
    assert saved["versions"]["torch"] == torch.__version__.split("+")[0] or saved["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    assert {"commit", "dirty"} <= set(saved["git"])


def test_record_names_the_commit_the_run_started_with(tmp_path, tiny_overrides, monkeypatch):
    """A long sweep may span several commits: each record keeps the code its run started from."""
    import benchmarks.experiment as experiment

    checked_out = {"commit": "at-start", "dirty": False}
    fit = experiment.Trainer.fit

    def fit_then_check_out_another_commit(self):
        result = fit(self)
        checked_out["commit"] = "at-end"  # someone commits / checks out while the run trains
        return result

    monkeypatch.setattr(experiment, "git_commit", lambda: dict(checked_out))
    monkeypatch.setattr(experiment.Trainer, "fit", fit_then_check_out_another_commit)
    record = run_experiment(load_experiment(DA, tiny_overrides), tmp_path)
    assert record["git"]["commit"] == "at-start"
    assert json.loads((tmp_path / "record.json").read_text())["git"]["commit"] == "at-start"


def test_gradient_weighting_rejects_a_target_its_method_does_not_support(tmp_path, tiny_overrides):
    cfg = load_experiment(MTL, [*tiny_overrides, "weighting.name=pcgrad", "weighting.args.target=representation"])
    with pytest.raises(ConfigError, match="parameter gradients only"):
        build_trainer(cfg, tmp_path)


def test_uncertainty_weighting_balances_task_and_dann_terms(tmp_path, tiny_overrides):
    """Any weighting can balance any terms: uncertainty weighting between a classification and a DANN loss."""
    cfg = load_experiment(DA, [*tiny_overrides, "method.name=dann", "weighting.name=uncertainty", "optim.weighting_lr=0.1"])
    trainer = build_trainer(cfg, tmp_path)
    assert set(trainer.weighting.log_vars) == {"digit", "domain"}
    before = {k: v.item() for k, v in trainer.weighting.log_vars.items()}
    trainer.fit()
    after = {k: v.item() for k, v in trainer.weighting.log_vars.items()}
    assert all(before[k] != after[k] for k in before)


def _final_state(trainer):
    return {k: v.clone() for k, v in trainer.problem.state_dict().items()}


class _Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_identical_weights(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "train.epochs=4", "method.name=dann", "weighting.name=uncertainty"]
    cfg = load_experiment(DA, overrides)
    straight = build_trainer(cfg, tmp_path / "straight")
    straight.fit()

    def interrupt_after_two(trainer, epoch):
        if epoch == 2:
            raise _Interrupt

    first = build_trainer(cfg, tmp_path / "resumed", callbacks=[interrupt_after_two])
    with pytest.raises(_Interrupt):
        first.fit()
    torch.manual_seed(12345)  # a fresh process would have arbitrary RNG state
    second = build_trainer(cfg, tmp_path / "resumed")
    assert second.resume_if_possible() and second.epoch == 2
    second.fit()
    a, b = _final_state(straight), _final_state(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for key, value in straight.weighting.state_dict().items():
        assert torch.equal(value, second.weighting.state_dict()[key])
    assert straight.history == second.history


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path, tiny_overrides):
    build_trainer(load_experiment(DA, tiny_overrides), tmp_path).fit()
    other = build_trainer(load_experiment(DA, [*tiny_overrides, "optim.lr=0.5"]), tmp_path)
    with pytest.raises(RuntimeError, match="different configuration"):
        other.fit()


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, tiny_overrides, monkeypatch):
    cfg = load_experiment(DA, [*tiny_overrides, "train.epochs=3", "method.name=coral"])
    trainer = build_trainer(cfg, tmp_path)
    method = trainer.problem.method
    original = method.alignment_terms
    calls = {"n": 0}

    def poisoned(**kwargs):
        calls["n"] += 1
        terms = original(**kwargs)
        if calls["n"] == 5:  # second step of epoch 2
            terms["coral"] = terms["coral"] * float("nan")
        return terms

    monkeypatch.setattr(method, "alignment_terms", poisoned)
    with pytest.raises(NonFiniteLossError, match="coral.*NaN/inf at step 5 \\(epoch 2\\).*end of epoch 1"):
        trainer.fit()
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in checkpoint["problem"].values() if v.is_floating_point())


def test_early_stopping_stops_and_reports_the_best_epoch(tmp_path, tiny_overrides):
    # lr=0: the weights never change, so validation accuracy soon stops improving
    cfg = load_experiment(DA, [*tiny_overrides, "train.epochs=8", "train.patience=2", "optim.lr=0.0", "train.select=best"])
    record = run_experiment(cfg, tmp_path)
    assert record["stopped_early"] and record["epochs_run"] < 8
    assert record["epochs_run"] == record["selected_epoch"] + 2  # exactly `patience` epochs without improvement
    best = max(h["val/source/digit/accuracy"] for h in record["history"])
    assert record["metrics"]["val/source/digit/accuracy"] == best


def test_tensorboard_holds_losses_weights_lr_dann_and_metrics(tmp_path, tiny_overrides):
    run_experiment(load_experiment(DA, [*tiny_overrides, "method.name=dann", "weighting.name=uncertainty"]), tmp_path)
    events = [p for p in (tmp_path / "tb").rglob("events.out.tfevents.*")]
    tags = set()
    for path in events:
        acc = EventAccumulator(str(path))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    expected = {
        "loss/digit",
        "loss/domain",
        "weight/digit",
        "weight/domain",
        "lr",
        "dann/grl_coefficient",
        "dann/domain_accuracy",
        "val/source/digit/accuracy",
        "test/target/digit/accuracy",
    }
    assert expected <= tags, expected - tags
    assert any("hparam/test/target/digit/accuracy" in t for t in tags)


def test_device_batcher_visits_every_sample_once_per_cycle_and_restores_exactly():
    split = ImageSplit(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), {"y": torch.arange(10)})
    batcher = DeviceBatcher(split, batch_size=5, seed=3, device="cpu")
    first_cycle = torch.cat([batcher.next()[1]["y"] for _ in range(2)])
    assert sorted(first_cycle.tolist()) == list(range(10))
    state = batcher.state_dict()
    expected = [batcher.next()[1]["y"] for _ in range(3)]
    batcher2 = DeviceBatcher(split, batch_size=5, seed=3, device="cpu")
    batcher2.load_state_dict(state)
    for want in expected:
        assert torch.equal(batcher2.next()[1]["y"], want)
    with pytest.raises(ValueError, match="fewer than one batch"):
        DeviceBatcher(split, batch_size=11, seed=0, device="cpu")


def test_embedded_datasets_are_deterministic_and_domains_disjoint():
    a, b = load_dataset("digits-m", data_seed=0), load_dataset("digits-m", data_seed=0)
    assert torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.train.images, load_dataset("digits-m", data_seed=1).train.images)
    source = load_dataset("digits")
    assert source.channels == 1 and a.channels == 3
    multi = load_dataset("multidigits")
    assert set(multi.tasks) == {"left", "right"} and multi.train.images.shape[-1] == 12


def test_single_task_baseline_trains_one_head(tmp_path, tiny_overrides):
    record = run_experiment(load_experiment(MTL, [*tiny_overrides, "data.tasks=[left]", "train.selection_metric=val/left/accuracy", "report=[test/left/accuracy]"]), tmp_path)
    assert "test/left/accuracy" in record["metrics"] and "test/right/accuracy" not in record["metrics"]
    with pytest.raises(ConfigError, match="not in dataset 'multidigits'; its tasks: left, right"):
        build_trainer(load_experiment(MTL, [*tiny_overrides, "data.tasks=[middle]"]), tmp_path / "x")


def test_history_holds_each_epochs_mean_of_the_logged_training_scalars(tmp_path, tiny_overrides):
    """``train/<tag>`` in an epoch's history entry is the mean of the TensorBoard values of ``<tag>`` logged in
    that epoch, so numbers read off TensorBoard (the discriminator's accuracy, the weights) live in the record."""
    overrides = [*tiny_overrides, "train.epochs=2", "train.steps_per_epoch=5", "train.log_every=2",
                 "method.name=dann", "weighting.name=uncertainty"]
    record = run_experiment(load_experiment(DA, overrides), tmp_path)
    logged: dict[str, list] = {}
    for path in (tmp_path / "tb").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            logged.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    tags = ["loss/digit", "loss/domain", "weight/digit", "weight/domain", "dann/grl_coefficient", "dann/domain_accuracy"]
    previous = 0
    for entry in record["history"]:
        # 5 steps per epoch, logged every 2 steps and at the epoch's end: three values per tag and epoch
        for tag in tags:
            values = [v for step, v in logged[tag] if previous < step <= entry["step"]]
            assert len(values) == 3, (tag, values)
            assert entry[f"train/{tag}"] == pytest.approx(sum(values) / len(values), rel=1e-6)
        assert 0.0 <= entry["train/dann/domain_accuracy"] <= 1.0
        previous = entry["step"]
    assert record["history"][0]["train/dann/grl_coefficient"] < record["history"][1]["train/dann/grl_coefficient"]
