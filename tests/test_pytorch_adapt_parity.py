"""Numeric parity with pytorch-adapt 0.0.83 (issue 14, point 1).

Every loss, layer and validator that both libraries have is computed by ours
and by ``pytorch_adapt`` on the same fixed inputs (float64 wherever both
accept it) and compared to a stated tolerance.  Where the two follow a
different convention the test says which, converts one value into the other
and compares the converted value.  The conventions (also in the README,
"pytorch-adapt parity"):

* **DANN domain loss.**  pytorch-adapt labels source 0 and target 1, ours
  source 1 and target 0; its ``DomainLossHook`` returns one mean BCE per
  domain and its default ``MeanWeighter`` averages the loss terms.  With the
  discriminator's logit negated the per-domain BCEs are equal, and ours (the
  mean over the joint batch) is ``(n_s·L_src + n_t·L_tgt) / (n_s + n_t)``.
* **MMD / JMMD.**  Kernel ``exp(−‖x−y‖² / γ)`` in both.  Base bandwidth: ours
  is the mean pairwise squared distance of the joint (source + target) batch;
  pytorch-adapt's is the median of the source–source squared-distance matrix
  (diagonal zeros included).  Ours uses ``γ_u = base·2^(u−K//2)``, pytorch-adapt
  multiplies the *inverse* bandwidth by ``kernel_scales`` (so scale ``s`` is
  ``γ = base / s``), and it averages the K kernels where ours sums them:
  with matched bandwidths, pytorch-adapt = ours / K (per layer for JMMD:
  ours / ∏ K_l).  One ``MMDLoss`` applies the same scales and bandwidth to
  every JMMD layer; JAN's default (5 kernels on features, one at 1.68 on the
  softmax) is compared through its ``get_mmd_quadratic``/``get_mmd_linear``.
  Its linear estimate needs equal batch sizes.
* **CORAL, entropy, BNM, BSP, SAFN, MCD discrepancy, gradient reversal,
  randomized multilinear map, the Kronecker (multilinear) map**: same formula,
  compared directly.  The randomized map stores ``R_f`` as ``(d, out)`` there
  and ``(out, d)`` here (transposed buffers).  Hard AFN (HAFN) has no
  pytorch-adapt counterpart.
* **Information maximisation.**  Ours is ``entropy − w·H(p̄)``; pytorch-adapt
  has ``EntropyLoss`` and ``DiversityLoss = −H(p̄)`` as separate terms: ours =
  ``EntropyLoss + w·DiversityLoss``.
* **MCC.**  pytorch-adapt's default temperature is 1, ours (the paper's) 2.5;
  compared at equal temperature.  It divides the class-confusion matrix by its
  column sums, ours by its row sums; the matrix is symmetric, so equal.
* **CDAN+E entropy weights.**  Ours rescale ``1 + e^−H`` to sum to the batch
  size (pytorch-adapt's ``SumNormalizer(scale_by_batch_size=True)``, as its MCC
  uses); its CDAN+E reducer divides by the maximum instead (``MaxNormalizer``):
  ours = theirs · B / Σ theirs.
* **Validators.**  IM, entropy and BNM are the same numbers; SND matches on
  pytorch-adapt's ``"preds"`` layer (softmax), which is what ours reads.  DEV:
  the control-variate risk estimator is the same function; the density-ratio
  classifier differs (theirs: 9 MLPs over a weight-decay grid trained with
  ignite on src_train vs target, 80/20 split; ours: a cross-fitted logistic
  regression on the source validation split), so the full validators are
  compared only where the answer is known: identical domains, where both
  return about minus the mean source-validation cross-entropy.

A test skips only when pytorch-adapt cannot be imported (the reason is the
import error).  ``make test`` installs it: ``.[test,reference]`` plus
``pytorch-ignite==0.4.9 --no-deps`` (needed by its DEV validator).
"""
from __future__ import annotations

