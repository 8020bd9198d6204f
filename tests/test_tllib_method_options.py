"""Options that express Transfer-Learning-Library's digits recipes for the non-flagship methods (issue 13.5).

Each option's default keeps the previous behaviour; each test states the option's defining property,
with TLLib's convention written here from its definition (never from its code).
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adapt.losses.bnm import batch_nuclear_norm_loss
from adapt.losses.conditional import conditional_domain_loss, entropy_weights
from adapt.losses.entropy import entropy
from adapt.losses.mmd import MultiGaussianKernel, MultipleKernelMMD
from adapt.methods import AFN, BNM, BSP, CDAN, CDANE, DAN, MCD
from adapt.methods.mcd import class_balance_loss
from adapt.schedules import dann_ramp
from benchmarks.config import ConfigError, config_hash, load_experiment
from benchmarks.experiment import build_trainer
from benchmarks.registry import METHODS, build
from mtl import ClassificationTask, LeNet, MultiTaskModel, SmallConvNet, WithBottleneck
from mtl.bottleneck import L2PreservingDropout

DA = "configs/experiments/digits_da.yaml"


def tllib_warm_start(i: int, max_iters: int = 1000) -> float:
    return 2.0 / (1.0 + math.exp(-i / max_iters)) - 1.0


def _features(n_source=12, n_target=12, dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_source, dim, generator=g), torch.randn(n_target, dim, generator=g) + 0.3


# ---------------------------------------------------------------- DAN: TLLib's linear MK-MMD


def _kernel_matrix(joint: torch.Tensor) -> torch.Tensor:
    """Our 5-kernel sum on the joint batch, as a full matrix."""
    kernel = MultiGaussianKernel(5, 2.0)
    return kernel(torch.cdist(joint, joint).pow(2), kernel.bandwidths(joint))


def test_circular_linear_mmd_is_tllibs_index_matrix_estimate():
    """TLLib's linear DAN: Σ K ⊙ I over the 2n × 2n kernel matrix, I(s_i, s_{i+1}) = I(t_i, t_{i+1}) = 1/n,
    I(s_i, t_{i+1}) = I(s_{i+1}, t_i) = −1/n (indices mod n), plus a constant 2/(n−1) we leave out."""
    source, target = _features()
    n = source.shape[0]
    kernel = _kernel_matrix(torch.cat([source, target]))
    index = torch.zeros(2 * n, 2 * n)
    for i in range(n):
        j = (i + 1) % n
        index[i, j] += 1 / n
        index[n + i, n + j] += 1 / n
        index[i, n + j] -= 1 / n
        index[j, n + i] -= 1 / n
    expected = (kernel * index).sum()
    ours = MultipleKernelMMD(linear=True, linear_pairing="circular")(source, target)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_disjoint_pairing_stays_the_default_and_circular_differs():
    source, target = _features()
    default = MultipleKernelMMD(linear=True)(source, target)
    disjoint = MultipleKernelMMD(linear=True, linear_pairing="disjoint")(source, target)
    assert MultipleKernelMMD(linear=True).linear_pairing == "disjoint"
    assert torch.equal(default, disjoint)
    kernel = _kernel_matrix(torch.cat([source, target]))
    n, pairs = source.shape[0], source.shape[0] // 2
    quads = [
        kernel[2 * p, 2 * p + 1] + kernel[n + 2 * p, n + 2 * p + 1] - kernel[2 * p, n + 2 * p + 1] - kernel[2 * p + 1, n + 2 * p]
        for p in range(pairs)
    ]
    torch.testing.assert_close(default, torch.stack(quads).mean(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(default, MultipleKernelMMD(linear=True, linear_pairing="circular")(source, target))
    # the quadratic estimate ignores the pairing
    quadratic = MultipleKernelMMD()(source, target)
    assert torch.equal(quadratic, MultipleKernelMMD(linear_pairing="circular")(source, target))


def test_circular_linear_mmd_of_a_batch_with_itself_is_zero_and_it_uses_the_shorter_batch():
    source, target = _features(n_source=9, n_target=7)
    same = MultipleKernelMMD(linear=True, linear_pairing="circular")(source, source)
    assert same.abs().item() < 1e-6
    # unequal batches: the first min(m, n) samples of each form the circle (the bandwidth sees all)
    kernel = MultiGaussianKernel(5, 2.0)
    bandwidths = kernel.bandwidths(torch.cat([source, target]))
    s, t = source[:7], target
    k = lambda a, b: kernel((a - b).pow(2).sum(1), bandwidths)  # noqa: E731
    expected = (k(s, s.roll(-1, 0)) + k(t, t.roll(-1, 0)) - k(s, t.roll(-1, 0)) - k(s.roll(-1, 0), t)).mean()
    torch.testing.assert_close(MultipleKernelMMD(linear=True, linear_pairing="circular")(source, target), expected)


def test_dan_passes_the_pairing_on_and_refuses_unknown_ones():
    source, target = _features()
    dan = DAN(trade_off=0.7, linear=True, linear_pairing="circular")
    expected = 0.7 * MultipleKernelMMD(linear=True, linear_pairing="circular")(source, target)
    torch.testing.assert_close(dan.alignment_terms(source_features=source, target_features=target)["mmd"], expected)
    with pytest.raises(ValueError, match="linear_pairing"):
        DAN(linear=True, linear_pairing="ring")


# ---------------------------------------------------------------- CDAN(+E): TLLib's joint entropy weights and warm start


def _cdan_terms(method, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = dict(
        source_features=torch.randn(10, 6, generator=g), target_features=torch.randn(10, 6, generator=g),
        source_logits=3 * torch.randn(10, 4, generator=g), target_logits=torch.randn(10, 4, generator=g),
    )
    seen = {}
    hook = method.discriminator.register_forward_hook(lambda m, i, o: seen.setdefault("logits", o))
    terms = method.alignment_terms(**data, progress=0.5, step=2_000)
    hook.remove()
    return terms, seen["logits"], data


def test_joint_entropy_weights_are_tllibs_weighted_mean_bce():
    """TLLib: w = 1 + exp(−H(g)) over the joint batch, rescaled to sum to 2n; loss = mean_i w_i · BCE_i."""
    torch.manual_seed(0)
    method = CDANE(6, 4, hidden_sizes=(8,), entropy_weight_normalization="joint")
    terms, logits, data = _cdan_terms(method)
    g = torch.cat([data["source_logits"], data["target_logits"]]).softmax(1)
    h = -(g * g.log()).sum(1)
    w = 1 + torch.exp(-h)
    w = w / w.sum() * len(w)
    labels = torch.cat([torch.ones(10), torch.zeros(10)])
    expected = (w * F.binary_cross_entropy_with_logits(logits.reshape(-1), labels, reduction="none")).mean()
    torch.testing.assert_close(terms["domain"], expected)
    # the default normalises per domain (the authors' code): a different weighting of the same logits
    torch.manual_seed(0)
    per_domain = CDANE(6, 4, hidden_sizes=(8,))
    assert per_domain.entropy_weight_normalization == "per_domain"
    terms_pd, logits_pd, _ = _cdan_terms(per_domain)
    sp, tp = data["source_logits"].softmax(1), data["target_logits"].softmax(1)
    torch.testing.assert_close(
        terms_pd["domain"], conditional_domain_loss(logits_pd[:10], logits_pd[10:], entropy_weights(sp), entropy_weights(tp))
    )
    assert not torch.allclose(terms_pd["domain"], terms["domain"])


def test_joint_normalisation_lets_the_confident_domain_weigh_more():
    source = torch.tensor([[9.0, 0, 0, 0]] * 6)  # confident
    target = torch.zeros(6, 4)  # uniform
    joint = entropy_weights(torch.cat([source, target]).softmax(1))
    assert joint.sum().item() == pytest.approx(12.0)
    assert joint[:6].sum() > 6.0 > joint[6:].sum()
    per_domain = entropy_weights(source.softmax(1)), entropy_weights(target.softmax(1))
    assert [w.sum().item() for w in per_domain] == pytest.approx([6.0, 6.0])


def test_cdan_without_entropy_conditioning_ignores_the_normalisation_and_bad_values_are_refused():
    torch.manual_seed(0)
    a, _, _ = _cdan_terms(CDAN(6, 4, hidden_sizes=(8,)))
    torch.manual_seed(0)
    b, _, _ = _cdan_terms(CDAN(6, 4, hidden_sizes=(8,), entropy_weight_normalization="joint"))
    assert torch.equal(a["domain"], b["domain"])
    with pytest.raises(ValueError, match="entropy_weight_normalization"):
        CDAN(6, 4, entropy_weight_normalization="global")


def test_cdan_e_follows_the_absolute_step_with_ramp_steps():
    warm = CDANE(6, 4, hidden_sizes=(8,), ramp_steps=10_000)
    _cdan_terms(warm)  # step 2000, progress 0.5
    assert warm.coefficient == pytest.approx(tllib_warm_start(2_000))
    by_progress = CDANE(6, 4, hidden_sizes=(8,))
    _cdan_terms(by_progress)
    assert by_progress.coefficient == pytest.approx(dann_ramp(0.5))


# ---------------------------------------------------------------- BSP: TLLib's warm start


def test_bsp_follows_the_absolute_step_with_ramp_steps():
    source, target = _features(dim=6)
    warm, by_progress = BSP(6, hidden_sizes=(8,), ramp_steps=10_000), BSP(6, hidden_sizes=(8,))
    for method in (warm, by_progress):
        terms = method.alignment_terms(source_features=source, target_features=target, progress=0.5, step=1_500)
        assert set(terms) == {"domain", "bsp"}
    assert warm.adversarial.coefficient == pytest.approx(tllib_warm_start(1_500))
    assert by_progress.adversarial.coefficient == pytest.approx(dann_ramp(0.5))


# ---------------------------------------------------------------- BNM: the authors' normalisation


@pytest.mark.parametrize("batch, classes", [(128, 10), (6, 10), (10, 10)])
def test_bnm_rank_normalisation_is_minus_the_mean_singular_value(batch, classes):
    logits = torch.randn(batch, classes, generator=torch.Generator().manual_seed(batch))
    singular = torch.linalg.svdvals(logits.softmax(1))
    assert len(singular) == min(batch, classes)
    rank = BNM(trade_off=0.5, normalization="rank").alignment_terms(target_logits=logits)["bnm"]
    torch.testing.assert_close(rank, -0.5 * singular.mean())
    paper = BNM(trade_off=0.5).alignment_terms(target_logits=logits)["bnm"]
    torch.testing.assert_close(paper, 0.5 * batch_nuclear_norm_loss(logits))
    torch.testing.assert_close(rank / paper, torch.tensor(batch / min(batch, classes)))  # 12.8 at 128 × 10
    with pytest.raises(ValueError, match="normalization"):
        BNM(normalization="mean")


# ---------------------------------------------------------------- AFN: the entropy term


def test_afn_entropy_term_is_the_mean_target_entropy_and_makes_afn_read_logits():
    source, target = _features(dim=6)
    logits = torch.randn(12, 4, requires_grad=True)
    plain = AFN(delta=0.3)
    assert plain.term_names == ("afn",) and not plain.reads_logits
    assert set(plain.alignment_terms(source_features=source, target_features=target)) == {"afn"}
    with_entropy = AFN(delta=0.3, entropy_trade_off=0.03)
    assert with_entropy.term_names == ("afn", "entropy") and with_entropy.reads_logits
    assert type(with_entropy).term_names == ("afn",)  # the class keeps its attribute
    terms = with_entropy.alignment_terms(source_features=source, target_features=target, target_logits=logits)
    torch.testing.assert_close(terms["entropy"], 0.03 * entropy(logits))
    torch.testing.assert_close(terms["afn"], plain.alignment_terms(source_features=source, target_features=target)["afn"])
    with pytest.raises(ValueError, match="entropy_trade_off"):
        AFN(entropy_trade_off=-1.0)


def test_afn_with_entropy_is_refused_on_a_multi_task_source_only_through_reads_logits():
    method = build(METHODS, "method", "afn", {"entropy_trade_off": 0.03}, {})
    assert method.reads_logits and AFN.features_only_with == (("entropy_trade_off", 0.0),)


# ---------------------------------------------------------------- MCD: class balance and a momentum-free generator


def test_class_balance_loss_is_the_cross_entropy_from_uniform_to_the_mean_prediction():
    logits = torch.randn(16, 5, generator=torch.Generator().manual_seed(3))
    mean = logits.softmax(1).mean(0)
    torch.testing.assert_close(class_balance_loss(logits), -(mean + 1e-6).log().mean())
    balanced = torch.eye(5).repeat(3, 1) * 30.0  # confident, evenly spread over the classes
    collapsed = torch.zeros(15, 5)
    collapsed[:, 0] = 30.0  # confident, all one class
    assert class_balance_loss(balanced).item() == pytest.approx(math.log(5), abs=1e-4)
    assert class_balance_loss(collapsed).item() > 2.0 * math.log(5)
    # it is not the mean per-example entropy: confident balanced predictions have entropy ≈ 0
    assert entropy(balanced).item() < 1e-6


def _mcd(entropy_trade_off=0.0, generator_momentum=True, seed=0):
    torch.manual_seed(seed)
    task = ClassificationTask("digit", num_classes=10)
    model = MultiTaskModel.from_tasks(SmallConvNet(in_channels=3, image_size=8, feature_dim=32), {"digit": task})
    mcd = MCD(32, 10, num_generator_steps=2, trade_off=0.3, entropy_trade_off=entropy_trade_off,
              generator_momentum=generator_momentum)
    return model, task, mcd


def _data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        source_images=torch.randn(12, 3, 8, 8, generator=g),
        source_labels=torch.randint(0, 10, (12,), generator=g),
        target_images=torch.randn(12, 3, 8, 8, generator=g),
    )


def test_mcd_step_a_with_entropy_minimises_source_ce_plus_the_balance_of_both_classifiers_on_the_joint_batch():
    model, task, mcd = _mcd(entropy_trade_off=0.03)
    reference = copy.deepcopy((model, mcd))
    data = _data()
    params = lambda m, f: [*m.parameters(), *f.parameters()]  # noqa: E731
    optimizer = torch.optim.SGD(params(model, mcd), lr=0.1)
    torch.manual_seed(5)
    mcd.step_a(model=model, task=task, optimizer=optimizer, **data)
    ref_model, ref_mcd = reference
    ref_optimizer = torch.optim.SGD(params(ref_model, ref_mcd), lr=0.1)
    torch.manual_seed(5)  # the same dropout masks
    features = ref_model.backbone(torch.cat([data["source_images"], data["target_images"]]))
    first, second = ref_model.heads["digit"](features), ref_mcd.second_classifier(features)
    loss = F.cross_entropy(first[:12], data["source_labels"]) + F.cross_entropy(second[:12], data["source_labels"])
    loss = loss + 0.03 * (class_balance_loss(first[12:]) + class_balance_loss(second[12:]))
    ref_optimizer.zero_grad()
    loss.backward()
    ref_optimizer.step()
    for a, b in zip(params(model, mcd), params(ref_model, ref_mcd)):
        torch.testing.assert_close(a, b)


class _TwoOptimisers:
    """TLLib's mcd.py: optimizer_g (plain SGD) for G, optimizer_f (momentum 0.9) for F1 and F2, stepped together."""

    def __init__(self, generator, classifiers, lr, weight_decay):
        self.parts = [
            torch.optim.SGD(generator, lr=lr, weight_decay=weight_decay),
            torch.optim.SGD(classifiers, lr=lr, momentum=0.9, weight_decay=weight_decay),
        ]

    def zero_grad(self, set_to_none=True):
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self):
        for part in self.parts:
            part.step()  # a group whose gradients were dropped is skipped, as in MCD's steps B and C


