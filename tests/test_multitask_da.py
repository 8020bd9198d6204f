"""Multi-task domain adaptation: the multidigits/MultiMNIST domain pairs and several tasks in one DA problem."""
from collections import Counter

import pytest
import torch

from adapt.losses.coral import coral_loss
from adapt.validators import Entropy, TargetOracle
from benchmarks.config import ConfigError, load_experiment
from benchmarks.datasets import dataset_kind, load_dataset
from benchmarks.datasets.embedded import _digit_halves
from benchmarks.experiment import build_problem, run_experiment
from benchmarks.registry import METHODS, feature_level_methods

EMBEDDED = "configs/experiments/multitask_da/multidigits_to_multidigits-m.yaml"
REAL = "configs/experiments/multitask_da/multimnist_to_multimnist-m.yaml"
FEATURE_LEVEL = [name for name, entry in METHODS.items() if not entry.factory.reads_logits]
LOGIT_READING = [name for name, entry in METHODS.items() if entry.factory.reads_logits and not entry.factory.reads_every_task]


def _problem(overrides, tiny_overrides):
    return build_problem(load_experiment(EMBEDDED, [*tiny_overrides, *overrides]), torch.device("cpu"))


# ---------------------------------------------------------------- datasets
def test_multidigits_domain_pair_is_registered_deterministic_and_shaped():
    assert dataset_kind("multidigits-source") == dataset_kind("multidigits-m") == "domain"
    source, target = load_dataset("multidigits-source"), load_dataset("multidigits-m")
    assert list(source.tasks) == list(target.tasks) == ["left", "right"]
    assert source.train.images.dtype == target.train.images.dtype == torch.uint8
    assert source.train.images.shape[1:] == (1, 12, 12) and target.train.images.shape[1:] == (3, 12, 12)
    for split in (source.train, source.test, target.train, target.test):
        assert set(split.labels) == {"left", "right"}
        assert all(len(v) == len(split.images) for v in split.labels.values())
    # colour: the blend gives the three channels different values (a grey image replicated would not)
    assert not torch.equal(target.train.images[:, 0], target.train.images[:, 1])
    again = load_dataset("multidigits-m")
    assert torch.equal(again.train.images, target.train.images) and torch.equal(again.test.labels["right"], target.test.labels["right"])
    other = load_dataset("multidigits-m", data_seed=1)
    assert not torch.equal(other.train.labels["left"][:100], target.train.labels["left"][:100])


@pytest.mark.parametrize("seed", [0, 1])
def test_multidigits_source_and_target_come_from_the_two_disjoint_digit_halves(seed):
    """Every digit of a half is the left digit of exactly two canvases (train + test) of its own domain."""
    halves = _digit_halves(seed)
    for name, (_, labels) in zip(("multidigits-source", "multidigits-m"), halves):
        dataset = load_dataset(name, data_seed=seed)
        left = torch.cat([dataset.train.labels["left"], dataset.test.labels["left"]])
        assert Counter(left.tolist()) == Counter((labels.repeat(2)).tolist())
    # the halves hold different digit counts per class, so the check above tells them apart
    assert Counter(halves[0][1].tolist()) != Counter(halves[1][1].tolist())


@pytest.mark.real_data
def test_multimnist_domain_pair_uses_disjoint_mnist_halves(data_root):
    from benchmarks.datasets.standard import mnist_halves

    mnist = load_dataset("mnist", data_root)
    source = load_dataset("multimnist-source", data_root, data_seed=0)
    target = load_dataset("multimnist-m", data_root, data_seed=0)
    assert dataset_kind("multimnist-source") == dataset_kind("multimnist-m") == "domain"
    assert source.train.images.shape == (30000, 1, 28, 28) and source.test.images.shape == (5000, 1, 28, 28)
    assert target.train.images.shape == (30000, 3, 28, 28) and target.test.images.shape == (5000, 3, 28, 28)
    for split, n in (("train", 60000), ("test", 10000)):
        first, second = mnist_halves(n, 0, split)
        assert len(set(first.tolist()) | set(second.tolist())) == n and len(first) + len(second) == n
        assert torch.equal(first, mnist_halves(n, 0, split)[0])  # deterministic for a seed
        digits = getattr(mnist, split).labels["digit"]
        # the left digit of canvas i is MNIST image first[i] (source) or second[i] (target)
        assert torch.equal(getattr(source, split).labels["left"], digits[first])
        assert torch.equal(getattr(target, split).labels["left"], digits[second])
    assert not torch.equal(target.train.images[:, 0], target.train.images[:, 2])
    again = load_dataset("multimnist-m", data_root, data_seed=0)
    assert torch.equal(again.test.images, target.test.images)


# ---------------------------------------------------------------- the problem with several tasks
def test_two_tasks_give_a_supervised_term_per_task_and_the_alignment_terms(tiny_overrides):
    problem = _problem(["method.name=dann"], tiny_overrides)
    assert list(problem.tasks) == ["left", "right"]
    assert problem.term_names() == ["left", "right", "domain"]
    terms, features = problem.training_terms(progress=0.5)
    assert list(terms) == ["left", "right", "domain"]
    assert all(t.ndim == 0 and torch.isfinite(t) for t in terms.values())
    assert terms["left"] != terms["right"]  # two heads, two label sets
    assert features.shape[0] == 2 * 16  # one joint forward of the source and target batches