import importlib
import math
import tempfile
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adapt.grl import GradientReversal as OurGRL
from adapt.losses.adversarial import DomainAdversarialLoss
from adapt.losses.afn import stepwise_feature_norm_loss
from adapt.losses.bnm import batch_nuclear_norm_loss
from adapt.losses.bsp import batch_spectral_penalty
from adapt.losses.conditional import RandomizedMultilinearMap, entropy_weights, multilinear_map
from adapt.losses.coral import coral_loss
from adapt.losses.discrepancy import classifier_discrepancy
from adapt.losses.entropy import entropy, information_maximization
from adapt.losses.mcc import minimum_class_confusion_loss
from adapt.losses.mmd import JointMultipleKernelMMD, MultiGaussianKernel, MultipleKernelMMD, mean_pairwise_squared_distance
from adapt.validators import DEV, SND, BNMScore, Entropy, InfoMax, dev_risk


def _import_reference():
    """pytorch-adapt's modules used here, imported with its deprecation warnings silenced."""
    with warnings.catch_warnings():
        # pkg_resources (torchmetrics 0.9.3) and ignite's moved modules warn at import time
        warnings.simplefilter("ignore")
        try:
            return {
                name: importlib.import_module(f"pytorch_adapt.{name}")
                for name in ("layers", "layers.utils", "validators", "validators.deep_embedded_validator", "hooks", "utils.common_functions")
            }
        except Exception as error:  # noqa: BLE001 - any import failure means "not available"
            return f"pytorch-adapt cannot be imported ({type(error).__name__}: {error}); install it with `make install` or pip install '.[reference]'"


_REFERENCE = _import_reference()
if isinstance(_REFERENCE, str):
    pytest.skip(_REFERENCE, allow_module_level=True)
PA = _REFERENCE["layers"]
PA_MMD = _REFERENCE["layers.utils"]
PA_VAL = _REFERENCE["validators"]
PA_DEV = _REFERENCE["validators.deep_embedded_validator"]
PA_HOOKS = _REFERENCE["hooks"]
PA_CF = _REFERENCE["utils.common_functions"]

#: float64 agreement: the two implementations differ only in the order of operations
TIGHT = dict(rtol=1e-10, atol=1e-12)
D64 = torch.float64


def _close(ours, theirs, **tol):
    tol = tol or TIGHT
    torch.testing.assert_close(torch.as_tensor(ours, dtype=D64), torch.as_tensor(theirs, dtype=D64), **tol)


#: float32 agreement, where the reference itself computes in float32 (its DANN domain loss)
FLOAT32 = dict(rtol=1e-5, atol=1e-7)


def _randn(*shape, seed=0, scale=1.0, grad=False):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator, dtype=D64) * scale
    return x.requires_grad_(grad)


def _grad(loss, x):
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)
    return g


# ---------------------------------------------------------------- gradient reversal and DANN


def test_gradient_reversal_matches():
    """Identity forward, ``−λ·grad`` backward in both.  Theirs stores λ in a float32 buffer
    (0.37 becomes 0.37000000476…); ours keeps a Python float: compared at λ = 0.375,
    exact in both, and at 0.37 after rounding ours to float32."""
    x = _randn(7, 5, grad=True)
    upstream = _randn(7, 5, seed=1)
    for weight in (0.375, float(torch.tensor(0.37, dtype=torch.float32))):
        ours = OurGRL(weight)(x)
        theirs = PA.GradientReversal(weight=weight).double()(x)
        _close(ours, x)
        _close(theirs, x)
        _close(_grad((ours * upstream).sum(), x), _grad((theirs * upstream).sum(), x))
        _close(_grad((ours * upstream).sum(), x), -weight * upstream)


class _Negated(nn.Module):
    """pytorch-adapt's discriminator with our discriminator's logit negated (its labels are flipped)."""

    def __init__(self, discriminator):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x):
        return -self.discriminator(x)


