"""Fine-tuning in configs: phases (feature extraction, unfreezing, layer-wise learning rates),
backbone export and reload, few-label subsets, and model stacking."""
import pytest
import torch
from torch import nn

from benchmarks.config import ConfigError, load_experiment
from benchmarks.experiment import build_trainer, labelled_subset, run_experiment
from benchmarks.datasets import load_dataset
from benchmarks.phases import Phase, PhasePlan
from mtl import ConcatBackbones, LeNet, SmallConvNet, named_blocks

MTL = "configs/experiments/multidigits_mtl.yaml"
DA = "configs/experiments/digits_da.yaml"
DIGITS = [  # plain supervised training on the embedded source digits (a one-task multitask problem)
    "data.dataset=digits",
    "train.selection_metric=val/digit/accuracy",
    "report=[test/digit/accuracy]",
]


def _phases(*phases: str) -> str:
    return "train.phases=[" + ", ".join(phases) + "]"


def _backbone_state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.problem.model.backbone.state_dict().items()}


# ------------------------------------------------------------------ the plan itself
def test_gradual_unfreezing_adds_one_block_per_period_and_caps_at_all():
    backbone = SmallConvNet(1, 8)  # 3 blocks: conv0, conv1, fc
    plan = PhasePlan(backbone, [Phase(epochs=2, train_blocks=0), Phase(epochs=5, train_blocks=1, unfreeze_every=2)])
    assert [plan.trainable_blocks(e) for e in range(7)] == [0, 0, 1, 1, 2, 2, 3]
    blocks = [b for _, b in named_blocks(backbone)]
    for epoch in range(7):
        k = plan.apply(epoch)
        trains = [all(p.requires_grad for p in b.parameters()) for b in blocks]
        frozen = [not any(p.requires_grad for p in b.parameters()) for b in blocks]
        assert trains == [i >= 3 - k for i in range(3)], epoch
        assert all(t or f for t, f in zip(trains, frozen))  # never a half-frozen block
    with pytest.raises(ValueError, match="past the last phase"):
        plan.locate(7)


def test_layer_decay_scales_each_block_by_its_depth_from_the_top():
    backbone = SmallConvNet(1, 8)
    plan = PhasePlan(backbone, [Phase(epochs=1, lr_scale=0.1, layer_decay=0.5)])
    groups = plan.param_groups([nn.Parameter(torch.zeros(1))])
    assert [g.get("block_depth") for g in groups] == [None, 1, 2, 3]
    assert plan.lr_multipliers(0, groups) == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    flat = PhasePlan(backbone, [Phase(epochs=1, backbone_lr_scale=0.1)])
    assert flat.lr_multipliers(0, groups) == pytest.approx([1.0, 0.1, 0.1, 0.1])


@pytest.mark.parametrize(
    "phase, message",
    [
        (Phase(epochs=1, train_blocks=4), "has 3 blocks"),
        (Phase(epochs=0), "at least 1"),
        (Phase(epochs=1, lr_scale=0.0), "lr_scale must be positive"),
        (Phase(epochs=1, unfreeze_every=0), "unfreeze_every"),
        (Phase(epochs=1, layer_decay=-1.0), "layer_decay"),
        (Phase(epochs=1, backbone_lr_scale=0.0), "backbone_lr_scale"),
    ],
)
def test_bad_phases_are_refused_with_the_key(phase, message):
    with pytest.raises(ConfigError, match=message):
        PhasePlan(SmallConvNet(1, 8), [phase])


def test_phase_epochs_must_add_up_to_train_epochs(tmp_path, tiny_overrides):
    cfg = load_experiment(MTL, [*tiny_overrides, "train.epochs=3", _phases("{epochs: 1, train_blocks: 0}", "{epochs: 1}")])
    with pytest.raises(ConfigError, match=r"cover 2 epochs but train.epochs=3; set train.epochs=2"):
        build_trainer(cfg, tmp_path)


def test_unknown_phase_key_names_the_valid_ones():
    with pytest.raises(ConfigError, match="'epoch'.*train.phases.*epochs, layer_decay, lr_scale, train_blocks"):
        load_experiment(MTL, [_phases("{epoch: 1}")])


