"""mtl.pretrained: torchvision backbones without classifiers, strict checkpoint loading.

Nothing here downloads: weights are None or checkpoints the tests write.
"""
import logging
import sys

import pytest
import torch
import torchvision.models as tvm

from mtl import ClassificationTask, MultiTaskModel
from mtl.backbones import LeNet
from mtl.pretrained import (
    CheckpointMismatchError,
    load_backbone_state,
    pretrained_backbone,
    resolve_weights,
    save_backbone,
    supported_backbones,
)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("name, size", [("resnet18", 512), ("mobilenet_v3_small", 576)])
def test_out_features_match_a_real_forward(name, size):
    torch.manual_seed(0)
    backbone = pretrained_backbone(name).eval()
    assert backbone.out_features == size
    out = backbone(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, size)
    model = MultiTaskModel.from_tasks(backbone, {"a": ClassificationTask("a", num_classes=3)})
    assert model(torch.randn(2, 3, 32, 32))["a"].shape == (2, 3)


@pytest.mark.parametrize(
    "name, size",
    [("resnet50", 2048), ("mobilenet_v3_large", 960), ("efficientnet_b0", 1280), ("convnext_tiny", 768), ("vit_b_16", 768)],
)
def test_out_features_of_large_models_on_the_meta_device(name, size):
    with torch.device("meta"):  # no memory, no compute: shapes only
        backbone = pretrained_backbone(name)
        out = backbone(torch.empty(2, 3, 224, 224))
    assert backbone.out_features == size
    assert out.shape == (2, size)


def test_supported_names_include_the_issue_list():
    names = supported_backbones()
    for name in ("resnet18", "resnet50", "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0",
                 "convnext_tiny", "vit_b_16", "lenet"):
        assert name in names
    with pytest.raises(ValueError, match="unknown backbone 'alexnet'"):
        pretrained_backbone("alexnet")


def test_weight_names_resolve_without_downloading():
    assert resolve_weights("resnet18", "DEFAULT") is tvm.ResNet18_Weights.IMAGENET1K_V1
    assert resolve_weights("resnet50", "IMAGENET1K_V2") is tvm.ResNet50_Weights.IMAGENET1K_V2
    assert resolve_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V1") is tvm.ResNet50_Weights.IMAGENET1K_V1
    assert resolve_weights("vit_b_16", tvm.ViT_B_16_Weights.DEFAULT) is tvm.ViT_B_16_Weights.IMAGENET1K_V1
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        resolve_weights("resnet18", "IMAGENET1K_V7")
    with pytest.raises(ValueError, match="another architecture"):
        resolve_weights("resnet18", tvm.ResNet50_Weights.DEFAULT)
    with pytest.raises(ValueError, match="not weights for resnet18"):
        resolve_weights("resnet18", "ResNet50_Weights.IMAGENET1K_V1")
    with pytest.raises(ValueError, match="no published weights"):
        pretrained_backbone("lenet", weights="DEFAULT")


def test_round_trip_through_save_backbone_is_exact(tmp_path):
    torch.manual_seed(0)
    backbone = pretrained_backbone("resnet18")
    backbone.train()
    with torch.no_grad():
        backbone(torch.randn(4, 3, 32, 32))  # move the BN statistics away from their initial values
    path = save_backbone(backbone, tmp_path / "sub" / "r18.pt")
    assert [p.name for p in path.parent.iterdir()] == ["r18.pt"]  # the temporary file is gone

    again = pretrained_backbone("resnet18", weights=path)
    _same_state(backbone, again)
    by_path_alone = pretrained_backbone(str(path))
    _same_state(backbone, by_path_alone)
    assert by_path_alone.out_features == 512
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(backbone.eval()(x), again.eval()(x))


def test_lenet_pretrained_here_reloads_for_transfer(tmp_path):
    torch.manual_seed(0)
    mnist = LeNet(in_channels=1, image_size=28)
    path = save_backbone(mnist, tmp_path / "lenet_mnist.pt", name="lenet", kwargs={"in_channels": 1, "image_size": 28})
    usps = pretrained_backbone(path)  # name and constructor arguments come from the file
    assert isinstance(usps, LeNet) and usps.out_features == 500
    _same_state(mnist, usps)  # LeNet's own `fc` is part of the backbone: nothing dropped
    assert usps.backbone_spec == {"name": "lenet", "kwargs": {"in_channels": 1, "image_size": 28}}
    with pytest.raises(ValueError, match="holds a 'lenet' backbone, not 'resnet18'"):
        pretrained_backbone("resnet18", weights=path)

    plain = tmp_path / "plain.pt"
    torch.save(mnist.state_dict(), plain)
    with pytest.raises(ValueError, match="pass the name"):
        pretrained_backbone(plain)
    _same_state(mnist, pretrained_backbone("lenet", weights=str(plain)))


