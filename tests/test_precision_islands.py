"""Every batch-statistic loss computes in float32 (float64 for float64 inputs) under CPU bfloat16 autocast.

The property checked for each loss: inside ``torch.autocast("cpu", torch.bfloat16)`` its value
(and its output dtype) equals the value computed with autocast off, so the networks around
it may run in bfloat16 while the statistic does not.  Two sensitivity checks show that the
comparison can fail: CORAL's and MMD's undecorated bodies under the same autocast differ.
"""
from __future__ import annotations

import pytest
import torch

from adapt.losses.afn import hard_feature_norm_loss, stepwise_feature_norm_loss
from adapt.losses.bnm import batch_nuclear_norm_loss
from adapt.losses.bsp import batch_spectral_penalty
from adapt.losses.conditional import (
    RandomizedMultilinearMap,
    conditional_domain_loss,
    entropy_weights,
    multilinear_map,
)
from adapt.losses.coral import coral_loss, feature_covariance
from adapt.losses.discrepancy import classifier_discrepancy
from adapt.losses.entropy import entropy, entropy_per_sample, information_maximization
from adapt.losses.mcc import minimum_class_confusion_loss
from adapt.losses.mmd import JointMultipleKernelMMD, MultipleKernelMMD, mean_pairwise_squared_distance

B, D, C = 24, 12, 5


def _inputs(dtype):
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g).to(dtype)  # noqa: E731
    # source and target close to each other: the discrepancies are small differences of large terms
    fs = 3.0 + r(B, D)
    ft = fs + 0.05 * r(B, D)
    ls, lt = 2 * r(B, C), 2 * r(B, C)
    # probabilities made before any autocast, so every loss below receives plain tensors
    return fs, ft, ls, lt, ls.softmax(1), lt.softmax(1)


_rmm = RandomizedMultilinearMap(D, C, output_dim=16, generator=torch.Generator().manual_seed(1))

LOSSES = {
    "coral": lambda fs, ft, ls, lt, ps, pt: coral_loss(fs, ft),
    "covariance": lambda fs, ft, ls, lt, ps, pt: feature_covariance(fs),
    "mmd": lambda fs, ft, ls, lt, ps, pt: MultipleKernelMMD()(fs, ft),
    "mmd_linear": lambda fs, ft, ls, lt, ps, pt: MultipleKernelMMD(linear=True)(fs, ft),
    "jmmd": lambda fs, ft, ls, lt, ps, pt: JointMultipleKernelMMD()((fs, ps), (ft, pt)),
    "mean_pairwise_distance": lambda fs, ft, ls, lt, ps, pt: mean_pairwise_squared_distance(fs),
    "mcc": lambda fs, ft, ls, lt, ps, pt: minimum_class_confusion_loss(lt),
    "multilinear_map": lambda fs, ft, ls, lt, ps, pt: multilinear_map(fs, ps),
    "randomized_multilinear_map": lambda fs, ft, ls, lt, ps, pt: _rmm(fs, ps),
    "entropy_weights": lambda fs, ft, ls, lt, ps, pt: entropy_weights(ps),
    "cdan_loss": lambda fs, ft, ls, lt, ps, pt: conditional_domain_loss(
        ls[:, 0], lt[:, 0], entropy_weights(ps), entropy_weights(pt)
    ),
    "bsp": lambda fs, ft, ls, lt, ps, pt: batch_spectral_penalty(fs, ft),
    "bnm": lambda fs, ft, ls, lt, ps, pt: batch_nuclear_norm_loss(lt),
    "safn": lambda fs, ft, ls, lt, ps, pt: stepwise_feature_norm_loss(fs),
    "hafn": lambda fs, ft, ls, lt, ps, pt: hard_feature_norm_loss(fs),
    "mcd_discrepancy": lambda fs, ft, ls, lt, ps, pt: classifier_discrepancy(ls, lt),
    "entropy": lambda fs, ft, ls, lt, ps, pt: entropy(lt),
    "entropy_per_sample": lambda fs, ft, ls, lt, ps, pt: entropy_per_sample(lt),
    "information_maximization": lambda fs, ft, ls, lt, ps, pt: information_maximization(lt),
}