def test_coral_on_features_aligns_the_shared_features(tiny_overrides):
    problem = _problem(["method.name=coral", "method.args.layer=features"], tiny_overrides)
    torch.manual_seed(0)
    terms, features = problem.training_terms(progress=0.0)
    assert list(terms) == ["left", "right", "coral"]
    torch.testing.assert_close(terms["coral"], coral_loss(features[:16], features[16:]))


def test_per_task_target_metrics_and_validators_averaged_over_tasks(tiny_overrides):
    problem = _problem(["method.name=source_only", "train.validators=[entropy,oracle]"], tiny_overrides)
    test = problem.evaluate("test")
    for domain in ("target", "source"):
        left, right = test[f"test/{domain}/left/accuracy"], test[f"test/{domain}/right/accuracy"]
        assert 0.0 <= left <= 1.0 and 0.0 <= right <= 1.0
        assert test[f"test/{domain}/mean/accuracy"] == pytest.approx((left + right) / 2)
    val = problem.evaluate("val")
    assert {"val/source/left/accuracy", "val/source/right/accuracy", "val/source/mean/accuracy"} <= set(val)
    entropy, oracle = [], []
    for task in problem.tasks:
        logits, _, labels = problem.forward_split(problem.validator_target, labelled=True, task=task)
        entropy.append(Entropy().score(target_train_logits=logits))
        oracle.append(TargetOracle().score(target_train_logits=logits, target_train_labels=labels))
    assert val["val/validator/entropy"] == pytest.approx(sum(entropy) / 2)
    assert val["val/oracle/target_accuracy"] == pytest.approx(sum(oracle) / 2)
    with pytest.raises(ValueError, match="name the one"):
        problem.forward_split(problem.validator_target, labelled=False)


@pytest.mark.parametrize("name", LOGIT_READING)
def test_methods_reading_one_tasks_logits_are_refused_for_a_multi_task_source(tiny_overrides, name):
    with pytest.raises(ConfigError, match=rf"method '{name}' reads the classifier logits.*2 tasks \(left, right\)") as error:
        _problem([f"method.name={name}"], tiny_overrides)
    assert "dann" in str(error.value) and "coral (method.args.layer=features)" in str(error.value)


def test_logit_reading_methods_still_work_with_one_task(tiny_overrides):
    problem = build_problem(
        load_experiment("configs/experiments/digits_da.yaml", [*tiny_overrides, "method.name=cdan"]), torch.device("cpu")
    )
    terms, _ = problem.training_terms(progress=0.5)
    assert list(terms) == ["digit", "domain"]


def test_the_error_lists_exactly_the_methods_that_work_with_several_tasks():
    listed = [entry.split(" ")[0] for entry in feature_level_methods()]
    assert listed == [n for n, e in METHODS.items() if not e.factory.reads_logits or e.factory.features_only_with]
    assert {"source_only", "dann", "coral"} <= set(listed)
    assert not {"cdan", "mcc", "mcd", "entropy_min", "info_max", "bnm", "jan"} & set(listed)


@pytest.mark.parametrize("name", FEATURE_LEVEL)
def test_every_feature_level_method_trains_on_two_tasks(tiny_overrides, name):
    problem = _problem([f"method.name={name}"], tiny_overrides)
    terms, _ = problem.training_terms(progress=0.5)
    assert list(terms)[:2] == ["left", "right"] and list(terms)[2:] == list(problem.method.term_names)
    sum(terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in problem.model.parameters() if p.grad is not None)


# ---------------------------------------------------------------- end to end
@pytest.mark.parametrize(
    "method", [["method.name=source_only"], ["method.name=dann"], ["method.name=coral", "method.args.layer=features"]]
)
def test_end_to_end_on_the_embedded_pair(tmp_path, tiny_overrides, method):
    record = run_experiment(load_experiment(EMBEDDED, [*tiny_overrides, *method]), tmp_path)
    assert record["steps"] == 6 and record["epochs_run"] == 2
    metrics = record["metrics"]
    for key in ("test/target/left/accuracy", "test/target/right/accuracy", "test/target/mean/accuracy",
                "val/source/mean/accuracy", "val/validator/source_accuracy", "val/oracle/target_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["val/validator/source_accuracy"] == pytest.approx(metrics["val/source/mean/accuracy"])


def test_analyze_refuses_a_multi_task_run_clearly(tmp_path, tiny_overrides):
    from benchmarks.analysis import analyze_run

    run_experiment(load_experiment(EMBEDDED, [*tiny_overrides, "train.validators=[entropy]"]), tmp_path)
    with pytest.raises(ConfigError, match="one task, but this run has tasks left, right"):
        analyze_run(tmp_path)


def test_the_real_config_and_suite_name_the_multimnist_pair():
    cfg = load_experiment(REAL, [])
    assert (cfg.data.source, cfg.data.target, cfg.data.channels) == ("multimnist-source", "multimnist-m", 3)
    assert "test/target/left/accuracy" in cfg.report