def test_save_backbone_refuses_kwargs_that_would_not_load(tmp_path):
    with pytest.raises(TypeError, match="kwargs.act"):
        save_backbone(LeNet(), tmp_path / "x.pt", name="lenet", kwargs={"act": torch.nn.ReLU})
    assert list(tmp_path.iterdir()) == []


def _lenet_state():
    torch.manual_seed(1)
    return LeNet().state_dict()


def test_missing_key_is_an_error_naming_it(tmp_path):
    state = _lenet_state()
    del state["conv.3.bias"]
    path = tmp_path / "missing.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): conv\.3\.bias") as info:
        pretrained_backbone("lenet", weights=path)
    assert info.value.missing == ["conv.3.bias"] and not info.value.unexpected and not info.value.mismatched


def test_unexpected_key_is_an_error_naming_it(tmp_path):
    state = _lenet_state()
    state["conv.9.weight"] = torch.zeros(3)
    path = tmp_path / "unexpected.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys \(1\): conv\.9\.weight"):
        pretrained_backbone("lenet", weights=path)


def test_wrong_shape_is_an_error_naming_the_key_and_shapes(tmp_path):
    state = _lenet_state()
    state["fc.1.weight"] = torch.zeros(10, 800)
    path = tmp_path / "shape.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"fc\.1\.weight: checkpoint \(10, 800\) vs model \(500, 800\)"):
        pretrained_backbone("lenet", weights=path)


def test_a_failed_load_changes_nothing():
    backbone = LeNet()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    state = _lenet_state()
    state["fc.1.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointMismatchError):
        load_backbone_state(backbone, state)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("name, dropped", [
    ("resnet18", ["fc.bias", "fc.weight"]),
    ("mobilenet_v3_small", ["classifier.0.bias", "classifier.0.weight", "classifier.3.bias", "classifier.3.weight"]),
])
def test_classifier_keys_of_a_full_checkpoint_are_dropped_and_reported(tmp_path, caplog, name, dropped):
    torch.manual_seed(0)
    full = tvm.get_model(name, weights=None, num_classes=7)  # a fine-tuned classifier: any class count
    path = tmp_path / f"{name}.pth"
    torch.save(full.state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="mtl.pretrained"):
        backbone = pretrained_backbone(name, weights=path)
    message = " ".join(r.getMessage() for r in caplog.records)
    assert f"dropped {len(dropped)} classifier key(s)" in message
    for key in dropped:
        assert key in message
    expected = {k: v for k, v in full.state_dict().items() if k not in dropped}
    got = backbone.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in got)


def test_convnext_keeps_its_final_norm_and_drops_only_the_linear():
    with torch.device("meta"):
        backbone = pretrained_backbone("convnext_tiny")
    keys = backbone.state_dict().keys()
    assert "classifier.0.weight" in keys and "classifier.2.weight" not in keys


def test_multitask_model_checkpoint_gives_its_backbone(tmp_path, caplog):
    torch.manual_seed(0)
    model = MultiTaskModel.from_tasks(LeNet(), {"digit": ClassificationTask("digit", num_classes=10)})
    path = tmp_path / "mtl.pt"
    torch.save(model.state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="mtl.pretrained"):
        backbone = pretrained_backbone("lenet", weights=path)
    assert "heads.digit.weight" in caplog.text
    _same_state(model.backbone, backbone)


def test_missing_file_and_unknown_weights():
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        pretrained_backbone("resnet18", weights="/nowhere.pt")
    with pytest.raises(ValueError, match="unknown weights"):
        pretrained_backbone("resnet18", weights="IMAGENET_V9")


def test_timm_without_timm_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import fails whether or not timm is installed
    with pytest.raises(ImportError, match="pip install timm"):
        pretrained_backbone("timm:resnet18")


def test_frozen_pretrained_backbone_keeps_statistics():
    torch.manual_seed(0)
    backbone = pretrained_backbone("resnet18", trainable=False)
    assert not any(p.requires_grad for p in backbone.parameters())
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone.train()
    backbone(torch.randn(2, 3, 32, 32))
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert backbone.training
