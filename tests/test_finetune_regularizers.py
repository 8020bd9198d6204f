"""Fine-tuning regularisers (mtl/regularizers): L2-SP, BSS and DELTA, each checked against its
definition: values at the starting point, gradients, singular values from an independent
eigen-decomposition, feature-map distances computed layer by layer, and the attention weights."""
import copy

import pytest
import torch
from torch import nn

from mtl import LeNet
from mtl.regularizers import (
    DELTA,
    L2SP,
    BatchSpectralShrinkage,
    attention_weights,
    batch_spectral_shrinkage,
    default_feature_layers,
    feature_map_distance,
    l2_sp_penalty,
)


def _f(t):
    return float(t.detach())


# ------------------------------------------------------------------ L2-SP
def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def test_l2_sp_is_zero_at_the_starting_point_and_its_gradient_is_alpha_times_the_displacement():
    net = _net()
    start = {k: v.detach().clone() for k, v in net.named_parameters()}
    reg = L2SP(start, alpha=0.3, beta=0.0)
    assert _f(reg(dict(net.named_parameters()))) == 0.0
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    penalty = reg(dict(net.named_parameters()))
    grads = torch.autograd.grad(penalty, list(net.parameters()))
    for (name, p), g in zip(net.named_parameters(), grads):
        # Ω = α/2 ||w − w0||², so ∇Ω = α (w − w0) (= 2α′(w − w0) for Ω = α′||w − w0||², α′ = α/2)
        torch.testing.assert_close(g, 0.3 * (p - start[name]))
    displacement = sum(_f((p - start[n]).pow(2).sum()) for n, p in net.named_parameters())
    assert _f(penalty) == pytest.approx(0.15 * displacement, rel=1e-5)


def test_l2_sp_decays_the_new_parameters_with_beta():
    net, head = _net(), nn.Linear(5, 2)
    reg = L2SP({k: v.detach().clone() for k, v in net.named_parameters()}, alpha=0.1, beta=0.05)
    penalty = reg(dict(net.named_parameters()), head.parameters())
    grads = torch.autograd.grad(penalty, list(head.parameters()))
    for p, g in zip(head.parameters(), grads):
        torch.testing.assert_close(g, 0.05 * p)
    assert _f(penalty) == pytest.approx(0.025 * sum(_f(p.pow(2).sum()) for p in head.parameters()), rel=1e-5)


def test_l2_sp_refuses_other_parameters_and_keeps_its_starting_point_in_the_state_dict():
    net = _net()
    reg = L2SP({k: v.detach().clone() for k, v in net.named_parameters()})
    with pytest.raises(ValueError, match="missing: \\['3.bias'\\]"):
        reg({k: v for k, v in net.named_parameters() if k != "3.bias"})
    with pytest.raises(ValueError, match="non-negative"):
        L2SP({"w": torch.zeros(1)}, alpha=-1.0)
    with torch.no_grad():
        net[0].weight.add_(1.0)  # the copy is independent of later training
    fresh = L2SP({k: torch.zeros_like(v) for k, v in net.named_parameters()})
    fresh.load_state_dict(reg.state_dict())
    torch.testing.assert_close(fresh.starting_point.as_dict()["0.weight"], reg.starting_point.as_dict()["0.weight"])
    assert not torch.equal(reg.starting_point.as_dict()["0.weight"], net[0].weight)
    assert l2_sp_penalty({"w": torch.ones(3)}, {"w": torch.zeros(3)}).item() == pytest.approx(1.5)


# ------------------------------------------------------------------ BSS
def _smallest_squared_singular_values(features, k):
    """σ² are the eigenvalues of F Fᵀ (or Fᵀ F, whichever is smaller)."""
    gram = features @ features.T if features.shape[0] <= features.shape[1] else features.T @ features
    eigenvalues = torch.linalg.eigvalsh(gram.double())  # ascending
    return float(eigenvalues[:k].sum())


