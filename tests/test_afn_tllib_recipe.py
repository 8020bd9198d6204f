"""AFN's two remaining recipe settings from tllib: the classifier's N(0, 0.01) initialisation and a
feature extractor stepped without momentum (model.classifier_init, optim.backbone_momentum)."""
from __future__ import annotations

import pytest
import torch

from benchmarks.config import ConfigError, config_hash, load_experiment
from benchmarks.experiment import build_trainer, check_config, feature_extractor

DA = "configs/experiments/digits_da.yaml"
SGD = ["optim.name=sgd", "optim.lr=0.1", "optim.momentum=0.9", "model.bottleneck_dim=64"]


def _trainer(tiny_overrides, tmp_path, name, *more):
    return build_trainer(load_experiment(DA, [*tiny_overrides, *SGD, *more]), tmp_path / name)


def test_both_settings_at_their_defaults_keep_every_config_hash(tiny_overrides):
    plain = load_experiment(DA, tiny_overrides)
    explicit = load_experiment(DA, [*tiny_overrides, "model.classifier_init=default", "optim.backbone_momentum=null"])
    assert config_hash(plain) == config_hash(explicit)
    assert config_hash(load_experiment(DA, [*tiny_overrides, "model.classifier_init=normal"])) != config_hash(plain)


def test_normal_init_draws_the_classifier_from_tllib_s_distributions_and_leaves_the_extractor(tiny_overrides, tmp_path):
    default = _trainer(tiny_overrides, tmp_path, "default").problem.model
    normal = _trainer(tiny_overrides, tmp_path, "normal", "model.classifier_init=normal").problem.model
    bottleneck = normal.backbone.bottleneck
    linear = next(m for m in bottleneck.modules() if isinstance(m, torch.nn.Linear))
    norm = next(m for m in bottleneck.modules() if isinstance(m, torch.nn.BatchNorm1d))
    weights = torch.cat([linear.weight.flatten(), *(m.weight.flatten() for m in normal.heads.modules()
                                                     if isinstance(m, torch.nn.Linear))])
    assert weights.numel() > 5000
    assert abs(weights.mean().item()) < 1e-3 and weights.std().item() == pytest.approx(0.01, rel=0.05)
    assert linear.bias.std().item() == pytest.approx(0.01, rel=0.3)
    assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.01) and norm.weight.std().item() < 0.02
    assert torch.count_nonzero(norm.bias) == 0
    # the feature extractor is built (and seeded) before the classifier is redrawn: identical weights
    for (name, a), (_, b) in zip(default.backbone.backbone.named_parameters(), normal.backbone.backbone.named_parameters()):
        assert torch.equal(a, b), name
    # PyTorch's default Linear init is uniform with a much wider spread
    default_linear = next(m for m in default.backbone.bottleneck.modules() if isinstance(m, torch.nn.Linear))
    assert default_linear.weight.std().item() > 0.02


def test_backbone_momentum_steps_the_extractor_by_plain_sgd_and_the_rest_with_momentum(tiny_overrides, tmp_path):
    trainer = _trainer(tiny_overrides, tmp_path, "momentum", "optim.backbone_momentum=0")
    problem, optimizer = trainer.problem, trainer.optimizer
    extractor = {id(p) for p in feature_extractor(problem).parameters()}
    groups = {g.get("name"): g for g in optimizer.param_groups}
    assert groups["feature_extractor"]["momentum"] == 0
    assert {id(p) for p in groups["feature_extractor"]["params"]} == extractor
    assert all(g["momentum"] == 0.9 for n, g in groups.items() if n != "feature_extractor")
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len([p for p in problem.parameters() if p.requires_grad])
    # two steps with the same unit gradient: plain SGD moves 2·lr, momentum 0.9 moves lr·(1 + 1.9)
    for group in optimizer.param_groups:
        group["weight_decay"] = 0.0
    inner = next(iter(feature_extractor(problem).parameters()))
    head = next(iter(problem.model.heads.parameters()))
    start = [inner.detach().clone(), head.detach().clone()]
    for _ in range(2):
        optimizer.zero_grad()
        for p in (inner, head):
            p.grad = torch.ones_like(p)
        optimizer.step()
    lr = optimizer.param_groups[0]["lr"]
    assert torch.allclose(start[0] - inner.detach(), torch.full_like(inner, 2 * lr))
    assert torch.allclose(start[1] - head.detach(), torch.full_like(head, 2.9 * lr))


@pytest.mark.parametrize("overrides, message", [
    (["optim.name=adam", "optim.backbone_momentum=0"], "SGD only"),
    (["optim.nesterov=true", "optim.backbone_momentum=0"], "Nesterov"),
    (["optim.backbone_momentum=1.5"], "optim.backbone_momentum"),
    (["model.classifier_init=xavier"], "model.classifier_init"),
    (["problem=multitask", "model.architecture=mmoe", "optim.backbone_momentum=0"], "architecture=hps"),
])
def test_bad_settings_are_one_error_naming_the_key(tiny_overrides, overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_config(load_experiment(DA, [*tiny_overrides, *SGD, *overrides]))