def test_a_momentum_free_generator_in_one_optimiser_is_tllibs_two_optimisers():
    model, task, mcd = _mcd(entropy_trade_off=0.03, generator_momentum=False)
    ref_model, ref_mcd = copy.deepcopy((model, mcd))
    ref_mcd.generator_momentum = True  # the reference's optimisers already hold the split
    one = torch.optim.SGD([*model.parameters(), *mcd.parameters()], lr=0.05, momentum=0.9, weight_decay=5e-4)
    classifiers = [*ref_model.heads.parameters(), *ref_mcd.parameters()]
    two = _TwoOptimisers(list(ref_model.backbone.parameters()), classifiers, lr=0.05, weight_decay=5e-4)
    for step in range(3):
        data = _data(seed=10 + step)
        torch.manual_seed(step)
        mcd.update(model=model, task=task, optimizer=one, progress=0.0, **data)
        torch.manual_seed(step)
        ref_mcd.update(model=ref_model, task=task, optimizer=two, progress=0.0, **data)
    for (name, a), b in zip(model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, msg=name)
    for a, b in zip(mcd.parameters(), ref_mcd.parameters()):
        torch.testing.assert_close(a, b)
    # and with momentum on G (the default) the generator ends elsewhere
    model_m, task_m, mcd_m = _mcd(entropy_trade_off=0.03)
    opt_m = torch.optim.SGD([*model_m.parameters(), *mcd_m.parameters()], lr=0.05, momentum=0.9, weight_decay=5e-4)
    for step in range(3):
        torch.manual_seed(step)
        mcd_m.update(model=model_m, task=task_m, optimizer=opt_m, progress=0.0, **_data(seed=10 + step))
    assert not all(torch.allclose(a, b) for a, b in zip(model_m.backbone.parameters(), model.backbone.parameters()))


