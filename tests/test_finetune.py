"""mtl.finetune: freezing, frozen BatchNorm, blocks, layer-wise learning rates,
gradual unfreezing, feature extraction and linear probes."""
import pytest
import torch
from torch import nn

from mtl import ClassificationTask, MultiTaskModel
from mtl.backbones import BACKBONES, SmallConvNet
from mtl.finetune import (
    GradualUnfreezing,
    blocks,
    extract_features,
    freeze,
    keep_frozen_batchnorm_eval,
    layerwise_param_groups,
    linear_probe,
    named_blocks,
    unfreeze,
    unfreeze_top,
)
from mtl.pretrained import pretrained_backbone

TASKS = {"a": ClassificationTask("a", num_classes=3), "b": ClassificationTask("b", num_classes=2)}


def _bn_state(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def _small_model():
    torch.manual_seed(0)
    return MultiTaskModel.from_tasks(SmallConvNet(in_channels=1, image_size=8), TASKS)


def _loss(model, x):
    out = model(x)
    return out["a"].sum() + out["b"].sum()


def test_frozen_backbone_gets_no_gradient_and_keeps_bn_statistics():
    model = _small_model()
    freeze(model.backbone)
    handle = keep_frozen_batchnorm_eval(model)
    assert len(handle) == 2
    stats = _bn_state(model.backbone)
    model.train()
    _loss(model, torch.randn(4, 1, 8, 8)).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads.parameters())
    for key, value in _bn_state(model.backbone).items():
        assert torch.equal(value, stats[key]), key
    # the flag the user set is untouched; only the computation is eval-mode
    assert all(m.training for m in model.modules())


def test_frozen_bn_output_equals_eval_mode_output():
    model = _small_model()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        reference = model.eval()(x)["a"]
    freeze(model.backbone)
    keep_frozen_batchnorm_eval(model)
    model.train()
    model.backbone.fc[-1].p = 0.0  # no dropout randomness in this comparison
    with torch.no_grad():
        assert torch.allclose(model(x)["a"], reference)


def test_unfrozen_bn_updates_again_and_removing_the_hooks_restores_plain_behaviour():
    model = _small_model()
    freeze(model.backbone)
    handle = keep_frozen_batchnorm_eval(model)
    model.train()
    stats = _bn_state(model.backbone)
    unfreeze(model.backbone)  # no train() call needed: the hook reads requires_grad at every call
    model(torch.randn(4, 1, 8, 8))
    assert not torch.equal(_bn_state(model.backbone)["conv.1.running_mean"], stats["conv.1.running_mean"])

    freeze(model.backbone)
    handle.remove()
    stats = _bn_state(model.backbone)
    model(torch.randn(4, 1, 8, 8))
    assert not torch.equal(_bn_state(model.backbone)["conv.1.running_mean"], stats["conv.1.running_mean"])


def test_bn_without_affine_parameters_follows_freeze():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, affine=False))
    keep_frozen_batchnorm_eval(net)
    keep_frozen_batchnorm_eval(net)  # idempotent: one pair of hooks
    assert len(net[1]._forward_pre_hooks) == 1
    freeze(net)
    net.train()
    stats = _bn_state(net)
    net(torch.randn(2, 1, 5, 5))
    assert all(torch.equal(v, stats[k]) for k, v in _bn_state(net).items())
    unfreeze(net)
    net(torch.randn(2, 1, 5, 5))
    assert not torch.equal(_bn_state(net)["1.running_mean"], stats["1.running_mean"])


def _cover(backbone, parts):
    ids = [id(p) for part in parts for p in part.parameters()]
    assert len(ids) == len(set(ids)), "a parameter is in two blocks"
    assert set(ids) == {id(p) for p in backbone.parameters()}, "a parameter is in no block"


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_blocks_of_the_small_backbones_cover_every_parameter_once(name):
    backbone = BACKBONES[name]()
    parts = blocks(backbone)
    assert len(parts) >= 2
    _cover(backbone, parts)


@pytest.mark.parametrize("name, count, last", [
    ("resnet18", 5, "layer4"),
    ("mobilenet_v3_small", 13, "features.12"),
])
def test_blocks_of_torchvision_backbones(name, count, last):
    backbone = pretrained_backbone(name)
    named = named_blocks(backbone)
    assert len(named) == count and named[-1][0] == last
    _cover(backbone, [b for _, b in named])


@pytest.mark.parametrize("name, count", [
    ("resnet50", 5), ("mobilenet_v3_large", 17), ("efficientnet_b0", 9), ("convnext_tiny", 5), ("vit_b_16", 13),
])
def test_blocks_of_large_backbones_on_the_meta_device(name, count):
    with torch.device("meta"):
        backbone = pretrained_backbone(name)
    parts = blocks(backbone)
    assert len(parts) == count
    _cover(backbone, parts)


def test_blocks_refuses_unknown_structures():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)

    with pytest.raises(TypeError, match="blocks="):
        blocks(Custom())


def _names(backbone, prefixes):
    return {n for n, _ in backbone.named_parameters() if n.startswith(prefixes)}