@pytest.mark.parametrize("n_source,n_target", [(6, 6), (5, 8)])
def test_dann_domain_loss_matches_after_label_and_reduction_conversion(n_source, n_target):
    """Ours: one BCE over the joint batch, source label 1.  Theirs: a mean BCE per domain, source label 0.

    With the logit negated the per-domain losses are equal; ours is their
    batch-size-weighted mean (their ``MeanWeighter`` gives the plain mean of
    the two, the same for equal batches).  The gradient on the features
    through the reversal layer matches too.  Ours stays in float64; theirs
    does not: ``DomainLossHook.call`` casts the domain labels to float32
    (``labels.type(torch.float)``) and the BCE then computes in float32, so
    the comparison uses float32's tolerance.
    """
    torch.manual_seed(0)
    discriminator = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0)).double()
    fs, ft = _randn(n_source, 5, grad=True), _randn(n_target, 5, seed=1, grad=True)
    ours = DomainAdversarialLoss(discriminator, coefficient=float(torch.tensor(0.6, dtype=torch.float32)))(fs, ft)

    grl = PA.GradientReversal(weight=0.6).double()  # 0.6 rounds to float32 in its buffer (see the GRL test)
    hook = PA_HOOKS.DomainLossHook()
    inputs = {
        "src_imgs_features": grl(fs),
        "target_imgs_features": grl(ft),
        "D": _Negated(discriminator),
        "src_domain": torch.zeros(n_source),
        "target_domain": torch.ones(n_target),
    }
    _, losses = hook(inputs)
    src, tgt = losses["src_domain_loss"].mean(), losses["target_domain_loss"].mean()
    theirs = (n_source * src + n_target * tgt) / (n_source + n_target)
    assert ours.dtype == D64  # issue 14: ours no longer downcasts float64 logits
    tol = FLOAT32
    _close(ours, theirs, **tol)
    if n_source == n_target:
        _close(ours, (src + tgt) / 2, **tol)
    _close(_grad(ours, fs), _grad(theirs, fs), **tol)
    _close(_grad(ours, ft), _grad(theirs, ft), **tol)


# ---------------------------------------------------------------- CORAL


def test_coral_matches():
    """Same formula, ``‖C_s − C_t‖²_F / (4d²)`` with unbiased covariances, on unequal batch sizes.

    Compared at float64 precision: CORAL no longer downcasts float64 input (issue 18).
    """
    xs, xt = _randn(9, 6, grad=True), _randn(13, 6, seed=1, scale=2.0, grad=True)
    ours = coral_loss(xs, xt)
    theirs = PA.CORALLoss()(xs, xt)
    assert ours.dtype == D64
    _close(ours, theirs)
    _close(_grad(ours, xs), _grad(theirs, xs))


# ---------------------------------------------------------------- MMD and JMMD

#: pytorch-adapt kernel scales equivalent to our γ_u = base·2^(u−2), u = 0..4 (scale = base/γ_u)
SCALES5 = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.25], dtype=D64)


def _pa_mmd(linear, **kwargs):
    return PA.MMDLoss(mmd_type="linear" if linear else "quadratic", **kwargs)


@pytest.mark.parametrize("linear", [False, True])
def test_mmd_fixed_bandwidth_matches_up_to_kernel_averaging(linear):
    """Fixed base bandwidth 3.0, five kernels: theirs averages the kernels, ours sums them (ours = 5 · theirs)."""
    xs, xt = _randn(10, 4, grad=True), _randn(10, 4, seed=1, scale=1.5, grad=True) + 0.5
    ours = MultipleKernelMMD(num_kernels=5, kernel_mul=2.0, bandwidth=3.0, linear=linear)(xs, xt)
    theirs = _pa_mmd(linear, kernel_scales=SCALES5.clone(), bandwidth=3.0)(xs, xt)
    _close(ours, 5 * theirs)
    _close(_grad(ours, xs), 5 * _grad(theirs, xs))