@pytest.mark.parametrize("optimizer", ["nesterov", "adam"])
def test_a_momentum_free_generator_needs_plain_momentum_sgd(optimizer):
    model, task, mcd = _mcd(generator_momentum=False)
    params = [*model.parameters(), *mcd.parameters()]
    opt = (torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True) if optimizer == "nesterov"
           else torch.optim.Adam(params, lr=0.1))
    with pytest.raises(ValueError, match="generator_momentum"):
        mcd.update(model=model, task=task, optimizer=opt, progress=0.0, **_data())


def test_mcd_defaults_are_the_paper_update():
    mcd = MCD(8, 3)
    assert (mcd.entropy_trade_off, mcd.generator_momentum, mcd.trade_off, mcd.num_generator_steps) == (0.0, True, 1.0, 4)
    with pytest.raises(ValueError, match="entropy_trade_off"):
        MCD(8, 3, entropy_trade_off=-0.1)


# ---------------------------------------------------------------- the bottleneck: no batch norm, L2-preserving dropout


def test_bottleneck_parameter_names_do_not_move_and_batch_norm_can_be_left_out():
    default = WithBottleneck(LeNet(), dim=16)
    keys = [k for k in default.state_dict() if k.startswith("bottleneck.")]
    assert keys == ["bottleneck.1.weight", "bottleneck.1.bias", "bottleneck.2.weight", "bottleneck.2.bias",
                    "bottleneck.2.running_mean", "bottleneck.2.running_var", "bottleneck.2.num_batches_tracked"]
    no_bn = WithBottleneck(LeNet(), dim=16, dropout=0.5, batch_norm=False)
    assert [k for k in no_bn.state_dict() if k.startswith("bottleneck.")] == ["bottleneck.1.weight", "bottleneck.1.bias"]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in no_bn.modules())
    # Linear → ReLU in eval mode: the bottleneck is relu(W f + b), whatever the batch
    no_bn.eval()
    x = torch.randn(3, 1, 28, 28)
    linear = no_bn.bottleneck[1]
    torch.testing.assert_close(no_bn(x), torch.relu(linear(no_bn.backbone(x))))


