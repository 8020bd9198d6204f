"""Model-selection validators (adapt.validators) and their wiring into the domain-adaptation harness."""
import math

import numpy as np
import pytest
import torch

from adapt.validators import (
    DEV,
    SND,
    VALIDATORS,
    BNMScore,
    Entropy,
    InfoMax,
    SourceAccuracy,
    TargetOracle,
    Validator,
    dev_risk,
)
from benchmarks.config import ConfigError, load_experiment
from benchmarks.experiment import build_problem, run_experiment
from benchmarks.problems.domain_adaptation import validator_metric
from benchmarks.selection import check_selection_metric

DA = "configs/experiments/digits_da.yaml"


def _probabilities_to_logits(p):
    return torch.log(torch.as_tensor(p, dtype=torch.float64))


# ---------------------------------------------------------------- scores against independent computations
def test_registry_names_and_interface():
    assert set(VALIDATORS) == {"source_accuracy", "entropy", "im", "snd", "bnm", "dev", "oracle"}
    for name, cls in VALIDATORS.items():
        validator = cls()
        assert isinstance(validator, Validator) and validator.requires and cls.__doc__
        assert validator.is_oracle == (name == "oracle")
        assert ("target_train_labels" in validator.requires) == validator.is_oracle
    with pytest.raises(KeyError, match="target_train_logits"):
        Entropy()({"source_val_logits": torch.zeros(2, 3)})


def test_a_non_oracle_validator_may_not_read_target_labels():
    class Cheat(Validator):
        requires = ("target_train_logits", "target_train_labels")

    with pytest.raises(TypeError, match="is_oracle"):
        Cheat()


def test_accuracy_validators():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    labels = torch.tensor([0, 1, 1, 1])
    assert SourceAccuracy()({"source_val_logits": logits, "source_val_labels": labels}) == pytest.approx(0.75)
    assert TargetOracle().score(target_train_logits=logits, target_train_labels=labels) == pytest.approx(0.75)


def test_entropy_of_uniform_and_one_hot_predictions():
    for classes in (2, 5, 10):
        assert Entropy().score(target_train_logits=torch.zeros(7, classes)) == pytest.approx(-math.log(classes))
    confident = torch.full((4, 3), -1e4)
    confident[:, 1] = 0.0
    assert Entropy().score(target_train_logits=confident) == pytest.approx(0.0, abs=1e-12)
    p = np.array([[0.7, 0.2, 0.1], [0.5, 0.25, 0.25]])
    expected = -np.mean(-(p * np.log(p)).sum(axis=1))
    assert Entropy().score(target_train_logits=_probabilities_to_logits(p)) == pytest.approx(expected)


def test_info_max_closed_forms():
    # one-hot and balanced over C classes: H(mean p) = log C, mean H(p) = 0
    one_hot = torch.full((6, 3), -1e4)
    one_hot[torch.arange(6), torch.arange(6) % 3] = 0.0
    assert InfoMax().score(target_train_logits=one_hot) == pytest.approx(math.log(3), abs=1e-9)
    # identical rows: I = 0
    assert InfoMax().score(target_train_logits=torch.tensor([[1.0, 2.0, 0.5]] * 5)) == pytest.approx(0.0, abs=1e-12)
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.3, 0.4]])
    entropy = lambda q: -(q * np.log(q)).sum(axis=-1)  # noqa: E731
    expected = entropy(p.mean(axis=0)) - entropy(p).mean()
    assert InfoMax().score(target_train_logits=_probabilities_to_logits(p)) == pytest.approx(expected)


