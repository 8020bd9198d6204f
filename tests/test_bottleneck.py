"""The Linear–BN–ReLU–Dropout bottleneck (mtl.WithBottleneck) and its config keys."""
import pytest
import torch

from adapt.losses.afn import stepwise_feature_norm_loss
from benchmarks.config import ConfigError, load_experiment
from benchmarks.experiment import build_trainer, check_backbone_export, run_experiment
from mtl import LeNet, WithBottleneck
from mtl.finetune import named_blocks

DA = "configs/experiments/digits_da.yaml"


def test_shape_stages_and_blocks():
    torch.manual_seed(0)
    model = WithBottleneck(LeNet(), dim=32, dropout=0.5).eval()
    x = torch.randn(5, 1, 28, 28)
    assert model.out_features == 32 and model(x).shape == (5, 32)
    out = x
    for stage in model.stages():
        out = stage(out)
    assert torch.equal(out, model(x))  # the stages compose to the forward pass
    names = [name for name, _ in named_blocks(model)]
    assert names[-1] == "bottleneck" and all(n.startswith("backbone.") for n in names[:-1])
    assert sum(p.numel() for _, b in named_blocks(model) for p in b.parameters()) == sum(p.numel() for p in model.parameters())


def test_the_batch_norm_removes_the_scale_of_the_backbone():
    """In training mode the bottleneck output is invariant to scaling the backbone's features by c > 0."""
    torch.manual_seed(0)
    features = torch.randn(16, 8)
    head = WithBottleneck(_Features(8), dim=4).train()
    assert torch.allclose(head(features), head(features * 1000.0), atol=1e-4)
    changed = features.clone()
    changed[0] *= 3.0  # rescaling one example is a real change of the batch, not of its scale
    assert not torch.allclose(head(features), head(changed), atol=1e-2)


class _Features(torch.nn.Module):
    def __init__(self, size):
        super().__init__()
        self.out_features = size

    def forward(self, x):
        return x


def test_afn_through_the_bottleneck_does_not_blow_up_the_backbone():
    """Why AFN reads a batch-normalised bottleneck (Xu et al. 2019): straight on the LeNet features the
    norm-enlarging gradient feeds back through every layer and the activations explode geometrically."""
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    growth = {}
    for bottleneck in (False, True):
        torch.manual_seed(0)
        backbone = LeNet()
        model = WithBottleneck(backbone, 256, 0.5) if bottleneck else backbone
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
        with torch.no_grad():
            before = backbone.eval()(x).norm(dim=1).mean()
        model.train()
        for _ in range(150):
            loss = 0.05 * stepwise_feature_norm_loss(model(x), delta=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            growth[bottleneck] = (backbone.eval()(x).norm(dim=1).mean() / before).item()
    assert growth[False] > 1e3
    assert growth[True] < 5.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.bottleneck_dim=0"], r"'model.bottleneck_dim' is 0; it must be a number ≥ 1"),
        (["model.bottleneck_dim=16", "model.bottleneck_dropout=1.0"], r"'model.bottleneck_dropout' is 1.0; it must be a number in \[0, 1\)"),
        (["model.bottleneck_dropout=0.5"], "needs model.bottleneck_dim"),
    ],
)
def test_bad_bottleneck_settings_are_refused(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_trainer(load_experiment(DA, overrides), tmp_path)


def test_save_backbone_refuses_a_bottleneck():
    with pytest.raises(ConfigError, match="bottleneck_dim"):
        check_backbone_export(load_experiment(DA, ["model.bottleneck_dim=16", "train.save_backbone=true"]))


def test_afn_with_a_bottleneck_runs_end_to_end(tmp_path, tiny_overrides):
    cfg = load_experiment(DA, [*tiny_overrides, "method.name=afn", "model.bottleneck_dim=16", "model.bottleneck_dropout=0.5"])
    trainer = build_trainer(cfg, tmp_path / "probe")
    assert isinstance(trainer.problem.model.backbone, WithBottleneck)
    assert trainer.problem.model.backbone.out_features == 16
    record = run_experiment(cfg, tmp_path / "run")
    assert 0.0 <= record["metrics"]["test/target/digit/accuracy"] <= 1.0
