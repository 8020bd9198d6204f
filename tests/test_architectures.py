"""Multi-task architectures: MMoE, cross-stitch, MTAN (and HPS through the same factory)."""
import pytest
import torch
from torch import nn

from benchmarks.config import ConfigError, load_experiment
from benchmarks.experiment import build_trainer, run_experiment
from benchmarks.registry import ARCHITECTURES, build
from mtl.architectures import ARCHITECTURES as ARCHITECTURE_CLASSES
from mtl.architectures import MMoE, MTAN, CrossStitch, CrossStitchUnit, hard_parameter_sharing
from mtl.backbones import BACKBONES, LeNet, SmallConvNet
from mtl.model import MultiTaskModel
from mtl.tasks import ClassificationTask, RegressionTask
from mtl.weighting import GradientAggregation
from mtl.aggregators import AGGREGATORS

MTL = "configs/experiments/multidigits_mtl.yaml"
TASKS = {"a": ClassificationTask("a", num_classes=3), "b": RegressionTask("b", dim=2), "c": ClassificationTask("c", num_classes=4)}
SHAPE = (1, 8, 8)


def small():
    return SmallConvNet(in_channels=1, image_size=8, feature_dim=12)


#: options that keep the tests small, and variants tested besides every registered architecture
SMALL = {"mmoe": {"num_experts": 3}}
VARIANTS = {"mtan_task_transitions": ("mtan", {"share_transitions": False})}


def make(name, **options):
    """A registered architecture (or a variant) through its ``build``, the constructor the harness uses."""
    base, variant = VARIANTS.get(name, (name, {}))
    return ARCHITECTURE_CLASSES[base].build(small, TASKS, SHAPE, **{**SMALL.get(base, {}), **variant, **options})


ALL = [*ARCHITECTURE_CLASSES, *VARIANTS]


@pytest.mark.parametrize("name", ALL)
def test_output_shapes_representation_and_parameter_split(name):
    torch.manual_seed(0)
    model = make(name)
    x = torch.randn(5, *SHAPE)
    outputs, representation = model(x, return_features=True)
    assert model.task_names == ["a", "b", "c"]
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {"a": (5, 3), "b": (5, 2), "c": (5, 4)}
    assert set(model(x)) == set(TASKS)
    shared = [id(p) for p in model.shared_parameters()]
    specific = [id(p) for p in model.task_specific_parameters()]
    everything = {id(p) for p in model.parameters()}
    assert len(shared) == len(set(shared)) and len(specific) == len(set(specific))
    assert set(shared).isdisjoint(specific) and set(shared) | set(specific) == everything
    assert shared and specific
    has = getattr(model, "has_shared_representation", True)
    assert (representation is not None) == has
    if representation is not None:
        # every task loss reaches the representation, and it is a function of the shared parameters only
        assert representation.shape[0] == 5
        loss = sum(o.sum() for o in outputs.values())
        grads = torch.autograd.grad(loss, [representation, *model.shared_parameters()], allow_unused=True)
        assert grads[0] is not None and grads[0].abs().sum() > 0


@pytest.mark.parametrize("name", ["mmoe", "mtan_task_transitions", "hps"])
def test_representation_gradient_reaches_every_shared_parameter(name):
    """Backpropagating d loss / d representation into the representation gives the full shared-parameter gradient."""
    torch.manual_seed(1)
    model = make(name).eval()  # eval: BN uses running stats, so the two passes are the same function
    x = torch.randn(4, *SHAPE)
    shared = list(model.shared_parameters())
    outputs, representation = model(x, return_features=True)
    loss = sum(o.pow(2).sum() for o in outputs.values())
    direct = torch.autograd.grad(loss, shared, retain_graph=True)
    (rep_grad,) = torch.autograd.grad(loss, representation, retain_graph=True)
    via = torch.autograd.grad(representation, shared, grad_outputs=rep_grad, allow_unused=True)
    for d, v in zip(direct, via):
        assert v is not None
        torch.testing.assert_close(d, v, rtol=1e-4, atol=1e-6)


