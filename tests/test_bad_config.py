"""A corpus of bad configurations: each is refused with exit code 2 and one ``error:`` line naming the key,
with no traceback, before any data is read (or, for metric names, which need the dataset's tasks, before
any training step)."""
import pytest

from benchmarks import engine, experiment
from benchmarks.cli import main

DA = "configs/experiments/digits_da.yaml"
MTL = "configs/experiments/multidigits_mtl.yaml"
STATIC = "weighting.name=static"

# (config, arguments after it, the key the error line must name)
BEFORE_DATA = [
    (DA, ["optim.lr=-0.1"], "optim.lr"),
    (DA, ["optim.lr=nan"], "optim.lr"),
    (DA, ["optim.lr=inf"], "optim.lr"),
    (DA, ["optim.weight_decay=-0.01"], "optim.weight_decay"),
    (DA, ["optim.momentum=-0.5"], "optim.momentum"),
    (DA, ["optim.momentum=1.5"], "optim.momentum"),
    (DA, ["optim.lr_gamma=-1"], "optim.lr_gamma"),
    (DA, ["optim.lr_decay=-1"], "optim.lr_decay"),
    (DA, ["optim.weighting_lr=-1"], "optim.weighting_lr"),
    (DA, ["data.batch_size=0"], "data.batch_size"),
    (DA, ["data.batch_size=-3"], "data.batch_size"),
    (DA, ["data.eval_batch_size=0"], "data.eval_batch_size"),
    (DA, ["data.workers=-1"], "data.workers"),
    (DA, ["data.val_fraction=0"], "data.val_fraction"),
    (DA, ["data.val_fraction=1"], "data.val_fraction"),
    (DA, ["data.val_fraction=-0.2"], "data.val_fraction"),
    (DA, ["data.image_size=0"], "data.image_size"),
    (DA, ["data.channels=0"], "data.channels"),
    (DA, ["data.labels_per_class=0"], "data.labels_per_class"),
    (DA, ["data.std=[0.5,0,0.5]"], "data.std"),
    (DA, ["data.mean=[]"], "data.mean"),
    (DA, ["model.bottleneck_dim=0"], "model.bottleneck_dim"),
    (DA, ["model.bottleneck_dropout=1.0"], "model.bottleneck_dropout"),
    (DA, ["model.args.feature_dim=wide"], "model.args.feature_dim"),
    (DA, ["train.epochs=0"], "train.epochs"),
    (DA, ["train.epochs=-2"], "train.epochs"),
    (DA, ["train.steps_per_epoch=0"], "train.steps_per_epoch"),
    (DA, ["train.patience=0"], "train.patience"),
    (DA, ["train.threads=-1"], "train.threads"),
    (DA, ["train.threads=0"], "train.threads"),
    (DA, ["train.log_every=0"], "train.log_every"),
    (DA, ["train.gradient_diagnostics_every=0"], "train.gradient_diagnostics_every"),
    (DA, ["train.validator_samples=1"], "train.validator_samples"),
    (DA, ["train.validators=[snd,nope]"], "train.validators"),
    (DA, ["train.device=cuda:x"], "train.device"),
    (DA, ["--device", "tpu"], "train.device"),
    (DA, ["--workers", "0"], "--workers"),
    (DA, ["train.selection_metric=test/target/digit/accuracy"], "train.selection_metric"),
    (DA, ["report=[accuracy]"], "report"),
    (DA, ["method.name=dann", "method.args.trade_off=abc"], "method.args.trade_off"),
    (DA, ["method.name=dann", "method.args.trade_off=1e-3x"], "method.args.trade_off"),
    (DA, ["method.name=dann", "method.args.hidden_sizes=[1024,abc]"], "method.args.hidden_sizes"),
    (DA, ["method.name=dann", "method.args.ramp_steps=1.5"], "method.args.ramp_steps"),
    (DA, ["method.name=dann", "method.args.trade_of=0.1"], "trade_of"),
    (MTL, [STATIC, "weighting.args.weights=abc"], "weighting.args.weights"),
    (MTL, [STATIC, "weighting.args.weights={left: heavy, right: 1.0}"], "weighting.args.weights"),
    (MTL, ["weighting.name=famo", "weighting.args.betas=[0.9]"], "weighting.args.betas"),
    (MTL, ["weighting.name=mgda", "weighting.args.max_iter=many"], "weighting.args.max_iter"),
]
# these need the dataset's task names, so they are checked once the data is loaded, before training
BEFORE_TRAINING = [
    (DA, ["train.selection_metric=val/foo/bar"], "train.selection_metric"),
    (MTL, ["train.selection_metric=val/middle/accuracy"], "train.selection_metric"),
    (DA, ["report=[test/target/digit/acuracy]"], "report"),
    (MTL, ["report=[test/left/accuracy,test/middle/accuracy]"], "report"),
]