@pytest.mark.parametrize("shape", [(8, 20), (20, 6)])
@pytest.mark.parametrize("k", [1, 3])
def test_bss_is_the_sum_of_the_k_smallest_squared_singular_values(shape, k):
    features = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    value = batch_spectral_shrinkage(features, k)
    assert float(value) == pytest.approx(_smallest_squared_singular_values(features, k), rel=1e-4)
    svd = torch.linalg.svdvals(features)
    assert float(value) == pytest.approx(float(svd[-k:].pow(2).sum()), rel=1e-5)
    assert float(BatchSpectralShrinkage(k=k, trade_off=0.2)(features)) == pytest.approx(0.2 * float(value), rel=1e-6)


def test_bss_is_rotation_invariant_quadratic_and_checked():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(10, 6, generator=g)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    base = batch_spectral_shrinkage(features, 2)
    assert float(batch_spectral_shrinkage(features @ q, 2)) == pytest.approx(float(base), rel=1e-4)
    assert float(batch_spectral_shrinkage(3 * features, 2)) == pytest.approx(9 * float(base), rel=1e-4)
    with pytest.raises(ValueError, match="only 6 singular values"):
        batch_spectral_shrinkage(features, 7)
    with pytest.raises(ValueError, match="at least 1"):
        BatchSpectralShrinkage(k=0)


def test_a_gradient_step_on_bss_shrinks_only_the_smallest_singular_value():
    features = torch.randn(12, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64, requires_grad=True)
    reg = BatchSpectralShrinkage(k=1, trade_off=1.0)
    (grad,) = torch.autograd.grad(reg(features), [features])
    lr = 0.1
    before = torch.linalg.svdvals(features.detach())
    after = torch.linalg.svdvals(features.detach() - lr * grad)
    # ∇σ²_min = 2σ_min u vᵀ: the step scales σ_min by (1 − 2·lr) and leaves the others alone
    torch.testing.assert_close(after[:-1], before[:-1])
    assert float(after[-1]) == pytest.approx(float(before[-1]) * (1 - 2 * lr), rel=1e-9)


