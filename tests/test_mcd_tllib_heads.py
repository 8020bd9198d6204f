"""MCD with Transfer-Learning-Library's classifiers: TLLib-shaped heads, a second classifier shaped like the
model's head, and mcd.py's generator step on the joint batch (configs/suites/digits_tllib.yaml,
``*/mcd_tllib_heads``)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from adapt.losses.discrepancy import classifier_discrepancy
from adapt.methods import MCD
from benchmarks.experiment import build_trainer
from benchmarks.suite import plan_suite
from mtl import ClassificationTask, LeNet, MultiTaskModel, SmallConvNet

TASKS = {"digit": ClassificationTask("digit", num_classes=10)}


def _tllib_head_model(feature_dim=32, hidden=(16, 16)):
    return MultiTaskModel.build(
        lambda: SmallConvNet(in_channels=3, image_size=8, feature_dim=feature_dim), TASKS,
        head_hidden=list(hidden), head_dropout=0.5, head_block="dropout_linear_bn_relu",
    )


def test_dropout_linear_bn_relu_blocks_are_tllibs_mcd_head():
    """tllib.alignment.mcd.ImageClassifierHead: Dropout–Linear–BN–ReLU twice, then the linear classifier."""
    head = _tllib_head_model().heads["digit"]
    kinds = [type(layer) for layer in head]
    assert kinds == [nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert [layer.p for layer in head if isinstance(layer, nn.Dropout)] == [0.5, 0.5]
    assert [(layer.in_features, layer.out_features) for layer in head if isinstance(layer, nn.Linear)] == [
        (32, 16), (16, 16), (16, 10)]


def test_the_default_head_block_and_the_refusals():
    default = MultiTaskModel.build(lambda: SmallConvNet(in_channels=3, image_size=8, feature_dim=32), TASKS,
                                   head_hidden=16, head_dropout=0.5)
    assert [type(layer) for layer in default.heads["digit"]] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    with pytest.raises(ValueError, match="head_block must be one of"):
        MultiTaskModel.build(lambda: SmallConvNet(in_channels=3, image_size=8), TASKS, head_hidden=16, head_block="bn")
    with pytest.raises(ValueError, match="needs head_hidden"):
        MultiTaskModel.build(lambda: SmallConvNet(in_channels=3, image_size=8), TASKS, head_block="dropout_linear_bn_relu")


def test_the_second_classifier_has_the_heads_layers_with_fresh_parameters():
    torch.manual_seed(0)
    model = _tllib_head_model()
    head = model.heads["digit"]
    with torch.no_grad():  # give F1's batch norm statistics that a copy must not inherit
        head.train()(torch.randn(20, 32) * 3 + 1)
    mcd = MCD(32, 10, head=head)
    second = mcd.second_classifier
    assert [type(layer) for layer in second] == [type(layer) for layer in head]
    for (name, a), (_, b) in zip(head.state_dict().items(), second.state_dict().items()):
        assert a.shape == b.shape, name
    weights = [(a, b) for a, b in zip(head, second) if isinstance(a, nn.Linear)]
    assert all(not torch.equal(a.weight, b.weight) for a, b in weights)
    norms = [layer for layer in second if isinstance(layer, nn.BatchNorm1d)]
    assert all(torch.equal(n.running_mean, torch.zeros_like(n.running_mean)) for n in norms)
    assert all(p is not q for p, q in zip(head.parameters(), second.parameters()))


def test_a_linear_head_gives_the_same_second_classifier_as_before():
    """Passing a linear head draws F2 exactly as ``Linear(feature_dim, num_classes)`` did: old records stay reproducible."""
    torch.manual_seed(3)
    head = nn.Linear(32, 10)
    without = MCD(32, 10)
    torch.manual_seed(3)
    head = nn.Linear(32, 10)
    with_head = MCD(32, 10, head=head)
    assert isinstance(with_head.second_classifier, nn.Linear)
    torch.testing.assert_close(with_head.second_classifier.state_dict(), without.second_classifier.state_dict())


def test_a_head_layer_that_cannot_be_reinitialised_is_refused():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(10))

        def forward(self, x):
            return x * self.scale

    with pytest.raises(ValueError, match="Scaled layer has parameters but no reset_parameters"):
        MCD(10, 10, head=nn.Sequential(nn.Linear(10, 10), Scaled()))


def _data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        source_images=torch.randn(12, 3, 8, 8, generator=g),
        target_images=torch.randn(12, 3, 8, 8, generator=g) * 2 + 1,
    )


def test_the_joint_generator_step_is_mcd_py_step_c():
    """One step C: G descends trade_off · discrepancy on the target half of a joint forward; F1, F2 stay."""
    torch.manual_seed(0)
    model = _tllib_head_model()
    task = TASKS["digit"]
    mcd = MCD(32, 10, trade_off=0.3, joint_generator_batch=True, head=model.heads["digit"])
    reference = copy.deepcopy((model, mcd))
    data = _data()
    optimizer = torch.optim.SGD([*model.parameters(), *mcd.parameters()], lr=0.1)
    torch.manual_seed(7)
    mcd.step_c(model=model, task=task, optimizer=optimizer, **data)
    ref_model, ref_mcd = reference
    torch.manual_seed(7)  # the same dropout masks
    features = ref_model.backbone(torch.cat([data["source_images"], data["target_images"]]))
    first, second = ref_model.heads["digit"](features), ref_mcd.second_classifier(features)
    (0.3 * classifier_discrepancy(first[12:], second[12:])).backward()
    with torch.no_grad():
        for p in ref_model.backbone.parameters():
            p -= 0.1 * p.grad
    for a, b in zip(model.backbone.parameters(), ref_model.backbone.parameters()):
        torch.testing.assert_close(a, b)
    for a, b in zip([*model.heads.parameters(), *mcd.parameters()], [*ref_model.heads.parameters(), *ref_mcd.parameters()]):
        assert torch.equal(a, b)
    # batch norm saw the joint batch: its running mean moved towards the mean of source and target features
    torch.testing.assert_close(
        model.heads["digit"][2].running_mean, ref_model.heads["digit"][2].running_mean)


def test_with_per_sample_heads_the_joint_generator_step_equals_the_target_only_one():
    """Without batch norm or dropout (in G or the heads) each sample's output depends on that sample alone, so adding the source
    batch to step C's forward changes nothing: the option only matters for heads like TLLib's."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU())  # no batch norm
    backbone.out_features = 32
    model = MultiTaskModel.from_tasks(backbone, TASKS)
    joint = MCD(32, 10, joint_generator_batch=True, head=model.heads["digit"])
    reference = copy.deepcopy((model, joint))
    target_only = reference[1]
    target_only.joint_generator_batch = False
    data = _data()
    for m, method in ((model, joint), reference):
        optimizer = torch.optim.SGD([*m.parameters(), *method.parameters()], lr=0.1)
        method.step_c(model=m, task=TASKS["digit"], optimizer=optimizer, **data)
    for a, b in zip(model.parameters(), reference[0].parameters()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="needs the source batch"):
        joint.step_c(model=model, task=TASKS["digit"], optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                     target_images=data["target_images"])


