"""MNIST → MNIST-M with Ganin et al.'s recipe (JMLR 2016; issue 13): the built networks have the
paper's layer sizes (Fig. 4a, p. 21) and the config and suite state its training procedure (§5.2.2)."""
import math

import pytest
import torch
from torch import nn

from adapt.schedules import dann_ramp
from benchmarks import registry
from benchmarks.config import ConfigError, config_hash, load_experiment
from benchmarks.engine import lr_factor
from benchmarks.experiment import build_backbone, run_experiment
from benchmarks.suite import plan_suite
from mtl.tasks import ClassificationTask

CONFIG = "configs/experiments/digits/ganin/mnist_to_mnistm.yaml"
SUITE = "configs/suites/mnistm_ganin.yaml"
PAPER_DISCRIMINATOR = ["method.name=dann", "method.args.hidden_sizes=[100]", "method.args.batch_norm=false"]


def build_networks(cfg):
    """(model, method) from the config exactly as the harness builds them, without loading any data."""
    tasks = {"digit": ClassificationTask("digit", num_classes=10)}
    size, channels = cfg.data.image_size, cfg.data.channels
    model = registry.build(
        registry.ARCHITECTURES, "architecture", cfg.model.architecture, cfg.model.architecture_args,
        {
            "backbone_factory": lambda: build_backbone(cfg.model.backbone, cfg.model.args, None, "model", channels=channels, image_size=size),
            "tasks": tasks,
            "input_shape": (channels, size, size),
        },
    )
    method = registry.build(
        registry.METHODS, "method", cfg.method.name, cfg.method.args,
        {"feature_dim": model.backbone.out_features, "num_classes": 10},
    )
    return model, method


def layers(module, kinds=(nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)):
    return [m for m in module.modules() if isinstance(m, kinds)]


def test_feature_extractor_and_label_predictor_are_fig_4a():
    model, _ = build_networks(load_experiment(CONFIG, PAPER_DISCRIMINATOR))
    # feature extractor: conv 5×5 32 → ReLU → max-pool 2×2/2 → conv 5×5 48 → ReLU → max-pool 2×2/2
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (3, 32, (5, 5), (1, 1), (0, 0)),
        (32, 48, (5, 5), (1, 1), (0, 0)),
    ]
    pools = [m for m in model.backbone.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2), (2, 2)]
    assert [type(m) for m in model.backbone.conv] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten]
    assert isinstance(model.backbone.fc, nn.Identity)  # no fully connected layer in the shared part
    # 32×32 → 28 → 14 → 10 → 5: 5·5·48 features for the heads and the domain classifier
    assert model.backbone.out_features == 5 * 5 * 48 == 1200
    # label predictor: fc 100 → ReLU → fc 100 → ReLU → fc 10, without batch norm or active dropout
    head = model.heads["digit"]
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1200, 100), (100, 100), (100, 10)]
    assert [type(m) for m in head if not isinstance(m, nn.Dropout)] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert all(m.p == 0.0 for m in head if isinstance(m, nn.Dropout))
    assert not [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    outputs, features = model(torch.zeros(2, 3, 32, 32), return_features=True)
    assert outputs["digit"].shape == (2, 10) and features.shape == (2, 1200)


def test_domain_classifier_is_fig_4a_on_the_feature_extractor():
    _, method = build_networks(load_experiment(CONFIG, PAPER_DISCRIMINATOR))
    net = method.adversarial.discriminator.net
    # GRL → fc 100 → ReLU → fc 1 (logistic), reading the 1200 convolutional features
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)] == [(1200, 100), (100, 1)]


def test_grl_scales_only_the_feature_gradient_as_in_section_5_2_2():
    """λ_p acts on the feature extractor's gradient; the domain classifier updates with λ = 1 (p. 22, footnote 6)."""
    _, method = build_networks(load_experiment(CONFIG, PAPER_DISCRIMINATOR))
    torch.manual_seed(0)
    source, target = torch.randn(4, 1200), torch.randn(4, 1200)

    def gradients(progress):
        method.zero_grad()
        features = torch.cat([source, target]).requires_grad_()
        loss = method.alignment_terms(source_features=features[:4], target_features=features[4:], progress=progress)["domain"]
        loss.backward()
        return features.grad.clone(), [p.grad.clone() for p in method.parameters()]

    p = 0.3
    feature_grad, discriminator_grads = gradients(p)
    assert method.adversarial.coefficient == pytest.approx(2 / (1 + math.exp(-10 * p)) - 1)
    # the same loss without reversal, for reference: the discriminator's gradient is unscaled,
    # the features' is −λ_p times the plain one
    method.zero_grad()
    features = torch.cat([source, target]).requires_grad_()
    plain = nn.functional.binary_cross_entropy_with_logits(
        method.adversarial.discriminator(features), torch.cat([torch.ones(4), torch.zeros(4)])
    )
    plain.backward()
    torch.testing.assert_close(feature_grad, -dann_ramp(p) * features.grad)
    for got, want in zip(discriminator_grads, [q.grad for q in method.parameters()]):
        torch.testing.assert_close(got, want)