@pytest.mark.parametrize("linear", [False, True])
def test_mmd_default_bandwidths_match_after_conversion(linear):
    """Each library's batch heuristic, handed to the other as a fixed bandwidth, gives the same value.

    Ours (default): base = mean pairwise squared distance of the joint batch.
    Theirs (default, one kernel): base = median of the source–source squared
    distances, diagonal included.
    """
    xs, xt = _randn(10, 4), _randn(10, 4, seed=1, scale=1.5) + 0.5
    our_base = float(mean_pairwise_squared_distance(torch.cat([xs, xt])))
    _close(MultipleKernelMMD(linear=linear)(xs, xt), 5 * _pa_mmd(linear, kernel_scales=SCALES5.clone(), bandwidth=our_base)(xs, xt))

    their_base = float(torch.median(torch.cdist(xs, xs).pow(2)))
    theirs = _pa_mmd(linear)(xs, xt)  # kernel_scales=1: a single kernel at the median
    _close(MultipleKernelMMD(num_kernels=1, bandwidth=their_base, linear=linear)(xs, xt), theirs)


def test_mmd_quadratic_unequal_batches_match():
    xs, xt = _randn(7, 3), _randn(11, 3, seed=1) + 1.0
    _close(
        MultipleKernelMMD(bandwidth=2.0)(xs, xt),
        5 * _pa_mmd(False, kernel_scales=SCALES5.clone(), bandwidth=2.0)(xs, xt),
    )


@pytest.mark.parametrize("linear", [False, True])
def test_jmmd_same_kernels_on_every_layer_matches(linear):
    """Their ``MMDLoss`` on lists (one bandwidth and scale set for all layers) = ours / 5² for two 5-kernel layers."""
    fs, ft = _randn(8, 4, grad=True), _randn(8, 4, seed=1, grad=True) + 0.3
    ps, pt = _randn(8, 3, seed=2).softmax(1), _randn(8, 3, seed=3).softmax(1)
    kernel = MultiGaussianKernel(5, 2.0, bandwidth=2.5)
    ours = JointMultipleKernelMMD([kernel, kernel], linear=linear)([fs, ps], [ft, pt])
    theirs = _pa_mmd(linear, kernel_scales=SCALES5.clone(), bandwidth=2.5)([fs, ps], [ft, pt])
    _close(ours, 25 * theirs)
    _close(_grad(ours, fs), 25 * _grad(theirs, fs))


@pytest.mark.parametrize("linear", [False, True])
def test_jmmd_jan_default_kernels_match_through_reference_functions(linear):
    """JAN's default (features: 5 kernels at our batch base; softmax: one kernel, γ = 1.68) = 5 × theirs."""
    fs, ft = _randn(8, 4), _randn(8, 4, seed=1) + 0.3
    ps, pt = _randn(8, 3, seed=2).softmax(1), _randn(8, 3, seed=3).softmax(1)
    ours = JointMultipleKernelMMD(linear=linear)([fs, ps], [ft, pt])
    base = mean_pairwise_squared_distance(torch.cat([fs, ft]))
    distance = lambda a, b: torch.cdist(a, b).pow(2)  # noqa: E731
    xx, yy, zz = [distance(fs, fs), distance(ps, ps)], [distance(ft, ft), distance(pt, pt)], [distance(fs, ft), distance(ps, pt)]
    scales = [-SCALES5 / base, torch.tensor(-1.0 / 1.68, dtype=D64)]
    reference = PA_MMD.get_mmd_linear if linear else PA_MMD.get_mmd_quadratic
    _close(ours, 5 * reference(xx, yy, zz, scales), rtol=1e-9, atol=1e-12)  # cdist vs expanded squares


# ---------------------------------------------------------------- prediction losses


def test_entropy_and_information_maximisation_match():
    logits = _randn(12, 5, scale=3.0, grad=True)
    _close(entropy(logits), PA.EntropyLoss()(logits))
    for weight in (1.0, 0.4):
        ours = information_maximization(logits, diversity_weight=weight)
        theirs = PA.EntropyLoss()(logits) + weight * PA.DiversityLoss()(logits)
        _close(ours, theirs)
        _close(_grad(ours, logits), _grad(theirs, logits))