# ------------------------------------------------------------------ in the engine
def test_feature_extraction_phase_leaves_backbone_and_bn_statistics_untouched(tmp_path, tiny_overrides):
    cfg = load_experiment(MTL, [*tiny_overrides, "train.epochs=2", _phases("{epochs: 1, train_blocks: 0}", "{epochs: 1}")])
    trainer = build_trainer(cfg, tmp_path)
    before = _backbone_state(trainer)
    heads_before = [p.detach().clone() for p in trainer.problem.model.heads.parameters()]
    trainer.epochs = trainer.phase_plan.total_epochs = 1  # stop after the frozen phase
    trainer.total_steps = trainer.steps_per_epoch
    trainer.fit()
    after = _backbone_state(trainer)
    for key in before:  # weights, running means/variances and num_batches_tracked alike
        assert torch.equal(before[key], after[key]), key
    assert all(p.grad is None for p in trainer.problem.model.backbone.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(heads_before, trainer.problem.model.heads.parameters()))


def test_unfrozen_phase_trains_the_backbone_at_the_scaled_learning_rates(tmp_path, tiny_overrides):
    cfg = load_experiment(MTL, [
        *tiny_overrides, "train.epochs=2", "optim.lr=0.01",
        _phases("{epochs: 1, train_blocks: 0}", "{epochs: 1, train_blocks: 2, lr_scale: 0.5, layer_decay: 0.1}"),
    ])
    trainer = build_trainer(cfg, tmp_path)
    before = _backbone_state(trainer)
    trainer.fit()
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups if "name" in g}
    assert lrs["heads"] == pytest.approx(0.005)
    depth_lr = sorted(((g["block_depth"], g["lr"]) for g in trainer.optimizer.param_groups if "block_depth" in g))
    assert depth_lr == [(1, pytest.approx(5e-4)), (2, pytest.approx(5e-5)), (3, pytest.approx(5e-6))]
    after = _backbone_state(trainer)
    names = [n for n, _ in named_blocks(trainer.problem.model.backbone)]
    assert names[0].startswith("conv.0")
    # the bottom block stayed frozen (top 2 of 3 trained): its weights and BN statistics did not move
    assert torch.equal(before["conv.0.weight"], after["conv.0.weight"])
    assert torch.equal(before["conv.1.running_mean"], after["conv.1.running_mean"])
    assert not torch.equal(before["fc.1.weight"], after["fc.1.weight"])
    assert not torch.equal(before["conv.4.running_mean"], after["conv.4.running_mean"])


def test_resume_inside_a_later_phase_is_exact(tmp_path, tiny_overrides):
    cfg = load_experiment(MTL, [
        *tiny_overrides, "train.epochs=3",
        _phases("{epochs: 1, train_blocks: 0}", "{epochs: 2, train_blocks: 1, unfreeze_every: 1, layer_decay: 0.5}"),
    ])
    straight = build_trainer(cfg, tmp_path / "straight")
    straight.fit()

    class Stop(Exception):
        pass

    def stop_after_two(trainer, epoch):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        build_trainer(cfg, tmp_path / "resumed", callbacks=[stop_after_two]).fit()
    torch.manual_seed(999)
    resumed = build_trainer(cfg, tmp_path / "resumed")
    resumed.fit()
    a, b = straight.problem.state_dict(), resumed.problem.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------ export, reload, few labels
def test_saved_backbone_reloads_exactly_through_model_weights(tmp_path, tiny_overrides):
    record = run_experiment(load_experiment(MTL, [*tiny_overrides, *DIGITS, "train.save_backbone=true"]), tmp_path / "pre")
    path = tmp_path / "pre" / record["backbone_path"]
    cfg = load_experiment(MTL, [*tiny_overrides, *DIGITS, f"model.weights={path}"])
    trainer = build_trainer(cfg, tmp_path / "transfer")
    saved = torch.load(path, weights_only=True)["state_dict"]
    loaded = trainer.problem.model.backbone.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_a_checkpoint_that_does_not_fit_is_an_error_listing_the_mismatch(tmp_path, tiny_overrides):
    record = run_experiment(load_experiment(MTL, [*tiny_overrides, *DIGITS, "train.save_backbone=true"]), tmp_path / "pre")
    path = tmp_path / "pre" / record["backbone_path"]
    cfg = load_experiment(MTL, [*tiny_overrides, f"model.weights={path}"])  # 12×12 canvases: other fc size
    with pytest.raises(ConfigError, match=r"does not fit.*fc\.1\.weight"):
        build_trainer(cfg, tmp_path / "transfer")
    with pytest.raises(ConfigError, match="checkpoint file not found"):
        build_trainer(load_experiment(MTL, [*tiny_overrides, f"model.weights={tmp_path / 'missing.pt'}"]), tmp_path / "x")