def test_config_states_the_training_procedure_of_section_5_2_2():
    cfg = load_experiment(CONFIG)
    # SGD, momentum 0.9, μ_p = 0.01 / (1 + 10p)^0.75 over the training progress p
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum) == ("sgd", 0.01, 0.9)
    assert cfg.optim.lr_schedule == "dann" and not cfg.optim.nesterov and cfg.optim.weight_decay == 0.0
    for p in (0.0, 0.25, 0.5, 1.0):
        assert 0.01 * lr_factor("dann", p) == pytest.approx(0.01 / (1 + 10 * p) ** 0.75)
    # 128 images per step, half source, half target
    assert cfg.data.batch_size == 64
    # mean subtraction only: one overall mean, no division; MNIST replicated to 3 channels, 32×32
    assert list(cfg.data.std) == [1.0] and len(cfg.data.mean) == 1
    assert cfg.data.mean[0] == pytest.approx((0.1309 + 0.4427) / 2, abs=1e-4)
    assert (cfg.data.channels, cfg.data.image_size) == (3, 32)
    assert (cfg.data.source, cfg.data.target) == ("mnist", "mnist-m")
    assert (cfg.model.backbone, dict(cfg.model.args), list(cfg.model.architecture_args.head_hidden)) == ("dann_digits", {}, [100, 100])
    assert cfg.model.bottleneck_dim is None and not cfg.model.stack
    # our choices where the paper is silent: the budget, the last model, learning curves
    assert cfg.train.epochs * cfg.train.steps_per_epoch == 30_000
    assert cfg.train.select == "last" and cfg.train.test_every_epoch
    assert cfg.report == ["test/target/digit/accuracy"]


def test_suite_runs_source_only_dann_and_cdan_on_one_network(tmp_path):
    _, runs = plan_suite(SUITE, tmp_path)
    assert {(r.experiment, r.seed) for r in runs} == {
        (f"m2mm/{m}", s) for m in ("source_only", "dann", "cdan") for s in (0, 1, 2)
    }
    shared = {config_hash(_without_method(r.config)) for r in runs if r.seed == 0}
    assert len(shared) == 1  # everything but the method is the same recipe
    for run in runs:
        cfg = run.config
        if cfg.method.name == "source_only":  # no domain classifier branch (§5.2.1)
            assert dict(cfg.method.args) == {}
            continue
        assert list(cfg.method.args.hidden_sizes) == [100] and cfg.method.args.batch_norm is False
        assert "ramp_steps" not in cfg.method.args  # λ_p over the whole run's progress
        if run.seed != 0:
            continue
        _, method = build_networks(cfg)
        # the paper's γ = 10 ramp, trade-off 1, reaching 1
        assert method.schedule(0.5) == pytest.approx(dann_ramp(0.5, gamma=10.0))
        assert method.trade_off == 1.0 and method.max_coefficient == 1.0
        net = method.discriminator.net if cfg.method.name == "cdan" else method.adversarial.discriminator.net
        assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear] and net[0].out_features == 100


def _without_method(cfg):
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("method")
    data.pop("name")
    data["train"].pop("seed")
    return data


@pytest.mark.parametrize("bad", ["[]", "[100, 0]", "[-5]"])
def test_bad_head_widths_are_config_errors(bad):
    cfg = load_experiment(CONFIG, [f"model.architecture_args.head_hidden={bad}"])
    with pytest.raises(ConfigError, match="head_hidden"):
        build_networks(cfg)


def test_default_heads_are_still_one_linear_layer():
    """Existing configs (no head_hidden) keep their linear heads, and so their parameter names."""
    cfg = load_experiment("configs/experiments/digits/mnist_to_mnistm.yaml", ["method.name=dann"])
    model, _ = build_networks(cfg)
    assert isinstance(model.heads["digit"], nn.Linear) and model.heads["digit"].in_features == 768
    assert [k for k in model.state_dict() if k.startswith("heads.")] == ["heads.digit.weight", "heads.digit.bias"]


def test_recipe_trains_end_to_end_on_the_embedded_digits(tmp_path, tiny_overrides):
    """The recipe (3 channels, one overall mean, MLP head, the paper's domain classifier, per-epoch
    test curve) through the harness on the embedded stand-ins for MNIST and MNIST-M, at 16×16 to
    stay fast (features 1·1·48)."""
    cfg = load_experiment(
        CONFIG,
        [*tiny_overrides, *PAPER_DISCRIMINATOR, "data.source=digits", "data.target=digits-m", "data.image_size=16",
         "train.validators=[source_accuracy]"],
    )
    record = run_experiment(cfg, tmp_path / "run")
    assert 0.0 <= record["metrics"]["test/target/digit/accuracy"] <= 1.0
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert all("test/target/digit/accuracy" in h for h in record["history"])