def _bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float32_inputs_give_the_float32_value_under_bf16_autocast(name):
    inputs = _inputs(torch.float32)
    reference = LOSSES[name](*inputs)
    with _bf16_autocast():
        value = LOSSES[name](*inputs)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, reference, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float64_inputs_stay_float64_under_bf16_autocast(name):
    inputs = _inputs(torch.float64)
    reference = LOSSES[name](*inputs)
    assert reference.dtype == torch.float64
    with _bf16_autocast():
        value = LOSSES[name](*inputs)
    assert value.dtype == torch.float64
    torch.testing.assert_close(value, reference, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bfloat16_inputs_are_computed_in_float32(name):
    """Features arriving in bfloat16 (a bf16 network's output) give the float32 value of those numbers."""
    inputs = tuple(x.to(torch.bfloat16) for x in _inputs(torch.float32))
    with _bf16_autocast():
        value = LOSSES[name](*inputs)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, LOSSES[name](*(x.float() for x in inputs)), rtol=1e-6, atol=1e-7)


def test_gradients_flow_back_to_bfloat16_features():
    fs, ft, *_ = (x.to(torch.bfloat16).requires_grad_() for x in _inputs(torch.float32))
    with _bf16_autocast():
        coral_loss(fs, ft).backward()
    assert fs.grad is not None and fs.grad.dtype == torch.bfloat16 and bool(fs.grad.abs().sum() > 0)


def test_coral_float64_gradient_check():
    """Issue 18: CORAL used to downcast float64 to float32, so no float64 gradient check was possible."""
    g = torch.Generator().manual_seed(3)
    s = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(coral_loss, (s, t))


@pytest.mark.parametrize("name", ["coral", "mmd"])
def test_the_comparison_is_sensitive_to_bfloat16_arithmetic(name, monkeypatch):
    """Without the island (the undecorated bodies) the same losses under autocast differ from float32,
    so the tests above would catch a loss that lost its island."""
    import adapt.losses.coral as coral_module

    monkeypatch.setattr(coral_module, "feature_covariance", feature_covariance.__wrapped__)
    body = {"coral": coral_loss.__wrapped__, "mmd": MultipleKernelMMD.forward.__wrapped__}[name]
    fs, ft, *_ = _inputs(torch.float32)
    args = (fs, ft) if name == "coral" else (MultipleKernelMMD(), fs, ft)
    reference = body(*args)
    with _bf16_autocast():
        value = body(*args)
    assert not torch.allclose(value.float(), reference, rtol=1e-3, atol=0)


# Issue 14: methods used to call .float() on logits and features, turning float64 inputs into float32.
def _float64_methods():
    from adapt import AFN, BNM, BSP, CDAN, CDANE, DAN, DANN, JAN, MCC, EntropyMinimization, InformationMaximization

    return {
        "dann": DANN(feature_dim=6, hidden_sizes=(8,)),
        "cdan": CDAN(feature_dim=6, num_classes=4, hidden_sizes=(8,)),
        "cdan_e": CDANE(feature_dim=6, num_classes=4, hidden_sizes=(8,)),
        "bsp": BSP(feature_dim=6, hidden_sizes=(8,)),
        "dan": DAN(),
        "jan": JAN(schedule="constant"),
        "afn": AFN(entropy_trade_off=0.1),
        "bnm": BNM(),
        "mcc": MCC(),
        "entropy_min": EntropyMinimization(),
        "info_max": InformationMaximization(),
    }


@pytest.mark.parametrize("name", sorted(_float64_methods()))
def test_every_methods_terms_stay_float64_for_float64_inputs(name):
    method = _float64_methods()[name].double()
    g = torch.Generator().manual_seed(0)
    data = {
        "source_features": torch.randn(10, 6, generator=g, dtype=torch.float64, requires_grad=True),
        "target_features": torch.randn(8, 6, generator=g, dtype=torch.float64, requires_grad=True),
        "source_logits": torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True),
        "target_logits": torch.randn(8, 4, generator=g, dtype=torch.float64, requires_grad=True),
    }
    terms = method.alignment_terms(**data, progress=0.5)
    assert terms and all(t.dtype == torch.float64 for t in terms.values()), {k: t.dtype for k, t in terms.items()}
    sum(terms.values()).backward()
    assert any(x.grad is not None and x.grad.dtype == torch.float64 for x in data.values())


def test_mcd_class_balance_keeps_float64_and_upcasts_bfloat16():
    from adapt.methods.mcd import class_balance_loss

    logits = torch.randn(5, 3, dtype=torch.float64)
    assert class_balance_loss(logits).dtype == torch.float64
    assert class_balance_loss(logits.bfloat16()).dtype == torch.float32
