"""Tests for the pure loss functions in ``adapt/losses``.

Each loss is checked against an independent computation (closed forms on tiny
inputs, hand-computed values, or a NumPy / explicit-loop re-implementation written
differently from the module) and against mathematical properties, plus a
gradient sanity check (finite, including degenerate inputs where relevant).
"""

from __future__ import annotations

import math

import numpy as np
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
from adapt.losses.discrepancy import classifier_discrepancy
from adapt.losses.entropy import entropy, entropy_per_sample, information_maximization
from adapt.losses.mcc import minimum_class_confusion_loss
from adapt.losses.mmd import (
    JointMultipleKernelMMD,
    MultiGaussianKernel,
    MultipleKernelMMD,
    mean_pairwise_squared_distance,
)

DOUBLE = torch.float64


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_generator(seed), dtype=DOUBLE)


def _one_hot_logits(labels, num_classes: int, scale: float = 100.0) -> torch.Tensor:
    """Logits whose softmax is one-hot up to ~exp(-scale)."""
    logits = torch.zeros(len(labels), num_classes, dtype=DOUBLE)
    logits[torch.arange(len(labels)), torch.as_tensor(labels)] = scale
    return logits


def _assert_finite_grad(tensor: torch.Tensor) -> None:
    assert tensor.grad is not None
    assert torch.isfinite(tensor.grad).all()


# --------------------------------------------------------------------------- MMD / JMMD
# Reference: explicit loops over samples, in NumPy, with the bandwidth heuristic
# also recomputed by loops (mean over ordered pairs i != j of the joint batch).