@pytest.mark.parametrize("entry", ["m2u/mcd_tllib_heads", "u2m/mcd_tllib_heads"])
def test_the_suite_entry_builds_tllibs_mcd_networks(entry, tmp_path):
    """The suite entry's networks, built by the harness (on the embedded digits instead of MNIST and USPS)."""
    _, (run,) = plan_suite("configs/suites/digits_tllib.yaml", tmp_path / "plan", seeds=[0], only=[entry])
    cfg = run.config
    cfg.data.source, cfg.data.target = "digits", "digits"
    problem = build_trainer(cfg, tmp_path / "run").problem
    model, mcd = problem.model, problem.method
    assert isinstance(model.backbone, LeNet) and model.backbone.out_features == 500
    for classifier in (model.heads["digit"], mcd.second_classifier):
        assert [type(layer) for layer in classifier][:4] == [nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.ReLU]
        assert [(m.in_features, m.out_features) for m in classifier if isinstance(m, nn.Linear)] == [
            (500, 1024), (1024, 1024), (1024, 10)]
    assert mcd.joint_generator_batch and not mcd.generator_momentum
    assert (mcd.trade_off, mcd.entropy_trade_off, mcd.num_generator_steps) == (0.3, 0.03, 4)


# --- evaluation of both classifiers (the paper's F1, F2 and ensemble; TLLib's better of F1 and F2) ---

