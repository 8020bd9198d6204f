"""Multi-task model, task specs and the loss-level weightings."""
import math

import pytest
import torch

from mtl import (
    ClassificationTask,
    EqualWeighting,
    MultiLabelTask,
    MultiTaskModel,
    RegressionTask,
    SmallConvNet,
    StaticWeighting,
    UncertaintyWeighting,
)
from mtl.backbones import LeNet, MultiLeNet


def test_multitask_model_builds_heads_from_task_specs():
    tasks = {
        "digit": ClassificationTask("digit", num_classes=10),
        "attrs": MultiLabelTask("attrs", num_labels=3),
        "size": RegressionTask("size", dim=2),
    }
    model = MultiTaskModel.from_tasks(SmallConvNet(in_channels=1, image_size=8), tasks)
    out, features = model(torch.randn(4, 1, 8, 8), return_features=True)
    assert {k: v.shape[1] for k, v in out.items()} == {"digit": 10, "attrs": 3, "size": 2}
    assert features.shape == (4, model.backbone.out_features)
    shared = {id(p) for p in model.shared_parameters()}
    specific = {id(p) for p in model.task_specific_parameters()}
    assert shared.isdisjoint(specific) and len(shared | specific) == len(list(model.parameters()))


@pytest.mark.parametrize("backbone, size", [(LeNet, 28), (MultiLeNet, 28), (MultiLeNet, 12), (SmallConvNet, 8)])
def test_backbones_report_their_feature_size(backbone, size):
    net = backbone(in_channels=3, image_size=size)
    assert net(torch.randn(2, 3, size, size)).shape == (2, net.out_features)


def test_task_metrics_are_correct_on_hand_made_cases():
    cls = ClassificationTask("c", num_classes=3)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]])
    assert cls.metrics(logits, torch.tensor([0, 1, 0, 0]))["accuracy"] == pytest.approx(0.75)
    ml = MultiLabelTask("m", num_labels=2)
    m = ml.metrics(torch.tensor([[1.0, -1.0], [1.0, 1.0]]), torch.tensor([[1, 0], [0, 1]]))
    assert m == {"accuracy": pytest.approx(0.75), "subset_accuracy": pytest.approx(0.5)}
    reg = RegressionTask("r")
    r = reg.metrics(torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0]))
    assert r == {"mse": pytest.approx(2.5), "mae": pytest.approx(1.5)}
    assert not reg.higher_is_better and reg.primary_metric == "mse"


def test_equal_and_static_weighting_sum_the_terms():
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(3.0, requires_grad=True)
    weights = EqualWeighting().backward({"a": a * a, "b": 3 * b})
    assert weights == {"a": 1.0, "b": 1.0}
    assert a.grad.item() == pytest.approx(4.0) and b.grad.item() == pytest.approx(3.0)
    a.grad = b.grad = None
    StaticWeighting({"a": 0.5, "b": 2.0}).backward({"a": a * a, "b": 3 * b})
    assert a.grad.item() == pytest.approx(2.0) and b.grad.item() == pytest.approx(6.0)


def test_static_weighting_refuses_missing_or_unknown_terms():
    with pytest.raises(ValueError, match="missing weights: \\['b'\\]"):
        StaticWeighting({"a": 1.0}).combine({"a": torch.tensor(1.0), "b": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="unknown terms: \\['c'\\]"):
        StaticWeighting({"a": 1.0, "c": 1.0}).combine({"a": torch.tensor(1.0)})


def test_uncertainty_weighting_optimum_is_log_loss():
    """For fixed losses L_k, ½e^{-s}L + ½s is minimised at s* = log L."""
    losses = {"small": torch.tensor(0.2), "large": torch.tensor(5.0)}
    weighting = UncertaintyWeighting()
    weighting.ensure_terms(losses)
    opt = torch.optim.Adam(weighting.parameters(), lr=0.05)
    for _ in range(1500):
        opt.zero_grad()
        weighting.backward(losses)
        opt.step()
    for name, value in losses.items():
        assert weighting.log_vars[name].item() == pytest.approx(math.log(value.item()), abs=1e-3)
    # the term with the larger loss ends with the smaller weight ½e^{-s} = 1/(2L)
    _, weights = weighting.combine(losses)
    assert weights["large"] == pytest.approx(1 / 10, rel=1e-2) and weights["small"] == pytest.approx(1 / 0.4, rel=1e-2)


def test_uncertainty_weighting_moves_log_variances_the_right_way_on_a_toy_problem():
    """Two regression tasks sharing one weight vector, one with 10× noisier targets."""
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    w_true = torch.randn(4)
    targets = {"clean": x @ w_true + 0.1 * torch.randn(256), "noisy": x @ w_true + 3.0 * torch.randn(256)}
    w = torch.zeros(4, requires_grad=True)
    weighting = UncertaintyWeighting()
    weighting.ensure_terms(targets)
    opt = torch.optim.Adam([w, *weighting.parameters()], lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        weighting.backward({k: torch.mean((x @ w - y) ** 2) for k, y in targets.items()})
        opt.step()
    s = {k: v.item() for k, v in weighting.log_vars.items()}
    assert s["noisy"] > 1.5 > s["clean"]  # noisy task: larger variance, smaller weight
    weighting.reset()
    assert all(v.item() == 0.0 for v in weighting.log_vars.values())


def test_weighting_rejects_non_scalar_terms():
    with pytest.raises(ValueError, match="reduce it to a scalar"):
        EqualWeighting().backward({"a": torch.ones(3, requires_grad=True)})
    with pytest.raises(ValueError, match="no loss terms"):
        EqualWeighting().backward({})