def _loop_bandwidths(joint: np.ndarray, num_kernels: int, kernel_mul: float, fixed=None) -> list:
    if fixed is None:
        n = len(joint)
        total = 0.0
        for i in range(n):
            for j in range(n):
                if i != j:
                    total += float(np.sum((joint[i] - joint[j]) ** 2))
        base = total / (n * (n - 1))
    else:
        base = fixed
    return [base * kernel_mul ** (u - num_kernels // 2) for u in range(num_kernels)]


def _loop_kernel(x: np.ndarray, y: np.ndarray, bandwidths: list) -> float:
    squared = float(np.sum((x - y) ** 2))
    return sum(math.exp(-squared / gamma) for gamma in bandwidths)


def _loop_joint_kernel(source_layers, target_layers, specs):
    """Returns k(a, b) where a, b are ('s' | 't', index) over the product of layers."""
    bandwidths = [
        _loop_bandwidths(np.concatenate([s, t]), *spec) for s, t, spec in zip(source_layers, target_layers, specs)
    ]

    def k(a, b):
        value = 1.0
        for layer, (s, t) in enumerate(zip(source_layers, target_layers)):
            xa = s[a[1]] if a[0] == "s" else t[a[1]]
            xb = s[b[1]] if b[0] == "s" else t[b[1]]
            value *= _loop_kernel(xa, xb, bandwidths[layer])
        return value

    return k


def _loop_unbiased_mmd(source_layers, target_layers, specs) -> float:
    k = _loop_joint_kernel(source_layers, target_layers, specs)
    m, n = len(source_layers[0]), len(target_layers[0])
    ss = sum(k(("s", i), ("s", j)) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    tt = sum(k(("t", i), ("t", j)) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    st = sum(k(("s", i), ("t", j)) for i in range(m) for j in range(n)) / (m * n)
    return ss + tt - 2 * st


def _loop_linear_mmd(source_layers, target_layers, specs) -> float:
    k = _loop_joint_kernel(source_layers, target_layers, specs)
    pairs = min(len(source_layers[0]), len(target_layers[0])) // 2
    total = 0.0
    for i in range(pairs):
        a, b = 2 * i, 2 * i + 1
        total += k(("s", a), ("s", b)) + k(("t", a), ("t", b)) - k(("s", a), ("t", b)) - k(("s", b), ("t", a))
    return total / pairs


def test_mean_pairwise_squared_distance_matches_double_loop():
    samples = _randn(7, 3, seed=1)
    expected = _loop_bandwidths(samples.numpy(), 1, 2.0)[0]
    assert mean_pairwise_squared_distance(samples).item() == pytest.approx(expected, rel=1e-12)


def test_multi_gaussian_kernel_bandwidth_grid():
    kernel = MultiGaussianKernel(num_kernels=5, kernel_mul=2.0, bandwidth=3.0)
    bandwidths = kernel.bandwidths(_randn(4, 2))
    assert bandwidths.tolist() == pytest.approx([0.75, 1.5, 3.0, 6.0, 12.0])


@pytest.mark.parametrize("fixed", [None, 0.7])
def test_mmd_quadratic_matches_loop_reference(fixed):
    source, target = _randn(5, 3, seed=2), _randn(7, 3, seed=3) + 0.5
    loss = MultipleKernelMMD(bandwidth=fixed)(source, target)
    expected = _loop_unbiased_mmd([source.numpy()], [target.numpy()], [(5, 2.0, fixed)])
    assert loss.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("sizes", [(6, 6), (7, 6), (4, 9)])
def test_mmd_linear_matches_loop_reference(sizes):
    source, target = _randn(sizes[0], 3, seed=4), _randn(sizes[1], 3, seed=5) + 1.0
    loss = MultipleKernelMMD(linear=True)(source, target)
    expected = _loop_linear_mmd([source.numpy()], [target.numpy()], [(5, 2.0, None)])
    assert loss.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_mmd_hand_computed_single_kernel():
    mmd = MultipleKernelMMD(num_kernels=1, bandwidth=1.0)
    # Source {0, 0}, target {1, 1}: k_ss = k_tt = 1, k_st = e^{-1}.
    source = torch.tensor([[0.0], [0.0]], dtype=DOUBLE)
    target = torch.tensor([[1.0], [1.0]], dtype=DOUBLE)
    assert mmd(source, target).item() == pytest.approx(2 - 2 * math.exp(-1))
    # Both {0, 1}: off-diagonal k_ss = k_tt = e^{-1}, mean k_st = (1 + e^{-1}) / 2,
    # so the unbiased estimate is e^{-1} - 1 < 0 (unbiased MMD^2 can be negative).
    both = torch.tensor([[0.0], [1.0]], dtype=DOUBLE)
    assert mmd(both, both).item() == pytest.approx(math.exp(-1) - 1)


def test_mmd_identical_batches_near_zero_and_linear_exactly_zero():
    batch = _randn(64, 8, seed=6)
    quadratic = MultipleKernelMMD()(batch, batch).item()
    # Unbiased estimate of identical batches is -2 (K - a) / n with K = 5 kernels.
    assert -2 * 5 / 64 <= quadratic <= 0
    assert MultipleKernelMMD(linear=True)(batch, batch).item() == pytest.approx(0.0, abs=1e-12)
    # Two independent draws of the same distribution: small compared to a shift.
    same = MultipleKernelMMD()(batch, _randn(64, 8, seed=7)).item()
    shifted = MultipleKernelMMD()(batch, _randn(64, 8, seed=7) + 1.0).item()
    assert abs(same) < 0.1 * shifted


@pytest.mark.parametrize("linear", [False, True])
def test_mmd_grows_with_mean_shift(linear):
    source, noise = _randn(128, 4, seed=8), _randn(128, 4, seed=9)
    values = [MultipleKernelMMD(linear=linear)(source, noise + shift).item() for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values)
    assert values[-1] > values[0] + 0.5


@pytest.mark.parametrize("linear", [False, True])
def test_mmd_is_symmetric(linear):
    source, target = _randn(10, 5, seed=10), _randn(10, 5, seed=11) * 2
    mmd = MultipleKernelMMD(linear=linear)
    assert mmd(source, target).item() == pytest.approx(mmd(target, source).item(), rel=1e-12)


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("zeros", [False, True])
def test_mmd_gradients_finite(linear, zeros):
    source = torch.zeros(8, 6) if zeros else torch.randn(8, 6, generator=_generator(12))
    target = torch.zeros(8, 6) if zeros else torch.randn(8, 6, generator=_generator(13))
    source.requires_grad_(True)
    target.requires_grad_(True)
    loss = MultipleKernelMMD(linear=linear)(source, target)
    loss.backward()
    assert torch.isfinite(loss)
    _assert_finite_grad(source)
    _assert_finite_grad(target)


def test_mmd_gradient_pulls_domains_together():
    source = _randn(16, 3, seed=14).requires_grad_(True)
    target = _randn(16, 3, seed=15) + 2.0
    mmd = MultipleKernelMMD()
    before = mmd(source, target)
    before.backward()
    with torch.no_grad():
        moved = source - 0.1 * source.grad
    assert mmd(moved, target).item() < before.item()


def test_mmd_flattens_feature_maps_and_validates():
    maps_s, maps_t = _randn(4, 2, 3, seed=16), _randn(4, 2, 3, seed=17)
    mmd = MultipleKernelMMD()
    assert mmd(maps_s, maps_t).item() == pytest.approx(mmd(maps_s.flatten(1), maps_t.flatten(1)).item())
    with pytest.raises(ValueError):
        mmd(_randn(1, 3), _randn(4, 3))
    with pytest.raises(ValueError):
        mmd(_randn(4, 3), _randn(4, 2))


@pytest.mark.parametrize("linear", [False, True])
def test_jmmd_with_one_layer_equals_mmd(linear):
    source, target = _randn(9, 4, seed=18), _randn(9, 4, seed=19) + 0.3
    jmmd = JointMultipleKernelMMD(kernels=[MultiGaussianKernel()], linear=linear)
    mmd = MultipleKernelMMD(linear=linear)
    assert jmmd([source], [target]).item() == pytest.approx(mmd(source, target).item(), rel=1e-12)


@pytest.mark.parametrize("linear", [False, True])
def test_jmmd_default_product_kernel_matches_loop_reference(linear):
    features_s, features_t = _randn(6, 3, seed=20), _randn(6, 3, seed=21) + 0.5
    probs_s = torch.softmax(_randn(6, 4, seed=22), dim=1)
    probs_t = torch.softmax(_randn(6, 4, seed=23) * 3, dim=1)
    loss = JointMultipleKernelMMD(linear=linear)([features_s, probs_s], [features_t, probs_t])
    # JAN defaults: 5 kernels on features, exp(-d^2 / 1.68) on softmax predictions.
    specs = [(5, 2.0, None), (1, 2.0, 1.68)]
    layers_s, layers_t = [features_s.numpy(), probs_s.numpy()], [features_t.numpy(), probs_t.numpy()]
    reference = _loop_linear_mmd if linear else _loop_unbiased_mmd
    assert loss.item() == pytest.approx(reference(layers_s, layers_t, specs), rel=1e-10, abs=1e-12)


def test_jmmd_sees_joint_but_not_marginal_shift():
    # Same feature and label marginals, but the feature-label pairing is swapped in
    # the target: marginal MMDs are ~0 while the joint discrepancy is large.
    features = torch.cat([_randn(32, 2, seed=24) - 2, _randn(32, 2, seed=25) + 2])
    labels_s = torch.cat([torch.zeros(32), torch.ones(32)]).long()
    probs_s = torch.nn.functional.one_hot(labels_s, 2).to(DOUBLE)
    probs_t = probs_s.flip(1)
    jmmd = JointMultipleKernelMMD()
    joint = jmmd([features, probs_s], [features, probs_t]).item()
    marginal = MultipleKernelMMD()(features, features).item()
    assert joint > 0.5 and joint > 10 * abs(marginal)


def test_jmmd_gradients_finite_and_validates():
    features_s = torch.zeros(6, 5, requires_grad=True)
    features_t = torch.zeros(6, 5, requires_grad=True)
    logits_s = torch.randn(6, 3, generator=_generator(26), requires_grad=True)
    logits_t = torch.randn(6, 3, generator=_generator(27), requires_grad=True)
    for linear in (False, True):
        loss = JointMultipleKernelMMD(linear=linear)(
            [features_s, logits_s.softmax(1)], [features_t, logits_t.softmax(1)]
        )
        loss.backward()
        assert torch.isfinite(loss)
    for tensor in (features_s, features_t, logits_s, logits_t):
        _assert_finite_grad(tensor)
    with pytest.raises(ValueError):
        JointMultipleKernelMMD()([features_s], [features_t])


# --------------------------------------------------------------------------- CDAN


def test_multilinear_map_matches_einsum_and_index_order():
    features, predictions = _randn(3, 4, seed=30), torch.softmax(_randn(3, 5, seed=31), dim=1)
    mapped = multilinear_map(features, predictions)
    assert mapped.shape == (3, 20)
    expected = torch.einsum("bi,bc->bic", features, predictions).reshape(3, 20)
    torch.testing.assert_close(mapped, expected)
    # Documented feature-major order: index i * C + c holds f_i * g_c.
    assert mapped[1, 2 * 5 + 3].item() == pytest.approx((features[1, 2] * predictions[1, 3]).item())


def test_randomized_multilinear_map_formula_and_fixed_buffers():
    layer = RandomizedMultilinearMap(4, 3, output_dim=16, generator=_generator(32))
    assert list(dict(layer.named_parameters())) == []
    assert set(layer.state_dict()) == {"feature_projection", "prediction_projection"}
    features, predictions = torch.randn(5, 4), torch.softmax(torch.randn(5, 3), dim=1)
    out = layer(features, predictions)
    assert out.shape == (5, 16)
    rf, rg = layer.feature_projection.numpy(), layer.prediction_projection.numpy()
    expected = np.stack(
        [(rf @ f) * (rg @ g) / 4.0 for f, g in zip(features.numpy(), predictions.numpy())]
    )
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer(features, predictions), out)  # fixed across calls
    same_seed = RandomizedMultilinearMap(4, 3, output_dim=16, generator=_generator(32))
    torch.testing.assert_close(same_seed.feature_projection, layer.feature_projection)


def test_randomized_multilinear_map_preserves_inner_products_in_expectation():
    layer = RandomizedMultilinearMap(6, 4, output_dim=1 << 17, generator=_generator(33))
    features = torch.randn(2, 6, generator=_generator(34))
    predictions = torch.softmax(torch.randn(2, 4, generator=_generator(35)), dim=1)
    out = layer(features, predictions)
    exact = multilinear_map(features, predictions)
    # Squared norms: relative std of the estimate is sqrt(8 / 2^17) < 1%.
    norms = out.pow(2).sum(1)
    expected_norms = features.pow(2).sum(1) * predictions.pow(2).sum(1)
    torch.testing.assert_close(norms, expected_norms, rtol=0.05, atol=0)
    torch.testing.assert_close(norms, exact.pow(2).sum(1), rtol=0.05, atol=0)


def test_entropy_weights_hand_computed_and_normalised():
    # One-hot row: H = 0 -> 2; uniform row over 2 classes: H = log 2 -> 1.5.
    predictions = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=DOUBLE)
    torch.testing.assert_close(entropy_weights(predictions), torch.tensor([8 / 7, 6 / 7], dtype=DOUBLE))
    random = torch.softmax(_randn(11, 5, seed=36) * 2, dim=1)
    weights = entropy_weights(random)
    assert weights.sum().item() == pytest.approx(11.0)
    assert not weights.requires_grad
    uniform = torch.full((4, 3), 1 / 3, dtype=DOUBLE)
    torch.testing.assert_close(entropy_weights(uniform), torch.ones(4, dtype=DOUBLE))
    # More confident rows get larger weights.
    entropies = -(random * random.log()).sum(1)
    order = torch.argsort(entropies)
    assert torch.all(weights[order][:-1] >= weights[order][1:])


def test_conditional_domain_loss_hand_computed():
    zeros_s, zeros_t = torch.zeros(3), torch.zeros(5, 1)
    assert conditional_domain_loss(zeros_s, zeros_t).item() == pytest.approx(math.log(2))
    source = torch.tensor([2.0, -1.0], dtype=DOUBLE)
    target = torch.tensor([0.5, -3.0, 1.0], dtype=DOUBLE)

    def softplus(x):
        return math.log1p(math.exp(x))

    unweighted = (softplus(-2.0) + softplus(1.0) + softplus(0.5) + softplus(-3.0) + softplus(1.0)) / 5
    assert conditional_domain_loss(source, target).item() == pytest.approx(unweighted)
    w_s = torch.tensor([0.5, 1.5], dtype=DOUBLE)
    w_t = torch.tensor([1.0, 2.0, 0.0], dtype=DOUBLE)
    weighted = (0.5 * softplus(-2.0) + 1.5 * softplus(1.0) + 1.0 * softplus(0.5) + 2.0 * softplus(-3.0)) / 5
    assert conditional_domain_loss(source, target, w_s, w_t).item() == pytest.approx(weighted)


def test_conditional_domain_loss_matches_cdan_e_normalisation_for_equal_batches():
    # Reference CDAN+E: per-domain weights normalised to sum 1, total divided by 2.
    logits_s, logits_t = _randn(6, seed=37), _randn(6, seed=38)
    probs_s = torch.softmax(_randn(6, 4, seed=39) * 3, dim=1)
    probs_t = torch.softmax(_randn(6, 4, seed=40), dim=1)
    raw_s = 1 + torch.exp((probs_s * probs_s.log()).sum(1))
    raw_t = 1 + torch.exp((probs_t * probs_t.log()).sum(1))
    bce_s = -torch.log(torch.sigmoid(logits_s))
    bce_t = -torch.log(1 - torch.sigmoid(logits_t))
    reference = ((raw_s / raw_s.sum() * bce_s).sum() + (raw_t / raw_t.sum() * bce_t).sum()) / 2
    loss = conditional_domain_loss(logits_s, logits_t, entropy_weights(probs_s), entropy_weights(probs_t))
    assert loss.item() == pytest.approx(reference.item(), rel=1e-10)


def test_cdan_pipeline_gradients_finite():
    features = torch.zeros(4, 8, requires_grad=True)
    logits = torch.randn(4, 3, generator=_generator(41), requires_grad=True)
    probs = logits.softmax(1)
    joint = multilinear_map(features, probs)
    randomized = RandomizedMultilinearMap(8, 3, output_dim=32, generator=_generator(42))(features, probs)
    discriminator = torch.nn.Linear(24, 1)
    domain_logits = discriminator(joint) + randomized.sum(1, keepdim=True)
    loss = conditional_domain_loss(domain_logits[:2], domain_logits[2:], entropy_weights(probs[:2]), None)
    loss.backward()
    _assert_finite_grad(features)
    _assert_finite_grad(logits)
    with pytest.raises(ValueError):
        conditional_domain_loss(torch.zeros(3, 2), torch.zeros(3))


# --------------------------------------------------------------------------- entropy / IM


def test_entropy_uniform_and_confident():
    assert entropy(torch.zeros(5, 7)).item() == pytest.approx(math.log(7))
    assert entropy(_one_hot_logits([0, 3, 1], 4)).item() == pytest.approx(0.0, abs=1e-30)


def test_entropy_matches_numpy_and_is_stable():
    logits = _randn(6, 5, seed=50) * 3
    probs = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True)
    per_sample = -(probs * np.log(probs)).sum(1)
    np.testing.assert_allclose(entropy_per_sample(logits).numpy(), per_sample, rtol=1e-12)
    assert entropy(logits).item() == pytest.approx(per_sample.mean(), rel=1e-12)
    extreme = torch.tensor([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    value = entropy(extreme)
    value.backward()
    assert value.item() == pytest.approx(math.log(3) / 2, rel=1e-6)
    _assert_finite_grad(extreme)


def test_information_maximization_properties_and_numpy_reference():
    logits = _randn(8, 4, seed=51) * 2
    probs = torch.softmax(logits, dim=1).numpy()
    marginal = probs.mean(0)
    expected = -(probs * np.log(probs)).sum(1).mean() + (marginal * np.log(marginal)).sum()
    assert information_maximization(logits).item() == pytest.approx(expected, rel=1e-10)
    assert information_maximization(logits).item() <= entropy(logits).item()
    assert information_maximization(logits, diversity_weight=0.0).item() == pytest.approx(entropy(logits).item())
    half = information_maximization(logits, diversity_weight=0.5).item()
    assert half == pytest.approx(-(probs * np.log(probs)).sum(1).mean() + 0.5 * (marginal * np.log(marginal)).sum())


def test_information_maximization_closed_forms():
    balanced = _one_hot_logits([0, 1, 2, 3, 0, 1, 2, 3], 4)
    assert information_maximization(balanced).item() == pytest.approx(-math.log(4), abs=1e-12)
    assert information_maximization(torch.zeros(6, 5)).item() == pytest.approx(0.0, abs=1e-7)
    # Confident but collapsed to one class: no diversity bonus.
    collapsed = _one_hot_logits([2, 2, 2], 4)
    assert information_maximization(collapsed).item() == pytest.approx(0.0, abs=1e-12)


def test_information_maximization_gradients_finite():
    logits = torch.tensor([[1e4, -1e4, 0.0], [0.0, 3.0, -2.0]], requires_grad=True)
    information_maximization(logits).backward()
    _assert_finite_grad(logits)


# --------------------------------------------------------------------------- BNM


def test_bnm_identical_vs_diverse_one_hot_rows():
    identical = batch_nuclear_norm_loss(_one_hot_logits([1, 1, 1, 1], 4)).item()
    diverse = batch_nuclear_norm_loss(_one_hot_logits([0, 1, 2, 3], 4)).item()
    # Identical rows: rank 1, singular value sqrt(B) -> -sqrt(4) / 4.
    assert identical == pytest.approx(-0.5, abs=1e-12)
    # Permutation rows: B singular values equal to 1 -> -4 / 4.
    assert diverse == pytest.approx(-1.0, abs=1e-12)
    # Two classes, two rows each: singular values sqrt(2), sqrt(2).
    pairs = batch_nuclear_norm_loss(_one_hot_logits([0, 0, 1, 1], 3)).item()
    assert pairs == pytest.approx(-2 * math.sqrt(2) / 4, abs=1e-12)
    assert diverse < pairs < identical


def test_bnm_matches_numpy_svd():
    logits = _randn(7, 5, seed=60)
    probs = torch.softmax(logits, dim=1).numpy()
    expected = -np.linalg.svd(probs, compute_uv=False).sum() / 7
    assert batch_nuclear_norm_loss(logits).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("logits", [torch.zeros(5, 3), torch.randn(6, 10, generator=_generator(61))])
def test_bnm_gradients_finite(logits):
    logits = logits.clone().requires_grad_(True)
    batch_nuclear_norm_loss(logits).backward()
    _assert_finite_grad(logits)


# --------------------------------------------------------------------------- MCC


def _numpy_mcc(logits: np.ndarray, temperature: float) -> float:
    scaled = logits / temperature
    probs = np.exp(scaled - scaled.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    batch, classes = probs.shape
    raw = np.array([1 + math.exp(sum(p * math.log(p) for p in row)) for row in probs])
    weights = batch * raw / raw.sum()
    confusion = np.zeros((classes, classes))
    for j in range(classes):
        for k in range(classes):
            confusion[j, k] = sum(weights[i] * probs[i, j] * probs[i, k] for i in range(batch))
    confusion = confusion / confusion.sum(axis=0, keepdims=True)  # column-normalised, as in the paper
    return (confusion.sum() - np.trace(confusion)) / classes


@pytest.mark.parametrize("temperature", [2.5, 1.0])
def test_mcc_matches_loop_reference(temperature):
    logits = _randn(9, 4, seed=70) * 2
    expected = _numpy_mcc(logits.numpy(), temperature)
    assert minimum_class_confusion_loss(logits, temperature).item() == pytest.approx(expected, rel=1e-10)


def test_mcc_zero_for_confident_one_class_per_sample():
    assert minimum_class_confusion_loss(_one_hot_logits([2, 0, 1], 3, scale=200.0)).item() == pytest.approx(
        0.0, abs=1e-12
    )
    assert minimum_class_confusion_loss(_one_hot_logits([0, 1, 2, 2, 1, 0], 3, scale=200.0)).item() == pytest.approx(
        0.0, abs=1e-12
    )


def test_mcc_closed_forms_and_monotonicity():
    # Uniform predictions: normalised confusion is all 1/C -> (C - 1) / C.
    assert minimum_class_confusion_loss(torch.zeros(5, 4)).item() == pytest.approx(3 / 4)
    confident = minimum_class_confusion_loss(_one_hot_logits([0, 1, 2], 3, scale=5.0)).item()
    vague = minimum_class_confusion_loss(_one_hot_logits([0, 1, 2], 3, scale=1.0)).item()
    assert 0 < confident < vague < 2 / 3


@pytest.mark.parametrize("logits", [torch.zeros(4, 3), torch.tensor([[1e4, 0.0], [0.0, 1e4]])])
def test_mcc_gradients_finite(logits):
    logits = logits.clone().requires_grad_(True)
    loss = minimum_class_confusion_loss(logits)
    loss.backward()
    assert torch.isfinite(loss)
    _assert_finite_grad(logits)


# --------------------------------------------------------------------------- BSP


@pytest.mark.parametrize("k", [1, 2])
def test_bsp_matches_numpy_top_k_singular_values(k):
    source, target = _randn(8, 5, seed=80), _randn(8, 5, seed=81) * 2
    expected = sum(
        (np.linalg.svd(matrix.numpy(), compute_uv=False)[:k] ** 2).sum() for matrix in (source, target)
    )
    assert batch_spectral_penalty(source, target, k=k).item() == pytest.approx(expected, rel=1e-10)


def test_bsp_hand_computed_and_large_k():
    source = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=DOUBLE)
    target = torch.tensor([[0.0, 2.0], [0.0, 0.0]], dtype=DOUBLE)
    assert batch_spectral_penalty(source, target).item() == pytest.approx(9.0 + 4.0)
    # k beyond the number of singular values: squared Frobenius norms.
    assert batch_spectral_penalty(source, target, k=10).item() == pytest.approx(10.0 + 4.0)
    with pytest.raises(ValueError):
        batch_spectral_penalty(source, target, k=0)


@pytest.mark.parametrize("zeros", [False, True])
def test_bsp_gradients_finite_and_descent_reduces_top_value(zeros):
    source = torch.zeros(6, 4) if zeros else torch.randn(6, 4, generator=_generator(82))
    target = torch.zeros(6, 4) if zeros else torch.randn(6, 4, generator=_generator(83))
    source.requires_grad_(True)
    target.requires_grad_(True)
    loss = batch_spectral_penalty(source, target)
    loss.backward()
    _assert_finite_grad(source)
    _assert_finite_grad(target)
    if not zeros:
        with torch.no_grad():
            after = batch_spectral_penalty(source - 0.01 * source.grad, target - 0.01 * target.grad)
        assert after.item() < loss.item()


# --------------------------------------------------------------------------- AFN


def test_stepwise_afn_value_and_gradient_push_norms_up():
    features = _randn(5, 3, seed=90).requires_grad_(True)
    loss = stepwise_feature_norm_loss(features, delta=1.0)
    assert loss.item() == pytest.approx(1.0)  # (||h|| + delta - ||h||)^2
    loss.backward()
    unit = features.detach() / features.detach().norm(dim=1, keepdim=True)
    torch.testing.assert_close(features.grad, -2.0 * 1.0 / 5 * unit)
    with torch.no_grad():
        stepped = features - 0.1 * features.grad
    assert torch.all(stepped.norm(dim=1) > features.detach().norm(dim=1))
    assert stepwise_feature_norm_loss(features, delta=0.3).item() == pytest.approx(0.09)


def test_hard_afn_hand_computed_and_gradient_direction():
    features = torch.tensor([[3.0, 4.0], [0.0, 5.0]], dtype=DOUBLE, requires_grad=True)  # norms 5, 5
    loss = hard_feature_norm_loss(features)
    assert loss.item() == pytest.approx((5.0 - 25.0) ** 2)
    loss.backward()
    # d/dh_i = 2 (mean - R) / B * h_i / ||h_i|| = -20 * h_i / 5.
    torch.testing.assert_close(features.grad, -20.0 * features.detach() / 5.0)
    large = (features.detach() * 10).requires_grad_(True)  # norms 50 > R: pulled down
    hard_feature_norm_loss(large).backward()
    assert torch.all((large.grad * large.detach()).sum(1) > 0)
    assert hard_feature_norm_loss(features, radius=5.0).item() == pytest.approx(0.0)


def test_afn_zero_features_gradients_finite():
    for loss_fn in (stepwise_feature_norm_loss, hard_feature_norm_loss):
        features = torch.zeros(4, 6, requires_grad=True)
        loss_fn(features).backward()
        _assert_finite_grad(features)


# --------------------------------------------------------------------------- MCD discrepancy


def test_classifier_discrepancy_hand_computed_symmetric_and_zero():
    uniform = torch.zeros(1, 2, dtype=DOUBLE)
    confident = torch.tensor([[50.0, -50.0]], dtype=DOUBLE)
    assert classifier_discrepancy(uniform, confident).item() == pytest.approx(0.5)
    a, b = _randn(6, 5, seed=100), _randn(6, 5, seed=101)
    pa = np.exp(a.numpy()) / np.exp(a.numpy()).sum(1, keepdims=True)
    pb = np.exp(b.numpy()) / np.exp(b.numpy()).sum(1, keepdims=True)
    assert classifier_discrepancy(a, b).item() == pytest.approx(np.abs(pa - pb).mean(), rel=1e-12)
    assert classifier_discrepancy(a, b).item() == classifier_discrepancy(b, a).item()
    assert classifier_discrepancy(a, a).item() == 0.0
    # Softmax is shift invariant, so are the discrepancies.
    assert classifier_discrepancy(a, a + 3.0).item() == pytest.approx(0.0, abs=1e-15)


def test_classifier_discrepancy_gradients_finite():
    a = torch.randn(4, 3, generator=_generator(102), requires_grad=True)
    b = torch.randn(4, 3, generator=_generator(103), requires_grad=True)
    classifier_discrepancy(a, b).backward()
    _assert_finite_grad(a)
    _assert_finite_grad(b)
    with pytest.raises(ValueError):
        classifier_discrepancy(torch.zeros(4, 3), torch.zeros(4, 2))