def test_bnm_matches():
    for shape in ((12, 5), (4, 10)):
        logits = _randn(*shape, scale=2.0, grad=True)
        ours, theirs = batch_nuclear_norm_loss(logits), PA.BNMLoss()(logits)
        _close(ours, theirs)
        _close(_grad(ours, logits), _grad(theirs, logits), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_mcc_matches_at_equal_temperature(temperature):
    """Their default T is 1, ours 2.5 (the paper's): compared at the same T; their eps in log(p + tiny) is below float64 resolution."""
    logits = _randn(16, 6, scale=3.0, grad=True)
    ours = minimum_class_confusion_loss(logits, temperature=temperature)
    theirs = PA.MCCLoss(T=temperature)(logits)
    _close(ours, theirs)
    _close(_grad(ours, logits), _grad(theirs, logits))


@pytest.mark.parametrize("k", [1, 3])
def test_bsp_matches_sum_over_domains(k):
    """Their ``BSPHook`` sums ``BatchSpectralLoss`` over source and target; ours returns that sum."""
    fs, ft = _randn(10, 6, grad=True), _randn(12, 6, seed=1, grad=True)
    ours = batch_spectral_penalty(fs, ft, k=k)
    layer = PA.BatchSpectralLoss(k=k)
    theirs = layer(fs) + layer(ft)
    _close(ours, theirs)
    _close(_grad(ours, fs), _grad(theirs, fs), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("delta", [1.0, 0.3])
def test_stepwise_afn_matches(delta):
    x = _randn(9, 7, scale=2.0, grad=True)
    ours, theirs = stepwise_feature_norm_loss(x, delta=delta), PA.AdaptiveFeatureNorm(step_size=delta)(x)
    _close(ours, theirs)
    _close(ours, delta**2)
    _close(_grad(ours, x), _grad(theirs, x))


def test_mcd_discrepancy_matches():
    a, b = _randn(10, 4, grad=True), _randn(10, 4, seed=1)
    ours, theirs = classifier_discrepancy(a, b), PA.MCDLoss()(a, b)
    _close(ours, theirs)
    _close(_grad(ours, a), _grad(theirs, a))


# ---------------------------------------------------------------- CDAN conditioning


def test_multilinear_map_matches_kronecker_product():
    """Same feature-major order: index ``i·C + c`` holds ``f_i g_c`` in both."""
    f, g = _randn(5, 4), _randn(5, 3, seed=1).softmax(1)
    _close(multilinear_map(f, g), PA_CF.kronecker_product(f, g))


def test_randomized_multilinear_map_matches_with_shared_matrices():
    """Both compute ``(f R_f)·(g R_g)/√out``; their buffers are ``(in, out)``, ours ``(out, in)``: copied transposed."""
    torch.manual_seed(0)
    theirs = PA.RandomizedDotProduct([6, 4], out_dim=32)
    ours = RandomizedMultilinearMap(6, 4, output_dim=32)
    ours.feature_projection.copy_(theirs.rand_mat0.T)
    ours.prediction_projection.copy_(theirs.rand_mat1.T)
    f, g = _randn(5, 6, grad=True), _randn(5, 4, seed=1).softmax(1)
    _close(ours(f, g), theirs(f, g))
    _close(_grad(ours(f, g).sum(), f), _grad(theirs(f, g).sum(), f))


def test_entropy_weights_match_sum_normaliser_and_convert_from_max_normaliser():
    p = _randn(9, 5, scale=2.5).softmax(1)
    ours = entropy_weights(p)
    batch_sum = PA.EntropyWeights(after_softmax=True, normalizer=PA.SumNormalizer(scale_by_batch_size=True))(p)
    _close(ours, batch_sum)
    by_max = PA.EntropyWeights(after_softmax=True, normalizer=PA.MaxNormalizer(detach=True))(p)  # their CDAN+E reducer
    _close(ours, by_max * len(p) / by_max.sum())


# ---------------------------------------------------------------- validators


def _logits(n=40, c=6, seed=0):
    # a mixture of confident and unsure rows
    x = _randn(n, c, seed=seed, scale=2.0)
    x[: n // 2] *= 3.0
    return x


def test_entropy_im_bnm_validators_match():
    logits = _logits()
    target = {"logits": logits}
    _close(Entropy().score(target_train_logits=logits), PA_VAL.EntropyValidator()(target_train=target))
    _close(InfoMax().score(target_train_logits=logits), PA_VAL.IMValidator()(target_train=target))
    _close(BNMScore().score(target_train_logits=logits), PA_VAL.BNMValidator()(target_train=target))


@pytest.mark.parametrize("block", [7, 1024])
def test_snd_validator_matches_on_softmax_predictions(block):
    logits = _logits(n=30)
    ours = SND(temperature=0.05, block_size=block).score(target_train_logits=logits)
    theirs = PA_VAL.SNDValidator(layer="preds", T=0.05, batch_size=block)(target_train={"preds": logits.softmax(1)})
    _close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_dev_control_variate_estimator_matches():
    """Same weights and losses in, same risk out: ``dev_risk`` = their ``get_dev_risk`` (no normalisation)."""
    generator = np.random.default_rng(0)
    weights = generator.gamma(2.0, 0.5, size=50)
    losses = generator.exponential(1.0, size=50)
    theirs = PA_DEV.get_dev_risk(torch.from_numpy(weights[:, None]), torch.from_numpy(losses[:, None]), None)
    assert dev_risk(weights, losses) == pytest.approx(float(theirs), rel=1e-12)


def _ignite_safe_globals():
    """The numpy objects ignite 0.4.9 pickles into its checkpoints, allowed for ``torch.load(weights_only=True)``."""
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    dtypes = [type(np.dtype(t)) for t in (np.float32, np.float64, np.int64)]
    return [core.scalar, core._reconstruct, np.ndarray, np.dtype, *dtypes]


def test_dev_validators_agree_on_identical_domains():
    """Both full DEV validators on features drawn from one distribution: weights ≈ 1, risk ≈ mean source-val CE.

    Their classifier is trained with ignite (``pytorch-ignite==0.4.9`` installed
    ``--no-deps``), whose checkpoints hold numpy scalars: torch ≥ 2.6 loads them
    with ``weights_only=True`` only once those numpy types are allow-listed.
    The two validators' density-ratio classifiers differ (module docstring), so
    the comparison is to the known answer, within 15%.
    """
    pytest.importorskip("ignite", reason="pytorch-adapt's DEV needs pytorch-ignite: pip install --no-deps pytorch-ignite==0.4.9")
    np.random.seed(0)  # their train/test split draws from numpy's global generator
    torch.manual_seed(0)
    n, d, c = 80, 4, 3
    features = _randn(3 * n, d, seed=5).float()
    labels = torch.randint(0, c, (n,))
    logits = (2.0 * F.one_hot(labels, c) + torch.randn(n, c)).float()
    mean_ce = float(F.cross_entropy(logits, labels))
    ours = DEV().score(
        source_val_logits=logits, source_val_labels=labels, source_val_features=features[n : 2 * n], target_train_features=features[2 * n :]
    )
    with tempfile.TemporaryDirectory() as folder, torch.serialization.safe_globals(_ignite_safe_globals()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        validator = PA_VAL.DeepEmbeddedValidator(temp_folder=folder, batch_size=32)
        theirs = validator(
            src_train={"features": features[:n]},
            src_val={"features": features[n : 2 * n], "logits": logits, "labels": labels},
            target_train={"features": features[2 * n :]},
        )
    assert ours == pytest.approx(-mean_ce, rel=0.15)
    assert theirs == pytest.approx(-mean_ce, rel=0.15)
    assert ours == pytest.approx(theirs, rel=0.15)