def test_unfreeze_top_trains_exactly_the_last_k_blocks():
    backbone = pretrained_backbone("resnet18")
    changed = unfreeze_top(backbone, 2)
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == _names(backbone, ("layer3.", "layer4."))
    assert set(changed) == _names(backbone, ("conv1.", "bn1.", "layer1.", "layer2."))
    assert unfreeze_top(backbone, 2) == []
    with pytest.raises(ValueError, match="number of blocks"):
        unfreeze_top(backbone, 6)


def test_gradual_unfreezing_changes_the_intended_parameters_at_the_intended_epochs():
    backbone = pretrained_backbone("resnet18")
    freeze(backbone)
    schedule = GradualUnfreezing(backbone, {0: 1, 2: 3, 4: None})
    expected = {
        0: _names(backbone, ("layer4.",)),
        1: set(),
        2: _names(backbone, ("layer2.", "layer3.")),
        3: set(),
        4: _names(backbone, ("conv1.", "bn1.", "layer1.")),
        5: set(),
    }
    for epoch, names in expected.items():
        changed = schedule.step(epoch)
        assert set(changed) == names, epoch
        assert all(backbone.get_parameter(n).requires_grad for n in changed)
    assert all(p.requires_grad for p in backbone.parameters())
    # setting the state is idempotent, so resuming at epoch 2 rebuilds the epoch-2 state
    schedule.step(2)
    assert {n for n, p in backbone.named_parameters() if p.requires_grad} == _names(backbone, ("layer2.", "layer3.", "layer4."))


def test_gradual_unfreezing_validates_its_schedule():
    backbone = BACKBONES["lenet"]()
    with pytest.raises(ValueError, match="3 blocks"):
        GradualUnfreezing(backbone, {0: 4})
    with pytest.raises(ValueError, match="empty"):
        GradualUnfreezing(backbone, {})
    schedule = GradualUnfreezing(backbone, {2: 1})
    schedule.step(0)
    assert not any(p.requires_grad for p in backbone.parameters())  # before the first scheduled epoch


def test_layerwise_learning_rates_reach_the_optimiser():
    torch.manual_seed(0)
    model = MultiTaskModel.from_tasks(pretrained_backbone("resnet18"), TASKS)
    groups = layerwise_param_groups(model, base_lr=0.1, decay=0.5, weight_decay=1e-4)
    optimizer = torch.optim.SGD(groups, lr=123.0, momentum=0.9)
    got = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert got == pytest.approx({
        "heads": 0.1,
        "backbone.layer4": 0.05,
        "backbone.layer3": 0.025,
        "backbone.layer2": 0.0125,
        "backbone.layer1": 0.00625,
        "backbone.stem": 0.003125,
    })
    assert all(g["weight_decay"] == 1e-4 for g in optimizer.param_groups)
    names = {id(p): n for n, p in model.named_parameters()}
    by_group = {g["name"]: {names[id(p)] for p in g["params"]} for g in optimizer.param_groups}
    assert by_group["heads"] == {n for n in names.values() if n.startswith("heads.")}
    assert by_group["backbone.stem"] == {"backbone.conv1.weight", "backbone.bn1.weight", "backbone.bn1.bias"}
    assert sum(len(v) for v in by_group.values()) == len(names)


def test_frozen_parameters_in_the_optimiser_do_not_move():
    torch.manual_seed(0)
    model = MultiTaskModel.from_tasks(SmallConvNet(in_channels=1, image_size=8), TASKS)
    keep_frozen_batchnorm_eval(model)
    optimizer = torch.optim.SGD(layerwise_param_groups(model, 0.1, 0.3), lr=0.1, momentum=0.9, weight_decay=1e-2)
    schedule = GradualUnfreezing(model.backbone, {0: 1})
    schedule.step(0)
    frozen = {n: p.detach().clone() for n, p in model.backbone.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("conv.") for n in frozen)
    model.train()
    for _ in range(2):
        optimizer.zero_grad()
        _loss(model, torch.randn(4, 1, 8, 8)).backward()
        optimizer.step()
    for name, value in frozen.items():
        assert torch.equal(model.backbone.get_parameter(name), value), name


def test_extract_features_from_a_tensor_and_a_loader():
    torch.manual_seed(0)
    backbone = SmallConvNet(in_channels=1, image_size=8, dropout=0.5)
    backbone.train()
    x, y = torch.randn(10, 1, 8, 8), torch.arange(10) % 3
    feats = extract_features(backbone, x, batch_size=4)
    assert backbone.training  # mode restored
    with torch.no_grad():
        assert torch.allclose(feats, backbone.eval()(x), atol=1e-6)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=3)
    feats2, labels = extract_features(backbone, loader, return_labels=True)
    assert torch.allclose(feats2, feats, atol=1e-6) and torch.equal(labels, y)
    feats3 = extract_features(backbone, torch.utils.data.TensorDataset(x, y), batch_size=4)
    assert torch.allclose(feats3, feats, atol=1e-6)
    assert not feats.requires_grad


def test_linear_probe_beats_chance_on_separable_features():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=generator) * 4
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 16, generator=generator)
    accuracy = linear_probe(x[:200], y[:200], x[200:], y[200:], C=1.0)
    assert accuracy > 0.9  # chance is 1/3
    shuffled = linear_probe(x[:200], y[:200][torch.randperm(200, generator=generator)], x[200:], y[200:])
    assert shuffled < accuracy
    with pytest.raises(ValueError, match="differ in length"):
        linear_probe(x[:200], y[:100], x[200:], y[200:])