from benchmarks.problems.extra_heads import extra_head_metrics  # noqa: E402


def _scores(logits, labels):
    return (logits.argmax(1) == labels).float().mean().item()


def test_extra_head_metrics_are_each_heads_accuracy_their_ensemble_and_the_better_one():
    torch.manual_seed(0)
    features, labels = torch.randn(300, 32), torch.randint(0, 10, (300,))
    first, second = nn.Linear(32, 10), nn.Linear(32, 10)
    model_logits = first(features).detach()
    metrics = extra_head_metrics(TASKS, {"f2": second}, {"digit": model_logits}, features, {"digit": labels},
                                 "test/target", batch_size=64)
    f1, f2 = _scores(model_logits, labels), _scores(second(features), labels)
    assert metrics["test/target/digit/f2_accuracy"] == pytest.approx(f2)
    assert metrics["test/target/digit/best_head_accuracy"] == pytest.approx(max(f1, f2))
    ensemble = (model_logits + second(features)).argmax(1)  # the MCD authors' output1 + output2
    assert metrics["test/target/digit/heads_ensemble_accuracy"] == pytest.approx((ensemble == labels).float().mean().item())
    assert "test/target/digit/accuracy" not in metrics  # the model's own accuracy is the caller's
    # two identical heads: F2, the ensemble and the better head all equal F1
    same = extra_head_metrics(TASKS, {"f2": first}, {"digit": model_logits}, features, {"digit": labels}, "test/target")
    assert list(same.values()) == pytest.approx([f1] * 3)


def test_extra_heads_are_scored_in_eval_mode_and_left_as_they_were():
    head = nn.Sequential(nn.Dropout(0.9), nn.Linear(32, 10))
    head.train()
    features, labels = torch.randn(50, 32), torch.randint(0, 10, (50,))
    runs = [extra_head_metrics(TASKS, {"f2": head}, {"digit": torch.zeros(50, 10)}, features, {"digit": labels}, "t")
            for _ in range(2)]
    assert runs[0] == runs[1]  # dropout was off
    assert runs[0]["t/digit/f2_accuracy"] == pytest.approx(_scores(head.eval()(features), labels))
    head.train()
    extra_head_metrics(TASKS, {"f2": head}, {"digit": torch.zeros(50, 10)}, features, {"digit": labels}, "t")
    assert all(m.training for m in head.modules())


def test_extra_heads_need_one_classification_task():
    two = {"left": ClassificationTask("left", 10), "right": ClassificationTask("right", 10)}
    with pytest.raises(ValueError, match="one single-label classification task"):
        extra_head_metrics(two, {"f2": nn.Linear(4, 10)}, {}, torch.zeros(2, 4), {}, "t")
    assert extra_head_metrics(two, {}, {}, torch.zeros(2, 4), {}, "t") == {}


def test_an_mcd_run_records_f2_the_ensemble_and_the_better_head(tmp_path):
    """Through the harness: the test metrics name F2's scores, and the better head is the max of F1's and F2's."""
    _, (run,) = plan_suite("configs/suites/digits_tllib.yaml", tmp_path / "plan", seeds=[0], only=["m2u/mcd_tllib_heads"])
    cfg = run.config
    cfg.data.source, cfg.data.target = "digits", "digits"
    problem = build_trainer(cfg, tmp_path / "run").problem
    metrics = problem.evaluate("test")
    assert sorted(metrics) == sorted(problem.metric_names("test"))
    f1, f2 = metrics["test/target/digit/accuracy"], metrics["test/target/digit/f2_accuracy"]
    assert metrics["test/target/digit/best_head_accuracy"] == max(f1, f2)
    assert 0.0 <= metrics["test/target/digit/heads_ensemble_accuracy"] <= 1.0
    assert problem.method.second_classifier.training  # put back as it was


def test_methods_without_classifiers_of_their_own_record_no_extra_metrics(tmp_path):
    _, (run,) = plan_suite("configs/suites/digits_tllib.yaml", tmp_path / "plan", seeds=[0], only=["m2u/dann"])
    cfg = run.config
    cfg.data.source, cfg.data.target = "digits", "digits"
    problem = build_trainer(cfg, tmp_path / "run").problem
    assert not [name for name in problem.metric_names("test") if "head" in name or "f2" in name]