# ------------------------------------------------------------------ DELTA
class _Net(nn.Module):
    """Two conv blocks and a linear layer, with layer outputs that are easy to compute by hand."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(3 * 6 * 6, 5)

    def maps(self, x):
        a = self.act1(self.conv1(x))
        b = self.act2(self.conv2(a))
        return a, b, self.fc(b.flatten(1))

    def forward(self, x):
        return self.maps(x)[-1]


def test_delta_is_zero_for_identical_networks_and_grows_when_the_network_moves():
    net = _Net()
    delta = DELTA(net, (1, 6, 6), layers=["act1", "act2"], alpha=1.0, beta=0.0)
    x = torch.rand(5, 1, 6, 6)
    assert _f(delta(net, x)) == 0.0
    with torch.no_grad():
        net.conv2.weight.add_(0.1)
    assert _f(delta(net, x)) > 0


def test_delta_with_uniform_attention_is_the_mean_squared_feature_map_distance():
    net = _Net()
    reference = copy.deepcopy(net)
    delta = DELTA(net, (1, 6, 6), layers=["act1", "act2", "fc"], alpha=0.5, beta=0.0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.rand(4, 1, 6, 6)
    expected = 0.0
    for current, ref in zip(net.maps(x), reference.maps(x)):
        per_channel = (current - ref).pow(2).flatten(2).mean(2) if current.dim() == 4 else (current - ref).pow(2)
        expected += 0.5 * _f(per_channel.sum())  # C · (1/C) = 1 for every channel
    assert _f(delta(net, x)) == pytest.approx(0.5 * expected, rel=1e-5)
    # capturing the training forward pass gives the same penalty as letting DELTA run it
    with delta.capture(net):
        net(x)
    assert _f(delta(net, x)) == pytest.approx(0.5 * expected, rel=1e-5)


def test_delta_gradients_reach_the_network_and_not_the_starting_point():
    net, head = _Net(), nn.Linear(5, 2)
    delta = DELTA(net, (1, 6, 6), layers=["act2"], alpha=1.0, beta=0.1)
    with torch.no_grad():
        net.conv1.weight.mul_(1.5)
    penalty = delta(net, torch.rand(3, 1, 6, 6), head.parameters())
    penalty.backward()
    assert net.conv1.weight.grad.abs().sum() > 0 and net.fc.weight.grad is None  # fc is above the watched layer
    torch.testing.assert_close(head.weight.grad, 0.1 * head.weight)
    assert all(not b.requires_grad for b in delta.buffers())


def test_feature_map_distance_weights_channels_and_attention_is_a_softmax_of_standardised_increases():
    current, reference = torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    current[:, 0] = 1.0  # only channel 0 differs: squared distance 1 at every position
    weights = torch.tensor([0.5, 0.25, 0.25])
    assert float(feature_map_distance(current, reference, weights)) == pytest.approx(0.5 * 2 * 3 * 0.5 * 1.0)
    increase = torch.tensor([3.0, 1.0, 0.0, 0.0])
    z = (increase - increase.mean()) / increase.std(unbiased=False)
    torch.testing.assert_close(attention_weights(increase, 5.0), torch.softmax(z / 5.0, 0))
    torch.testing.assert_close(attention_weights(torch.full((4,), 2.0)), torch.full((4,), 0.25))


def test_fit_attention_ranks_the_channels_the_task_needs_first():
    net = _Net()
    with torch.no_grad():
        net.conv2.weight[:, [0, 1, 3]] = 0  # everything above act1 reads its channel 2 only
    delta = DELTA(net, (1, 6, 6), layers=["act1"], alpha=1.0, beta=0.0)
    x = torch.rand(8, 1, 6, 6)
    with torch.no_grad():
        target = net(x)  # the loss is 0 for the intact network

    def loss_fn(output, y):
        return (output - y).pow(2).mean()

    (weights,) = delta.fit_attention(net, [(x, target), (x, target)], loss_fn)
    assert int(weights.argmax()) == 2 and float(weights.sum()) == pytest.approx(1.0)
    others = weights[[0, 1, 3]]
    torch.testing.assert_close(others, others[:1].expand(3))  # removing them costs nothing: equal weight
    # the definition: softmax over the channels of the standardised loss increases, temperature 5
    with torch.no_grad():
        a = net.act1(net.conv1(x))
        increase = torch.zeros(4)
        for j in range(4):
            removed = a.clone()
            removed[:, j] = 0
            increase[j] = loss_fn(net.fc(net.act2(net.conv2(removed)).flatten(1)), target)
    torch.testing.assert_close(weights, attention_weights(increase, 5.0))
    assert bool(delta.attention_fitted)
    # the penalty now counts a change of channel 2 more than the same change of channel 0
    with torch.no_grad():
        moved = copy.deepcopy(net)
        moved.conv1.bias[2] += 1.0
        other = copy.deepcopy(net)
        other.conv1.bias[0] += 1.0
    net.eval(); moved.eval(); other.eval()  # noqa: E702
    assert _f(delta(moved, x)) > _f(delta(other, x))


def test_delta_default_layers_end_each_block_and_the_state_round_trips():
    lenet = LeNet(3, 28)
    assert default_feature_layers(lenet) == ["conv.2", "conv.6", "fc.2"]  # after each ReLU, never a dropout
    delta = DELTA(lenet, (3, 28, 28))
    assert [w.numel() for w in delta.channel_weights()] == [20, 50, 500]
    fresh = DELTA(LeNet(3, 28), (3, 28, 28))
    fresh.load_state_dict(delta.state_dict())  # what a resumed run does
    torch.testing.assert_close(fresh.starting_point.as_dict()["fc.1.weight"], lenet.fc[1].weight)
    with pytest.raises(ValueError, match="not modules of the network"):
        DELTA(lenet, (3, 28, 28), layers=["conv.9"])
    net = _Net()
    twice = nn.Sequential(net.conv1, net.act1, net.act1)
    with pytest.raises(RuntimeError, match="ran twice"):
        DELTA(twice, (1, 6, 6), layers=["1"])
