"""Every config mistake is an error that names the key and the valid choices."""
import pytest

from benchmarks.config import ConfigError, load_experiment
from benchmarks.experiment import build_trainer

DA = "configs/experiments/digits_da.yaml"
MTL = "configs/experiments/multidigits_mtl.yaml"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.sorce=digits"], "unknown config key 'data.sorce'. Valid keys under 'data': .*source"),
        (["trian.epochs=3"], "unknown config key 'trian'. Valid keys at the top level: .*train"),
        (["train.epochs=three"], "wrong type for 'train.epochs'"),
        (["data.batch_size=[1,2]"], "data.batch_size"),
        (["optim.name=lbfgs"], "'optim.name' is 'lbfgs'; choose one of: sgd, adam, adamw"),
        (["problem=reinforcement"], "choose one of: domain_adaptation, multitask"),
        (["train.epochs"], "not of the form dotted.key=value"),
    ],
)
def test_schema_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(DA, overrides)


def test_missing_required_key():
    with pytest.raises(ConfigError, match="required key\\(s\\) not set: train.selection_metric"):
        load_experiment(None, ["problem=multitask"])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_experiment(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_experiment(scalar)


@pytest.mark.parametrize(
    "path, overrides, message",
    [
        (DA, ["method.name=danm"], "unknown method 'danm'; available: .*coral, .*dann, .*source_only"),
        (DA, ["method.args.trade_of=0.1"], "method 'dann' has no argument 'trade_of'; valid arguments: .*trade_off"),
        (DA, ["method.args.feature_dim=3"], "argument 'feature_dim' is set by the harness"),
        (DA, ["data.target=mnistm"], "data.target: unknown dataset 'mnistm'; available: .*digits-m"),
        (DA, ["data.target=multidigits"], "is a multitask dataset, not a domain dataset"),
        (MTL, ["weighting.name=uncertanty"], "unknown weighting 'uncertanty'; available: .*equal, .*static, .*uncertainty"),
        (MTL, ["weighting.name=static"], "weighting 'static' needs argument\\(s\\) weights"),
        (MTL, ["model.backbone=resnet"], "unknown backbone 'resnet'; choose one of .*lenet, .*multilenet, small_convnet, a torchvision classification model"),
        (MTL, ["method.name=dann"], "method.\\* applies to domain_adaptation problems only"),
        (DA, ["method.args.schedule=cubic"], "unknown schedule 'cubic'"),
        (DA, ["data.mean=[0.5,0.5]"], "data.mean has 2 values; give 1 or 3"),
    ],
)
def test_registry_errors_list_valid_choices(tmp_path, path, overrides, message):
    if "method.args" in overrides[0]:
        overrides = ["method.name=dann", *overrides]
    cfg = load_experiment(path, overrides)
    with pytest.raises(ConfigError, match=message):
        build_trainer(cfg, tmp_path)


def test_config_hash_ignores_keys_left_at_their_default():
    """A key added to the schema later (with a default) must not orphan earlier records."""
    from benchmarks.config import config_hash, config_to_dict

    cfg = config_to_dict(load_experiment(DA))
    older = {**cfg, "train": {k: v for k, v in cfg["train"].items() if k != "gradient_diagnostics_every"}}
    assert config_hash(older) == config_hash(cfg)
    assert config_hash(load_experiment(DA, ["train.epochs=3"])) != config_hash(cfg)
    assert config_hash(load_experiment(DA, ["train.progress_bar=false"])) == config_hash(cfg)


def test_run_hash_separates_data_parallel_world_sizes():
    """A DDP run steps with world_size × the batch: its identity differs from a single-process run's."""
    from benchmarks.config import config_hash, run_hash

    cfg = load_experiment(DA)
    assert run_hash(cfg) == run_hash(cfg, 1) == config_hash(cfg)  # single-process records stay valid
    hashes = {run_hash(cfg, n) for n in (1, 2, 4)}
    assert len(hashes) == 3
    assert run_hash(cfg, 2) == run_hash(load_experiment(DA), 2)  # deterministic
    assert run_hash(load_experiment(DA, ["train.epochs=3"]), 2) != run_hash(cfg, 2)
    with pytest.raises(ValueError, match="world_size"):
        run_hash(cfg, 0)
