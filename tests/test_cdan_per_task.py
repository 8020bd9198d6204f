"""CDAN per task: one conditional discriminator per task of a multi-task source (adapt/methods/cdan_per_task.py)."""
from types import SimpleNamespace

import pytest
import torch

from adapt.methods import METHODS, CDAN
from adapt.methods.cdan_per_task import CDANPerTask
from benchmarks.config import ConfigError, load_experiment
from benchmarks.experiment import build_problem, run_experiment
from benchmarks.problems.domain_adaptation import check_method_tasks
from benchmarks.registry import multi_task_methods
from mtl.tasks import ClassificationTask, RegressionTask

EMBEDDED = "configs/experiments/multitask_da/multidigits_to_multidigits-m.yaml"


def _batch(seed, n=12, d=6, classes=(3, 4)):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2 * n, d, generator=generator, requires_grad=True)
    logits = {f"t{i}": torch.randn(2 * n, c, generator=generator) for i, c in enumerate(classes)}
    return features, logits, n


def _terms(method, features, logits, n, progress=0.5):
    return method.alignment_terms(
        source_features=features[:n], target_features=features[n:],
        source_task_logits={k: v[:n] for k, v in logits.items()},
        target_task_logits={k: v[n:] for k, v in logits.items()},
        source_logits=None, target_logits=None, progress=progress, step=0,
    )


def test_each_tasks_term_is_a_standalone_cdan_on_that_tasks_predictions():
    torch.manual_seed(0)
    method = CDANPerTask(6, {"t0": 3, "t1": 4}, hidden_sizes=(5,), batch_norm=False)
    features, logits, n = _batch(1)
    terms = _terms(method, features, logits, n)
    assert list(terms) == ["domain_t0", "domain_t1"] == list(method.term_names)
    for task, classes in (("t0", 3), ("t1", 4)):
        alone = CDAN(6, classes, hidden_sizes=(5,), batch_norm=False)
        alone.load_state_dict(method.per_task[task].state_dict())
        (expected,) = alone.alignment_terms(
            source_features=features[:n], target_features=features[n:],
            source_logits=logits[task][:n], target_logits=logits[task][n:], progress=0.5, step=0,
        ).values()
        torch.testing.assert_close(terms[f"domain_{task}"], expected)


def test_the_discriminators_are_separate_and_each_sees_only_its_task():
    torch.manual_seed(0)
    method = CDANPerTask(6, {"t0": 3, "t1": 4}, hidden_sizes=(5,), batch_norm=False)
    features, logits, n = _batch(2)
    terms = _terms(method, features, logits, n)
    terms["domain_t0"].backward()
    assert all(p.grad is not None for p in method.per_task["t0"].parameters())
    assert all(p.grad is None for p in method.per_task["t1"].parameters())
    # changing the other task's predictions leaves a task's term unchanged
    changed = dict(logits, t1=logits["t1"].flip(0))
    torch.testing.assert_close(_terms(method, features, changed, n)["domain_t0"], terms["domain_t0"].detach())


def test_the_encoder_gets_the_reversed_gradients_of_every_task():
    torch.manual_seed(0)
    method = CDANPerTask(6, {"t0": 3, "t1": 4}, hidden_sizes=(5,), batch_norm=False)
    features, logits, n = _batch(3)
    grads = []
    for task in ("t0", "t1"):
        (grad,) = torch.autograd.grad(_terms(method, features, logits, n)[f"domain_{task}"], features)
        grads.append(grad)
    (both,) = torch.autograd.grad(sum(_terms(method, features, logits, n).values()), features)
    torch.testing.assert_close(both, grads[0] + grads[1])
    # at progress 0 the reversal coefficient is 0: the terms do not move the encoder
    (none,) = torch.autograd.grad(sum(_terms(method, features, logits, n, progress=0.0).values()), features)
    assert torch.count_nonzero(none) == 0


def test_large_feature_times_class_products_use_a_random_projection_per_task():
    method = CDANPerTask(600, {"a": 10, "b": 2}, hidden_sizes=(5,), batch_norm=False)
    assert method.per_task["a"].randomized_map is not None  # 6000 > 4096
    assert method.per_task["b"].randomized_map is None  # 1200: the exact map


def test_diagnostics_name_each_task():
    method = CDANPerTask(6, {"t0": 3, "t1": 4}, hidden_sizes=(5,), batch_norm=False)
    features, logits, n = _batch(4)
    _terms(method, features, logits, n)
    keys = set(method.diagnostics())
    assert keys == {f"cdan_per_task/{t}/{k}" for t in ("t0", "t1") for k in ("grl_coefficient", "domain_accuracy")}


def test_an_empty_task_map_is_refused():
    with pytest.raises(ValueError, match="task_classes is empty"):
        CDANPerTask(6, {})


def test_a_non_classification_task_is_refused_with_a_clear_error():
    source = SimpleNamespace(name="toy", tasks={"digit": ClassificationTask("digit", 10), "size": RegressionTask("size")})
    with pytest.raises(ConfigError, match=r"method 'cdan_per_task'.*size.*not classification tasks"):
        check_method_tasks(CDANPerTask(6, {"digit": 10}), source)


def test_a_multi_task_source_admits_it_and_the_refusal_message_lists_it(tiny_overrides):
    assert "cdan_per_task" in multi_task_methods() and "cdan" not in multi_task_methods()
    with pytest.raises(ConfigError, match="cdan_per_task"):
        build_problem(load_experiment(EMBEDDED, [*tiny_overrides, "method.name=cdan"]), torch.device("cpu"))


def test_through_the_harness_every_task_gets_its_term(tiny_overrides):
    problem = build_problem(load_experiment(EMBEDDED, [*tiny_overrides, "method.name=cdan_per_task"]), torch.device("cpu"))
    assert problem.term_names() == ["left", "right", "domain_left", "domain_right"]
    assert set(problem.method.per_task) == {"left", "right"}
    terms, _ = problem.training_terms(progress=0.5)
    assert list(terms) == ["left", "right", "domain_left", "domain_right"]
    sum(terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in problem.model.parameters() if p.grad is not None)


def test_end_to_end_with_a_weighting_that_balances_the_four_terms(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "method.name=cdan_per_task", "method.args.hidden_sizes=[8]", "weighting.name=uncertainty"]
    record = run_experiment(load_experiment(EMBEDDED, overrides), tmp_path)
    assert record["steps"] == 6
    assert 0.0 <= record["metrics"]["test/target/mean/accuracy"] <= 1.0
    assert "cdan_per_task" in METHODS