@pytest.fixture
def guarded(monkeypatch):
    """Fail the test if a case reads data or trains a step."""

    def no_data(*args, **kwargs):
        raise AssertionError("a dataset was loaded before the config was refused")

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the config was refused")

    monkeypatch.setattr(experiment, "load_dataset", no_data)
    monkeypatch.setattr(engine.Trainer, "_train_epoch", no_training)
    return monkeypatch


def _refused(capsys, config, arguments, key, tmp_path) -> str:
    code = main(["run", config, *arguments, "--output", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert key in lines[0] and "Traceback" not in err
    assert not list((tmp_path / "runs").rglob("checkpoints"))  # nothing was trained or written
    return lines[0]


@pytest.mark.parametrize("config, arguments, key", BEFORE_DATA, ids=[" ".join(c[1]) for c in BEFORE_DATA])
def test_bad_value_is_refused_before_any_data_is_read(guarded, capsys, tmp_path, config, arguments, key):
    _refused(capsys, config, arguments, key, tmp_path)


@pytest.mark.parametrize("config, arguments, key", BEFORE_TRAINING, ids=[" ".join(c[1]) for c in BEFORE_TRAINING])
def test_unknown_metric_is_refused_before_training_and_the_real_ones_are_listed(
    monkeypatch, capsys, tmp_path, config, arguments, key
):
    monkeypatch.setattr(engine.Trainer, "_train_epoch", lambda *a, **k: pytest.fail("training started"))
    line = _refused(capsys, config, arguments, key, tmp_path)
    listed = "val/source/digit/accuracy" if config == DA else "val/left/accuracy"
    assert listed in line


def test_range_messages_say_what_is_allowed(guarded, capsys, tmp_path):
    assert "must be a number in (0, 1)" in _refused(capsys, DA, ["data.val_fraction=1"], "data.val_fraction", tmp_path)
    assert "must be a number ≥ 1 (or null)" in _refused(capsys, DA, ["train.patience=0"], "train.patience", tmp_path)
    assert "must be a mapping from strings to numbers" in _refused(
        capsys, MTL, [STATIC, "weighting.args.weights=abc"], "weighting.args.weights", tmp_path
    )


def test_a_suite_with_one_bad_run_trains_none_of_its_runs(guarded, capsys, tmp_path):
    suite = tmp_path / "suite.yaml"
    config = experiment.Path(DA).resolve()
    suite.write_text(
        f"name: s\nseeds: [0]\nexperiments:\n"
        f"  - {{name: good, config: {config}}}\n"
        f"  - {{name: bad, config: {config}, overrides: [method.name=dann, method.args.trade_off=abc]}}\n"
    )
    line = _refused(capsys, str(suite), [], "method.args.trade_off", tmp_path)
    assert "experiment 'bad'" in line


def test_values_at_the_edge_of_their_range_are_accepted(tmp_path, tiny_overrides):
    from benchmarks.config import load_experiment

    cfg = load_experiment(DA, [*tiny_overrides, "optim.lr=0", "optim.momentum=0", "data.val_fraction=0.5",
                               "train.patience=1", "train.threads=1", "train.device=cpu", "data.workers=0"])
    experiment.check_config(cfg)


@pytest.mark.parametrize(
    "config, overrides",
    [
        (DA, []),
        (DA, ["train.validators=[]"]),
        (MTL, []),
        ("configs/experiments/multitask_da/multidigits_to_multidigits-m.yaml", []),
    ],
    ids=["da", "da-no-validators", "multitask", "multitask-da"],
)
def test_the_metrics_a_problem_announces_are_the_ones_it_produces(tmp_path, tiny_overrides, config, overrides):
    """What selection metric and report are checked against must be exactly what evaluation returns."""
    from benchmarks.config import load_experiment

    trainer = experiment.build_trainer(load_experiment(config, [*tiny_overrides, *overrides]), tmp_path)
    for split in ("val", "test"):
        assert sorted(trainer.problem.metric_names(split)) == sorted(trainer.problem.evaluate(split)), split


def test_every_task_kind_names_its_metrics():
    import torch

    from mtl.tasks import TASK_KINDS

    for kind in TASK_KINDS.values():
        task = kind("t")
        output = torch.zeros(4, task.output_size)
        target = torch.zeros(4, dtype=torch.long) if kind.__name__ == "ClassificationTask" else torch.zeros(4, task.output_size)
        assert tuple(task.metrics(output, target)) == task.metric_names, kind.__name__