def test_l2_preserving_dropout_scales_kept_units_by_one_over_sqrt_keep():
    torch.manual_seed(0)
    x = torch.rand(4000, 50) + 0.5
    drop = L2PreservingDropout(0.5).train()
    out = drop(x)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] * math.sqrt(2.0))
    assert 0.45 < kept.float().mean().item() < 0.55
    # the expected squared norm is kept (standard dropout doubles it at p = 0.5)
    ratio = out.pow(2).sum(1).mean() / x.pow(2).sum(1).mean()
    assert ratio.item() == pytest.approx(1.0, abs=0.02)
    standard = nn.Dropout(0.5).train()(x)
    assert (standard.pow(2).sum(1).mean() / x.pow(2).sum(1).mean()).item() == pytest.approx(2.0, abs=0.05)
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(L2PreservingDropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match="dropout"):
        L2PreservingDropout(1.0)


def test_bottleneck_config_keys_build_the_variants_and_leave_hashes_alone(tmp_path, tiny_overrides):
    base = [*tiny_overrides, "model.bottleneck_dim=16", "model.bottleneck_dropout=0.5"]
    cfg = load_experiment(DA, [*base, "model.bottleneck_batch_norm=false", "model.bottleneck_l2_dropout=true"])
    bottleneck = build_trainer(cfg, tmp_path / "variant").problem.model.backbone.bottleneck
    assert isinstance(bottleneck[2], nn.Identity) and isinstance(bottleneck[4], L2PreservingDropout)
    assert bottleneck[4].p == 0.5
    plain = build_trainer(load_experiment(DA, base), tmp_path / "plain").problem.model.backbone.bottleneck
    assert isinstance(plain[2], nn.BatchNorm1d) and type(plain[4]) is nn.Dropout
    # keys at their defaults are not part of a config's identity: records made before them still match
    explicit = load_experiment(DA, [*base, "model.bottleneck_batch_norm=true", "model.bottleneck_l2_dropout=false"])
    assert config_hash(explicit) == config_hash(load_experiment(DA, base)) != config_hash(cfg)
    for key in ("model.bottleneck_batch_norm=false", "model.bottleneck_l2_dropout=true"):
        with pytest.raises(ConfigError, match="need model.bottleneck_dim"):
            build_trainer(load_experiment(DA, [*tiny_overrides, key]), tmp_path / "refused")