def test_snd_against_explicit_loops():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(9, 4)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    f = p / np.linalg.norm(p, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(f)):
        others = [j for j in range(len(f)) if j != i]
        sims = np.array([f[i] @ f[j] / 0.05 for j in others])
        q = np.exp(sims - sims.max())
        q /= q.sum()
        total += -sum(qj * math.log(qj) for qj in q if qj > 0)
    expected = total / len(f)
    logits_t = torch.tensor(logits)
    assert SND().score(target_train_logits=logits_t) == pytest.approx(expected, rel=1e-10)
    assert SND(block_size=2).score(target_train_logits=logits_t) == pytest.approx(expected, rel=1e-10)  # blocks agree
    # identical predictions: every neighbour equally close, the maximum log(N - 1)
    assert SND().score(target_train_logits=torch.zeros(6, 3)) == pytest.approx(math.log(5))


def test_bnm_against_numpy_svd():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(12, 5)) * 3
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.linalg.svd(p, compute_uv=False).sum() / len(p)
    assert BNMScore().score(target_train_logits=torch.tensor(logits)) == pytest.approx(expected, rel=1e-10)
    one_hot = torch.full((4, 4), -1e4)
    one_hot[torch.arange(4), torch.arange(4)] = 0.0
    assert BNMScore().score(target_train_logits=one_hot) == pytest.approx(1.0)  # sqrt(C / N) with N = C


def test_dev_weights_are_one_and_dev_is_the_source_loss_when_domains_are_identical():
    rng = np.random.default_rng(2)
    features = torch.tensor(rng.normal(size=(40, 6)))
    logits = torch.tensor(rng.normal(size=(40, 3)))
    labels = torch.tensor(rng.integers(0, 3, size=40))
    dev = DEV()
    np.testing.assert_allclose(dev.importance_weights(features, features.clone()), 1.0, atol=1e-8)
    loss = torch.nn.functional.cross_entropy(logits.double(), labels).item()
    data = {"source_val_logits": logits, "source_val_labels": labels, "source_val_features": features,
            "target_train_features": features.clone()}
    assert dev(data) == pytest.approx(-loss, rel=1e-6)


def test_dev_weights_follow_the_density_ratio_and_the_control_variate():
    rng = np.random.default_rng(3)
    source = rng.normal(0.0, 1.0, size=(400, 1))
    target = rng.normal(1.0, 1.0, size=(400, 1))
    weights = DEV().importance_weights(source, target)
    true_ratio = np.exp(source[:, 0] - 0.5)  # N(1,1) / N(0,1)
    assert np.corrcoef(np.log(weights), np.log(true_ratio))[0, 1] > 0.99
    assert weights.mean() == pytest.approx(1.0, abs=0.3)
    # control variate by hand: eta = -Cov(w l, w) / Var(w)
    losses = rng.uniform(size=400)
    wl = weights * losses
    eta = -np.cov(wl, weights)[0, 1] / np.var(weights, ddof=1)
    assert dev_risk(weights, losses) == pytest.approx(wl.mean() + eta * weights.mean() - eta)
    assert dev_risk(np.ones(5), np.arange(5.0)) == pytest.approx(2.0)  # constant weights: plain mean


# ---------------------------------------------------------------- harness
def test_oracle_selection_is_refused_unless_declared():
    with pytest.raises(ConfigError, match="oracle_selection"):
        check_selection_metric("val/oracle/target_accuracy", oracle_selection=False)
    check_selection_metric("val/oracle/target_accuracy", oracle_selection=True)
    check_selection_metric("val/validator/snd", oracle_selection=False)
    check_selection_metric("val/source/digit/accuracy", oracle_selection=False)
    assert validator_metric("oracle") == "val/oracle/target_accuracy"
    assert validator_metric("snd") == "val/validator/snd"


def test_config_keys_and_defaults(tiny_overrides):
    cfg = load_experiment(DA, tiny_overrides)
    assert "oracle" in cfg.train.validators and "dev" not in cfg.train.validators
    assert cfg.train.validator_samples == 2000 and cfg.train.oracle_selection is False
    cfg = load_experiment(DA, [*tiny_overrides, "train.validators=[snd,dev]", "train.oracle_selection=true"])
    assert list(cfg.train.validators) == ["snd", "dev"]