def test_mmoe_gates_are_distributions_per_sample_and_mix_the_experts():
    torch.manual_seed(0)
    model = make("mmoe")
    x = torch.randn(6, *SHAPE)
    gates = model.gate_weights(x)
    assert set(gates) == set(TASKS)
    for weights in gates.values():
        assert weights.shape == (6, 3) and (weights > 0).all()
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(6))
    model.eval()
    experts = torch.stack([e(x) for e in model.experts], dim=1)
    mixture = (gates["a"].unsqueeze(-1) * experts).sum(1)
    torch.testing.assert_close(model(x)["a"], model.heads["a"](mixture))
    with pytest.raises(ValueError, match="input values per sample"):
        model(torch.randn(2, 1, 9, 9))


def test_cross_stitch_units_start_at_the_paper_initialisation():
    unit = CrossStitchUnit(3)
    expected = torch.full((3, 3), 0.05)
    expected.fill_diagonal_(0.9)
    torch.testing.assert_close(unit.alpha.data, expected)
    torch.testing.assert_close(CrossStitchUnit(2).alpha.data, torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    model = make("cross_stitch")
    assert len(model.units) == len(small().stages()) and len(model.columns) == 3


def test_cross_stitch_with_identity_units_is_independent_columns():
    torch.manual_seed(0)
    model = make("cross_stitch").eval()
    with torch.no_grad():
        for unit in model.units:
            unit.alpha.copy_(torch.eye(3))
    x = torch.randn(4, *SHAPE)
    outputs = model(x)
    for (name, head), column in zip(model.heads.items(), model.columns):
        torch.testing.assert_close(outputs[name], head(column(x)))
    # and task a's loss does not reach the other columns
    loss = model(x)["a"].sum()
    grads = torch.autograd.grad(loss, list(model.columns[1].parameters()), allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads)
    # with the default units it does
    fresh = make("cross_stitch")
    grads = torch.autograd.grad(fresh(x)["a"].sum(), list(fresh.columns[1].parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["mtan", "mtan_task_transitions"])
def test_mtan_masks_lie_in_the_open_unit_interval_and_gate_the_shared_features(name):
    torch.manual_seed(0)
    model = make(name)
    x = torch.randn(4, *SHAPE)
    masks = model.attention_masks(x)
    shared = model.stage_outputs(x)
    assert set(masks) == set(TASKS)
    for per_stage in masks.values():
        assert len(per_stage) == len(shared)
        for mask, p in zip(per_stage, shared):
            assert mask.numel() == p.numel()
            assert (mask > 0).all() and (mask < 1).all()


def test_backbone_stages_compose_to_forward_and_add_no_parameters():
    for name, cls in BACKBONES.items():
        size = 32 if name == "dann_svhn" else 28
        net = cls(in_channels=1, image_size=size).eval()
        x = torch.randn(2, 1, size, size)
        y = x
        for stage in net.stages():
            y = stage(y)
        torch.testing.assert_close(y, net(x))
        own = {id(p) for p in net.parameters()}
        assert {id(p) for s in net.stages() for p in s.parameters()} == own


def test_architectures_need_stages_and_refuse_bad_arguments():
    class Flat(nn.Module):
        out_features = 4

        def forward(self, x):
            return x.flatten(1)[:, :4]

    with pytest.raises(ValueError, match="stages"):
        CrossStitch(Flat, TASKS)
    with pytest.raises(ValueError, match="stages"):
        MTAN(Flat, TASKS, SHAPE)
    with pytest.raises(ValueError, match="num_experts"):
        MMoE(small, TASKS, 64, num_experts=0)
    with pytest.raises(ValueError, match="at least one task"):
        MMoE(small, {}, 64)
    with pytest.raises(ConfigError, match="valid arguments: num_experts, gate_bias"):
        build(ARCHITECTURES, "architecture", "mmoe", {"experts": 2}, {"backbone_factory": small, "tasks": TASKS, "input_shape": SHAPE})
    with pytest.raises(ConfigError, match="unknown architecture 'moe'; available: cross_stitch, hps, mmoe, mtan"):
        build(ARCHITECTURES, "architecture", "moe", {}, {})


def test_hps_factory_is_the_existing_model():
    torch.manual_seed(0)
    model = hard_parameter_sharing(small, TASKS)
    assert type(model) is MultiTaskModel
    torch.manual_seed(0)
    reference = MultiTaskModel.from_tasks(small(), TASKS)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


@pytest.mark.parametrize("weighting", ["equal", "pcgrad"])
@pytest.mark.parametrize(
    "architecture", [["model.architecture=mmoe", "model.architecture_args.num_experts=2"], ["model.architecture=cross_stitch"], ["model.architecture=mtan"]]
)
def test_each_architecture_trains_end_to_end(tmp_path, tiny_overrides, architecture, weighting):
    cfg = load_experiment(MTL, [*tiny_overrides, *architecture, f"weighting.name={weighting}"])
    trainer = build_trainer(cfg, tmp_path)
    model = trainer.problem.model
    assert type(model).__name__ == {"mmoe": "MMoE", "cross_stitch": "CrossStitch", "mtan": "MTAN"}[cfg.model.architecture]
    before = [p.detach().clone() for p in model.shared_parameters()]
    result = trainer.fit()
    after = list(model.shared_parameters())
    assert {"test/left/accuracy", "test/right/accuracy", "val/mean/accuracy"} <= set(result["metrics"])
    assert result["steps"] == 6
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert all(torch.isfinite(p).all() for p in after)


def test_architecture_choice_is_recorded(tmp_path, tiny_overrides):
    cfg = load_experiment(MTL, [*tiny_overrides, "model.architecture=mmoe", "model.architecture_args.num_experts=2"])
    record = run_experiment(cfg, tmp_path)
    assert record["config"]["model"]["architecture"] == "mmoe"
    assert record["config"]["model"]["architecture_args"] == {"num_experts": 2}


def test_mmoe_with_representation_level_mgda(tmp_path, tiny_overrides):
    cfg = load_experiment(
        MTL, [*tiny_overrides, "model.architecture=mmoe", "model.architecture_args.num_experts=2",
              "weighting.name=mgda", "weighting.args.target=representation"]
    )
    trainer = build_trainer(cfg, tmp_path)
    before = [p.detach().clone() for p in trainer.problem.model.shared_parameters()]
    trainer.fit()
    after = list(trainer.problem.model.shared_parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("architecture", ["cross_stitch", "mtan"])
def test_representation_weighting_without_a_representation_is_a_clear_config_error(tmp_path, tiny_overrides, architecture):
    cfg = load_experiment(MTL, [*tiny_overrides, f"model.architecture={architecture}", "weighting.name=mgda", "weighting.args.target=representation"])
    with pytest.raises(ConfigError, match=f"architecture '{architecture}' has no single shared representation"):
        build_trainer(cfg, tmp_path)
    # a method whose paper default is the representation (IMTL-G) is refused too, without an explicit target
    cfg = load_experiment(MTL, [*tiny_overrides, f"model.architecture={architecture}", "weighting.name=imtl_g"])
    with pytest.raises(ConfigError, match="no single shared representation"):
        build_trainer(cfg, tmp_path)


def test_outside_the_harness_the_aggregator_error_is_reached():
    model = make("cross_stitch")
    outputs, representation = model(torch.randn(3, *SHAPE), return_features=True)
    losses = {n: o.pow(2).mean() for n, o in outputs.items()}
    weighting = GradientAggregation(AGGREGATORS["mgda"](), target="representation")
    with pytest.raises(ValueError, match="needs the shared representation"):
        weighting.backward(
            losses, shared_parameters=list(model.shared_parameters()),
            task_parameters=list(model.task_specific_parameters()), representation=representation,
        )


def test_architecture_is_refused_for_domain_adaptation(tmp_path, tiny_overrides):
    cfg = load_experiment("configs/experiments/digits_da.yaml", [*tiny_overrides, "model.architecture=mmoe"])
    with pytest.raises(ConfigError, match="multitask problems only"):
        build_trainer(cfg, tmp_path)


def test_unknown_architecture_argument_is_a_config_error(tmp_path, tiny_overrides):
    cfg = load_experiment(MTL, [*tiny_overrides, "model.architecture=cross_stitch", "model.architecture_args.alpha=0.5"])
    with pytest.raises(ConfigError, match="has no argument 'alpha'; valid arguments: alpha_self"):
        build_trainer(cfg, tmp_path)
