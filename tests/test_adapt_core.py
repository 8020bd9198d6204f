"""Gradient reversal, the DANN schedule, the adversarial loss and CORAL."""
import math

import numpy as np
import pytest
import torch

from adapt import DANN, DeepCORAL, DomainAdversarialLoss, DomainDiscriminator, GradientReversal, coral_loss, dann_ramp
from adapt.grl import reverse_gradient


@pytest.mark.parametrize("coefficient", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_backward_is_minus_lambda_times_incoming(coefficient):
    x = torch.randn(5, 4, requires_grad=True)
    upstream = torch.randn(5, 4)
    y = GradientReversal(coefficient)(x)
    assert torch.equal(y, x)  # identity forward
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -coefficient * upstream)


def test_gradient_reversal_flips_only_the_feature_extractor_side():
    torch.manual_seed(0)
    extractor = torch.nn.Linear(3, 4)
    head = torch.nn.Linear(4, 1)
    x = torch.randn(8, 3)

    def grads(reverse):
        extractor.zero_grad(), head.zero_grad()
        features = extractor(x)
        out = head(reverse_gradient(features, 0.7) if reverse else features)
        out.pow(2).sum().backward()
        return extractor.weight.grad.clone(), head.weight.grad.clone()

    plain_extractor, plain_head = grads(False)
    reversed_extractor, reversed_head = grads(True)
    torch.testing.assert_close(reversed_head, plain_head)  # the discriminator side is untouched
    torch.testing.assert_close(reversed_extractor, -0.7 * plain_extractor)


def test_dann_ramp_matches_the_paper_formula():
    assert dann_ramp(0.0) == 0.0
    for p in (0.1, 0.25, 0.5, 1.0):
        assert dann_ramp(p) == pytest.approx(2 / (1 + math.exp(-10 * p)) - 1)
    values = [dann_ramp(p / 10) for p in range(11)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert values[-1] > 0.9999
    with pytest.raises(ValueError, match="progress"):
        dann_ramp(1.5)


def test_coral_matches_an_independent_numpy_computation():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(20, 6))
    target = rng.normal(loc=1.0, scale=2.0, size=(13, 6))
    expected = np.sum((np.cov(source, rowvar=False) - np.cov(target, rowvar=False)) ** 2) / (4 * 6**2)
    got = coral_loss(torch.tensor(source), torch.tensor(target))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_coral_is_zero_for_equal_covariances_and_shift_invariant():
    x = torch.randn(30, 5, dtype=torch.float64)
    assert coral_loss(x, x + 3.0).item() == pytest.approx(0.0, abs=1e-6)
    assert coral_loss(x, 2 * x).item() > 0


def test_coral_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same d"):
        coral_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="at least two"):
        coral_loss(torch.randn(1, 3), torch.randn(4, 3))


def test_domain_adversarial_loss_is_bce_with_source_one_target_zero():
    torch.manual_seed(0)
    disc = DomainDiscriminator(4, hidden_sizes=(), batch_norm=False)
    loss_fn = DomainAdversarialLoss(disc, coefficient=1.0)
    fs, ft = torch.randn(6, 4), torch.randn(5, 4)
    loss = loss_fn(fs, ft)
    ls, lt = disc(fs), disc(ft)
    expected = -(torch.log(torch.sigmoid(ls)).sum() + torch.log(1 - torch.sigmoid(lt)).sum()) / 11
    torch.testing.assert_close(loss, expected)
    predicted = torch.cat([ls > 0, lt <= 0]).float().mean()
    assert loss_fn.domain_accuracy.item() == pytest.approx(predicted.item())


def test_dann_trains_the_discriminator_to_separate_and_reverses_into_features():
    torch.manual_seed(0)
    method = DANN(feature_dim=2, hidden_sizes=(16,), batch_norm=False)
    features_s = torch.randn(32, 2) + torch.tensor([2.0, 0.0])
    features_t = torch.randn(32, 2) - torch.tensor([2.0, 0.0])
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        method.alignment_terms(source_features=features_s, target_features=features_t, progress=1.0)["domain"].backward()
        opt.step()
    assert method.diagnostics()["dann/domain_accuracy"] > 0.9
    # the gradient reaching the features pushes them to *increase* the domain loss
    fs = features_s.clone().requires_grad_(True)
    loss = method.alignment_terms(source_features=fs, target_features=features_t, progress=1.0)["domain"]
    loss.backward()
    step = fs - 0.01 * fs.grad  # a gradient step on the features
    after = method.alignment_terms(source_features=step, target_features=features_t, progress=1.0)["domain"]
    assert after.item() > loss.item()


def test_deep_coral_method_picks_the_layer():
    fs, ft = torch.randn(8, 5), torch.randn(8, 5) * 3
    ls, lt = torch.randn(8, 3), torch.randn(8, 3)
    terms = DeepCORAL(trade_off=2.0).alignment_terms(source_features=fs, target_features=ft, source_logits=ls, target_logits=lt)
    torch.testing.assert_close(terms["coral"], 2.0 * coral_loss(ls, lt))
    terms = DeepCORAL(layer="features").alignment_terms(source_features=fs, target_features=ft, source_logits=ls, target_logits=lt)
    torch.testing.assert_close(terms["coral"], coral_loss(fs, ft))
    with pytest.raises(ValueError, match="layer"):
        DeepCORAL(layer="conv1")