def test_labels_per_class_keeps_a_balanced_seeded_subset():
    dataset = load_dataset("digits", None, 0)
    subset = labelled_subset(dataset, 5, data_seed=0)
    counts = torch.bincount(subset.labels["digit"], minlength=10)
    assert counts.tolist() == [5] * 10
    again = labelled_subset(dataset, 5, data_seed=0)
    assert torch.equal(subset.images, again.images)
    other = labelled_subset(dataset, 5, data_seed=1)
    assert not torch.equal(subset.images, other.images)
    # every kept image is one of the training images, with its own label
    flat = dataset.train.images.flatten(1)
    for image, label in zip(subset.images, subset.labels["digit"]):
        matches = (flat == image.flatten()).all(1).nonzero().flatten()
        assert label in dataset.train.labels["digit"][matches]
    with pytest.raises(ConfigError, match="has only"):
        labelled_subset(dataset, 10_000, data_seed=0)


def test_labels_per_class_reaches_the_training_split(tmp_path, tiny_overrides):
    cfg = load_experiment(MTL, [*tiny_overrides, *DIGITS, "data.labels_per_class=4", "data.val_fraction=0.25"])
    trainer = build_trainer(cfg, tmp_path)
    train, val = trainer.problem.train_split, trainer.problem.val_split
    assert len(train.images) + len(val.images) == 40
    labels = torch.cat([train.labels["digit"], val.labels["digit"]])
    assert torch.bincount(labels, minlength=10).tolist() == [4] * 10
    with pytest.raises(ConfigError, match="single-task"):
        build_trainer(load_experiment(MTL, [*tiny_overrides, "data.labels_per_class=4"]), tmp_path / "x")


# ------------------------------------------------------------------ stacking
def test_concat_backbones_is_the_concatenation_of_its_members():
    torch.manual_seed(0)
    a, b = LeNet(1, 28).eval(), SmallConvNet(1, 28, feature_dim=16).eval()
    stack = ConcatBackbones([a, b]).eval()
    x = torch.randn(3, 1, 28, 28)
    assert stack.out_features == 516
    assert torch.equal(stack(x), torch.cat([a(x), b(x)], dim=1))
    with pytest.raises(ValueError, match="at least two"):
        ConcatBackbones([a])


def test_stack_blocks_align_at_the_top():
    a, b = LeNet(1, 28), SmallConvNet(1, 28)
    names = [n for n, _ in named_blocks(ConcatBackbones([a, b]))]
    assert len(names) == 3
    assert names[-1] == "members.0.fc.0-3+members.1.fc.0-3"


def test_stacked_backbones_train_from_a_config(tmp_path, tiny_overrides):
    cfg = load_experiment(DA, [*tiny_overrides, "method.name=dann", "model.stack=[{backbone: small_convnet, args: {feature_dim: 32}}]"])
    trainer = build_trainer(cfg, tmp_path)
    backbone = trainer.problem.model.backbone
    assert isinstance(backbone, ConcatBackbones) and backbone.out_features == 128 + 32
    before = [p.detach().clone() for p in backbone.members[1].parameters()]
    trainer.fit()
    assert any(not torch.equal(x, p) for x, p in zip(before, backbone.members[1].parameters()))
    with pytest.raises(ConfigError, match="save_backbone"):
        run_experiment(load_experiment(DA, [*tiny_overrides, "train.save_backbone=true",
                                            "model.stack=[{backbone: small_convnet}]"]), tmp_path / "y")