def test_validators_see_a_fixed_unlabelled_target_subset(tiny_overrides):
    from benchmarks.problems.domain_adaptation import DomainAdaptationProblem

    cfg = load_experiment(DA, tiny_overrides)
    problem = build_problem(cfg, torch.device("cpu"))
    rebuilt = DomainAdaptationProblem(
        problem.model, problem.method, _dataset(problem, "source"), _dataset(problem, "target"),
        problem.preprocess, 16, 256, cfg.data.val_fraction, cfg.data.data_seed, 0, torch.device("cpu"), workers=0,
        validators=["entropy", "snd", "dev"], validator_samples=50,
    )
    again = DomainAdaptationProblem(
        problem.model, problem.method, _dataset(problem, "source"), _dataset(problem, "target"),
        problem.preprocess, 16, 256, cfg.data.val_fraction, cfg.data.data_seed, 1, torch.device("cpu"), workers=0,
        validators=["entropy"], validator_samples=50,
    )
    assert len(rebuilt.validator_target) == 50
    assert torch.equal(rebuilt.validator_target.images, again.validator_target.images)  # independent of train.seed
    _, _, labels = rebuilt.forward_split(rebuilt.validator_target, labelled=False)
    assert labels is None
    metrics = rebuilt.evaluate("val")
    assert set(metrics) == {"val/source/digit/accuracy", "val/validator/entropy", "val/validator/snd", "val/validator/dev"}
    assert not any(k.startswith("val/oracle") for k in metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    with pytest.raises(ConfigError, match="unknown validator"):
        DomainAdaptationProblem(
            problem.model, problem.method, _dataset(problem, "source"), _dataset(problem, "target"),
            problem.preprocess, 16, 256, cfg.data.val_fraction, 0, 0, torch.device("cpu"), validators=["nope"],
        )


def _dataset(problem, which):
    from benchmarks.datasets.base import ImageDataset
    from benchmarks.datasets.base import ImageSplit

    if which == "target":
        return ImageDataset("t", problem.target_train, problem.target_test, problem.tasks)
    images = torch.cat([problem.source_train.images, problem.source_val.images])
    labels = {k: torch.cat([problem.source_train.labels[k], problem.source_val.labels[k]]) for k in problem.tasks}
    return ImageDataset("s", ImageSplit(images, labels), problem.source_test, problem.tasks)


def test_harness_selects_checkpoints_on_an_unsupervised_validator(tmp_path, tiny_overrides):
    cfg = load_experiment(DA, [*tiny_overrides, "train.selection_metric=val/validator/entropy", "train.select=best"])
    record = run_experiment(cfg, tmp_path)
    history = record["history"]
    for entry in history:
        for name in ("source_accuracy", "entropy", "im", "snd", "bnm"):
            assert math.isfinite(entry[f"val/validator/{name}"])
        assert 0.0 <= entry["val/oracle/target_accuracy"] <= 1.0
    best = max(history, key=lambda h: h["val/validator/entropy"])
    assert record["selected_epoch"] == best["epoch"]
    assert record["metrics"]["val/validator/entropy"] == best["val/validator/entropy"]
    # the source-accuracy validator agrees with the usual source metric
    assert best["val/validator/source_accuracy"] == pytest.approx(best["val/source/digit/accuracy"], abs=1e-6)


def test_build_trainer_refuses_oracle_selection(tmp_path, tiny_overrides):
    from benchmarks.experiment import build_trainer, run_experiment

    cfg = load_experiment(DA, [*tiny_overrides, "train.selection_metric=val/oracle/target_accuracy"])
    with pytest.raises(ConfigError, match="oracle_selection"):
        build_trainer(cfg, tmp_path)
    cfg = load_experiment(
        DA, [*tiny_overrides, "train.selection_metric=val/oracle/target_accuracy", "train.oracle_selection=true"]
    )
    run_experiment(cfg, tmp_path / "oracle")
