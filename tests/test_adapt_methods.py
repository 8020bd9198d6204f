"""Domain-adaptation methods: each term against its pure loss, MCD's three steps, AdaBN; and, for every
registered method (parametrised from the registry, so a new method is covered the moment its file
exists), its documentation, its config errors, and an end-to-end run that resumes exactly."""
import inspect
import re

import numpy as np
import pytest
import torch
from torch import nn

from adapt import (
    AFN,
    BNM,
    BSP,
    CDAN,
    CDANE,
    DAN,
    DANN,
    JAN,
    MCC,
    MCD,
    AdaBN,
    EntropyMinimization,
    InformationMaximization,
    adapt_batchnorm_statistics,
    dann_ramp,
)
from adapt.losses.afn import stepwise_feature_norm_loss
from adapt.losses.bnm import batch_nuclear_norm_loss
from adapt.losses.conditional import conditional_domain_loss, entropy_weights, multilinear_map
from adapt.losses.discrepancy import classifier_discrepancy
from adapt.losses.entropy import entropy, information_maximization
from adapt.losses.mcc import minimum_class_confusion_loss
from adapt.losses.mmd import JointMultipleKernelMMD, MultipleKernelMMD
from benchmarks.config import ConfigError, load_experiment
from benchmarks.experiment import check_config
from benchmarks.registry import METHODS, build, check_config_arguments
from mtl import ClassificationTask, MultiTaskModel, SmallConvNet

DA = "configs/experiments/digits_da.yaml"
#: every registered method
NAMES = list(METHODS)
#: one validator: the end-to-end runs check the methods, not the validators (tests/test_validators.py)
FAST = ["train.validators=[source_accuracy]"]


def batch(feature_dim=6, num_classes=4, n_source=10, n_target=8, seed=0):
    """Source/target features and logits that require gradients."""
    g = torch.Generator().manual_seed(seed)
    tensors = dict(
        source_features=torch.randn(n_source, feature_dim, generator=g),
        target_features=torch.randn(n_target, feature_dim, generator=g) + 0.5,
        source_logits=torch.randn(n_source, num_classes, generator=g),
        target_logits=2 * torch.randn(n_target, num_classes, generator=g),
    )
    return {k: v.requires_grad_() for k, v in tensors.items()}


# ---------------------------------------------------------------- terms = loss × trade-off (× schedule)


@pytest.mark.parametrize(
    "method, name, loss",
    [
        (EntropyMinimization(trade_off=0.3), "entropy", entropy),
        (InformationMaximization(trade_off=0.3, diversity_weight=0.5), "im", lambda l: information_maximization(l, 0.5)),
        (BNM(trade_off=0.3), "bnm", batch_nuclear_norm_loss),
        (MCC(trade_off=0.3, temperature=2.0), "mcc", lambda l: minimum_class_confusion_loss(l, temperature=2.0)),
    ],
)
def test_target_prediction_terms_are_the_loss_on_target_logits_times_trade_off(method, name, loss):
    data = batch()
    terms = method.alignment_terms(**data, progress=0.5)
    assert list(terms) == [name] == list(method.term_names)
    torch.testing.assert_close(terms[name], 0.3 * loss(data["target_logits"]))
    terms[name].backward()
    assert data["source_logits"].grad is None  # only the target batch is regularised


def test_paper_defaults_of_the_target_prediction_methods():
    assert MCC().trade_off == 1.0 and MCC().temperature == 2.5
    assert BNM().trade_off == 1.0
    assert InformationMaximization().diversity_weight == 1.0
    assert AFN().trade_off == 0.05 and AFN().delta == 1.0
    assert BSP(feature_dim=4).bsp_trade_off == 1e-4 and BSP(feature_dim=4).k == 1
    assert MCD(feature_dim=4, num_classes=3).num_generator_steps == 4


@pytest.mark.parametrize("linear", [False, True])
def test_dan_term_is_mk_mmd_of_the_features_times_trade_off(linear):
    data = batch()
    terms = DAN(trade_off=0.7, linear=linear).alignment_terms(**data, progress=0.3)
    expected = 0.7 * MultipleKernelMMD(num_kernels=5, kernel_mul=2.0, linear=linear)(
        data["source_features"], data["target_features"]
    )
    assert list(terms) == ["mmd"]
    torch.testing.assert_close(terms["mmd"], expected)


def test_jan_term_is_jmmd_of_features_and_softmax_times_trade_off_and_dann_ramp():
    data = batch()
    jan = JAN(trade_off=0.7)
    expected = JointMultipleKernelMMD()(
        (data["source_features"], data["source_logits"].softmax(1)),
        (data["target_features"], data["target_logits"].softmax(1)),
    )
    for progress in (0.0, 0.2, 1.0):
        got = jan.alignment_terms(**data, progress=progress)["jmmd"]
        torch.testing.assert_close(got, 0.7 * dann_ramp(progress) * expected)
    got = JAN(schedule="constant").alignment_terms(**data, progress=0.0)["jmmd"]
    torch.testing.assert_close(got, expected)
    got.backward()
    assert data["target_logits"].grad.abs().sum() > 0  # JAN aligns through the predictions too


def test_afn_term_is_stepwise_norm_loss_of_both_domains_and_enlarges_norms():
    data = batch()
    term = AFN(trade_off=0.05, delta=1.0).alignment_terms(**data, progress=0.5)["afn"]
    expected = 0.05 * (
        stepwise_feature_norm_loss(data["source_features"], 1.0) + stepwise_feature_norm_loss(data["target_features"], 1.0)
    )
    torch.testing.assert_close(term, expected)
    assert term.item() == pytest.approx(2 * 0.05 * 1.0**2)
    term.backward()
    for key in ("source_features", "target_features"):
        features = data[key].detach()
        unit = features / features.norm(dim=1, keepdim=True)
        # d/dh of λ·mean_i(‖h_i‖₀ + Δr − ‖h_i‖)² = −2λΔr/B · h_i/‖h_i‖: descent moves outwards
        torch.testing.assert_close(data[key].grad, -2 * 0.05 * 1.0 / len(features) * unit)


@pytest.mark.parametrize("k", [1, 2])
def test_bsp_adds_top_k_squared_singular_values_to_dann(k):
    data = batch(n_source=10, n_target=8)
    torch.manual_seed(3)
    bsp = BSP(feature_dim=6, trade_off=0.5, bsp_trade_off=1e-4, k=k)
    torch.manual_seed(3)
    dann = DANN(feature_dim=6, trade_off=0.5)
    terms = bsp.alignment_terms(**data, progress=0.4)
    assert list(terms) == ["domain", "bsp"] == list(bsp.term_names)
    torch.testing.assert_close(terms["domain"], dann.alignment_terms(**data, progress=0.4)["domain"])
    top = sum(
        np.sum(np.linalg.svd(data[key].detach().double().numpy(), compute_uv=False)[:k] ** 2)
        for key in ("source_features", "target_features")
    )
    assert terms["bsp"].item() == pytest.approx(1e-4 * top, rel=1e-5)
    assert bsp.diagnostics()["dann/grl_coefficient"] == pytest.approx(dann_ramp(0.4))


# ---------------------------------------------------------------- CDAN


def _discriminator_input(method, data, progress=0.5):
    captured = {}
    handle = method.discriminator.register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
    terms = method.alignment_terms(**data, progress=progress)
    handle.remove()
    return terms, captured["x"]


def test_cdan_discriminator_sees_the_multilinear_map_of_features_and_softmax():
    data = batch(feature_dim=6, num_classes=4)
    cdan = CDAN(feature_dim=6, num_classes=4, hidden_sizes=(16,))
    assert cdan.randomized_map is None and cdan.discriminator.net[0].in_features == 24
    terms, seen = _discriminator_input(cdan, data)
    features = torch.cat([data["source_features"], data["target_features"]])
    predictions = torch.cat([data["source_logits"], data["target_logits"]]).softmax(1)
    torch.testing.assert_close(seen, multilinear_map(features, predictions))
    # the term is the discriminator's BCE on that input, times the trade-off
    domain_logits = cdan.discriminator(multilinear_map(features, predictions))
    expected = conditional_domain_loss(domain_logits[:10], domain_logits[10:])
    torch.testing.assert_close(terms["domain"], expected)


def test_cdan_uses_the_randomized_map_above_4096_and_its_output_reaches_the_discriminator():
    data = batch(feature_dim=500, num_classes=10)  # 5000 > 4096: the paper switches to T_rand
    cdan = CDAN(feature_dim=500, num_classes=10, hidden_sizes=(16,))
    assert cdan.randomized_map is not None and cdan.discriminator.net[0].in_features == 1024
    _, seen = _discriminator_input(cdan, data)
    features = torch.cat([data["source_features"], data["target_features"]])
    predictions = torch.cat([data["source_logits"], data["target_logits"]]).softmax(1)
    torch.testing.assert_close(seen, cdan.randomized_map(features, predictions))
    assert "randomized_map.feature_projection" in cdan.state_dict()  # fixed, but checkpointed


def test_cdan_reverses_the_gradient_into_features_with_the_scheduled_coefficient_and_not_into_logits():
    data = batch()
    cdan = CDAN(feature_dim=6, num_classes=4, hidden_sizes=(16,), trade_off=0.5)
    cdan.alignment_terms(**data, progress=0.3)["domain"].backward()
    assert cdan.coefficient == pytest.approx(dann_ramp(0.3))
    assert data["source_logits"].grad is None and data["target_logits"].grad is None
    # the same loss without reversal: the features' gradient must be −λ times it
    features = torch.cat([data["source_features"], data["target_features"]]).detach().requires_grad_()
    predictions = torch.cat([data["source_logits"], data["target_logits"]]).detach().softmax(1)
    logits = cdan.discriminator(multilinear_map(features, predictions))
    (0.5 * conditional_domain_loss(logits[:10], logits[10:])).backward()
    reversed_grad = torch.cat([data["source_features"].grad, data["target_features"].grad])
    torch.testing.assert_close(reversed_grad, -dann_ramp(0.3) * features.grad)
    assert cdan.discriminator.net[0].weight.grad is not None  # the discriminator itself learns normally


def test_cdan_e_weights_the_domain_loss_by_entropy():
    data = batch()
    torch.manual_seed(1)
    cdan_e = CDANE(feature_dim=6, num_classes=4, hidden_sizes=(16,))
    assert cdan_e.entropy_conditioning
    terms, seen = _discriminator_input(cdan_e, data)
    logits = cdan_e.discriminator(seen)
    weights = entropy_weights(data["source_logits"].softmax(1)), entropy_weights(data["target_logits"].softmax(1))
    torch.testing.assert_close(terms["domain"], conditional_domain_loss(logits[:10], logits[10:], *weights))
    unweighted = conditional_domain_loss(logits[:10], logits[10:])
    assert not torch.allclose(terms["domain"], unweighted)


def test_cdan_e_takes_exactly_cdans_arguments_and_defaults_except_entropy_conditioning():
    cdan = dict(inspect.signature(CDAN).parameters)
    cdan.pop("entropy_conditioning")
    cdan_e = inspect.signature(CDANE).parameters
    assert [(p.name, p.default) for p in cdan.values()] == [(p.name, p.default) for p in cdan_e.values()]


# ---------------------------------------------------------------- MCD


def _mcd_setup(optimizer_name):
    torch.manual_seed(0)
    task = ClassificationTask("digit", num_classes=10)
    model = MultiTaskModel.from_tasks(SmallConvNet(in_channels=3, image_size=8, feature_dim=32), {"digit": task})
    mcd = MCD(feature_dim=32, num_classes=10)
    params = [*model.parameters(), *mcd.parameters()]
    if optimizer_name == "sgd":
        optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3)
    else:
        optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-2)
    groups = {"G": model.backbone, "F1": model.heads["digit"], "F2": mcd.second_classifier}
    data = dict(
        source_images=torch.randn(12, 3, 8, 8), source_labels=torch.randint(0, 10, (12,)), target_images=torch.randn(12, 3, 8, 8)
    )
    return model, task, mcd, optimizer, groups, data


def _changed_groups(groups, step):
    """Run ``step`` and report, per group, whether its weights moved; a fixed group must be bit-identical."""
    before = {name: [p.detach().clone() for p in module.parameters()] for name, module in groups.items()}
    step()
    moved = {}
    for name, module in groups.items():
        pairs = list(zip(before[name], module.parameters()))
        if all(torch.equal(b, p) for b, p in pairs):
            moved[name] = False
        else:
            # every weight matrix of a trained group moves (biases in front of batch norm may not)
            assert all(not torch.equal(b, p) for b, p in pairs if p.dim() >= 2), name
            moved[name] = True
    return moved


@pytest.mark.parametrize("optimizer_name", ["sgd", "adamw"])  # momentum and weight decay must not move fixed groups
def test_mcd_each_step_updates_exactly_its_parameter_groups(optimizer_name):
    model, task, mcd, optimizer, groups, data = _mcd_setup(optimizer_name)
    common = dict(model=model, task=task, optimizer=optimizer)
    step_a = lambda: mcd.step_a(**common, source_images=data["source_images"], source_labels=data["source_labels"])
    step_b = lambda: mcd.step_b(**common, **data)
    step_c = lambda: mcd.step_c(**common, target_images=data["target_images"])
    assert _changed_groups(groups, step_a) == {"G": True, "F1": True, "F2": True}
    assert _changed_groups(groups, step_b) == {"G": False, "F1": True, "F2": True}
    assert _changed_groups(groups, step_c) == {"G": True, "F1": False, "F2": False}


def test_mcd_step_b_raises_and_step_c_lowers_the_target_discrepancy():
    model, task, mcd, _, _, data = _mcd_setup("sgd")
    optimizer = torch.optim.SGD([*model.parameters(), *mcd.parameters()], lr=0.01)  # one small plain step each
    common = dict(model=model, task=task, optimizer=optimizer)

    @torch.no_grad()
    def discrepancy(images):
        # the steps' own batches, in train mode: what each step actually optimises
        features = model.backbone(images)[-len(data["target_images"]) :]
        return classifier_discrepancy(model.heads["digit"](features), mcd.second_classifier(features))

    joint = torch.cat([data["source_images"], data["target_images"]])
    before = discrepancy(joint)
    mcd.trade_off = 50.0  # let the discrepancy, not the source loss, dominate step B's gradient
    mcd.step_b(**common, **data)
    assert discrepancy(joint) > before
    mcd.trade_off = 1.0
    before = discrepancy(data["target_images"])
    mcd.step_c(**common, target_images=data["target_images"])
    assert discrepancy(data["target_images"]) < before


def test_mcd_update_runs_a_b_and_num_generator_steps_c_and_returns_detached_terms(monkeypatch):
    model, task, mcd, optimizer, _, data = _mcd_setup("sgd")
    mcd.num_generator_steps = 3
    calls = []

    def spy(name):
        original = getattr(mcd, name)

        def recorded(**kwargs):
            calls.append(name)
            return original(**kwargs)

        return recorded

    for name in ("step_a", "step_b", "step_c"):
        monkeypatch.setattr(mcd, name, spy(name))
    terms = mcd.update(model=model, task=task, optimizer=optimizer, progress=0.5, **data)
    assert calls == ["step_a", "step_b", "step_c", "step_c", "step_c"]
    assert set(terms) == {"source_ce", "discrepancy"} == set(mcd.term_names)
    assert all(not v.requires_grad and v.dim() == 0 for v in terms.values())
    assert mcd.owns_update


# ---------------------------------------------------------------- AdaBN


class _TaggedBuffer(nn.Module):
    """Identity with a non-batch-norm buffer, which AdaBN must not touch."""

    def __init__(self):
        super().__init__()
        self.register_buffer("tag", torch.arange(3.0))

    def forward(self, x):
        return x


def _bn_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        _TaggedBuffer(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * 6 * 6, 5),
        nn.BatchNorm1d(5, momentum=0.3),
        nn.ReLU(),
        nn.BatchNorm1d(5, track_running_stats=False),
        nn.Linear(5, 2),
    )


def _train_a_little(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):  # non-trivial source statistics and weights
        optimizer.zero_grad()
        model(torch.randn(16, 3, 8, 8)).pow(2).mean().backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_adabn_changes_only_batchnorm_running_statistics_and_restores_momentum_and_modes():
    model = _bn_model()
    _train_a_little(model)
    model.train()
    model[5].eval()  # a mixed mode must come back exactly as it was
    modes = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    target = [torch.randn(16, 3, 8, 8) * 2 + 1 for _ in range(2)]  # 2 ≠ 3 training steps: the counter changes too
    assert adapt_batchnorm_statistics(model, target) is model
    after = model.state_dict()
    bn_stats = {f"{i}.{s}" for i in (1, 7) for s in ("running_mean", "running_var", "num_batches_tracked")}
    for key in before:
        assert torch.equal(before[key], after[key]) != (key in bn_stats), key
    assert [m.training for m in model.modules()] == modes
    assert model[1].momentum == 0.1 and model[7].momentum == 0.3
    assert all(p.grad is None for p in model.parameters())


def test_adabn_running_statistics_are_the_target_activation_statistics_at_each_layer():
    model = _bn_model().eval()
    target = [torch.randn(16, 3, 8, 8) * 2 + 1 for _ in range(4)]
    seen = {1: [], 7: []}
    dropout_modes = []
    hooks = [model[i].register_forward_hook(lambda m, a, o, i=i: seen[i].append(a[0].detach())) for i in seen]
    hooks.append(model[5].register_forward_hook(lambda m, a, o: dropout_modes.append(m.training)))
    adapt_batchnorm_statistics(model, iter(target))
    for hook in hooks:
        hook.remove()
    # first layer, independently: the convolution's output on all target images (equal-size batches)
    conv = model[0](torch.cat(target))
    torch.testing.assert_close(model[1].running_mean, conv.mean(dim=(0, 2, 3)))
    per_batch_var = torch.stack([model[0](b).transpose(0, 1).flatten(1).var(dim=1) for b in target])
    torch.testing.assert_close(model[1].running_var, per_batch_var.mean(0))
    # deeper layer: the mean of what it received, computed with target-normalised earlier layers
    torch.testing.assert_close(model[7].running_mean, torch.cat(seen[7]).mean(0))
    assert model[7].num_batches_tracked.item() == 4
    assert dropout_modes == [False] * 4  # inference-time activations: dropout off


def test_adabn_with_no_batches_refuses_and_leaves_the_statistics_alone():
    model = _bn_model()
    _train_a_little(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="at least one batch"):
        adapt_batchnorm_statistics(model, [])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_adabn_method_adds_no_terms_and_flags_target_batchnorm_adaptation():
    method = AdaBN()
    assert method.alignment_terms(**batch(), progress=0.1) == {} and method.term_names == ()
    assert method.adapts_batchnorm_for_target
    assert not DANN(feature_dim=4).adapts_batchnorm_for_target


# ---------------------------------------------------------------- every registered method


def _settable(entry):
    """The constructor's parameters a config may set (the others are supplied by the harness)."""
    parameters = inspect.signature(entry.factory).parameters.items()
    return {n: p for n, p in parameters if n not in entry.supplied and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


@pytest.mark.parametrize("name", NAMES)
def test_each_method_documents_its_paper_and_its_defaults(name):
    entry = METHODS[name]
    cls = entry.factory
    doc = cls.__doc__ or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    assert cls.name == name and entry.summary == first, "mtlda list shows the docstring's first line"
    assert first.endswith(".") and len(first) <= 110, f"{name}: one short line first, for mtlda list"
    assert re.search(r"\b(19|20)\d\d\b", first) or "baseline" in first, f"{name}: the first line names the paper"
    # the harness supplies only what it knows from the model: the feature size, the number of classes
    # (the first task's, or every classification task's) and the classifier head (for methods whose
    # extra classifiers are shaped like it)
    known = {"feature_dim", "num_classes", "task_classes", "head"}
    assert set(cls.derived_arguments) <= known & set(inspect.signature(cls).parameters)
    settable = _settable(entry)
    for key, parameter in settable.items():
        assert parameter.default is not parameter.empty, f"{name}.{key} has no default (give the paper's)"
        assert parameter.annotation is not parameter.empty, f"{name}.{key} has no type, so configs cannot be checked"
    if settable:
        assert re.search(r"default|paper:", doc, re.IGNORECASE), f"{name}: the docstring states the defaults"


@pytest.mark.parametrize("name", NAMES)
def test_each_method_refuses_bad_config_arguments_by_name(name):
    entry = METHODS[name]
    settable = list(_settable(entry))
    cfg = load_experiment(DA, [f"method.name={name}", "method.args.no_such_argument=1"])
    valid = ", ".join(settable) or "(none)"
    with pytest.raises(ConfigError, match=re.escape(f"method '{name}' has no argument 'no_such_argument'; valid arguments: {valid}")):
        check_config(cfg)
    for key in entry.supplied:
        with pytest.raises(ConfigError, match=f"method '{name}': argument '{key}' is set by the harness"):
            check_config_arguments(METHODS, "method", name, {key: 3})
    for key in settable:  # every argument's type is checked: a mapping fits none of them
        with pytest.raises(ConfigError, match=re.escape(f"method.args.{key} is {{'a': 1}}; it must be")):
            check_config_arguments(METHODS, "method", name, {key: {"a": 1}})
    # the defaults, written into a config, are valid values
    check_config_arguments(METHODS, "method", name, {k: p.default for k, p in _settable(entry).items()})


@pytest.mark.parametrize("name", NAMES)
def test_registry_builds_each_method_with_harness_arguments(name):
    method = build(METHODS, "method", name, {}, {"feature_dim": 12, "num_classes": 3, "task_classes": {"digit": 3}})
    assert isinstance(method, METHODS[name].factory) and method.name == name


@pytest.mark.parametrize("name", NAMES)
def test_each_method_trains_end_to_end_and_resumes_exactly(tiny_overrides, fit_and_resume, name):
    cfg = load_experiment(DA, [*tiny_overrides, *FAST, f"method.name={name}"])
    _, result, trainer = fit_and_resume(cfg)
    assert 0.0 <= result["metrics"]["test/target/digit/accuracy"] <= 1.0
    assert result["steps"] == 6 and result["epochs_run"] == 2
    state = trainer.problem.state_dict()
    assert all(torch.isfinite(v).all() for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point())
    # the method's own networks (a discriminator, a second classifier) are trained and checkpointed with the model
    method = trainer.problem.method
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in method.parameters())
    assert all(f"method.{key}" in state for key in method.state_dict())


def test_adabn_evaluates_the_target_with_target_statistics_and_restores_source_ones(tmp_path, tiny_overrides):
    """The harness wiring: target test metrics use target BN statistics; the model keeps its source ones."""
    from benchmarks.config import load_experiment
    from benchmarks.experiment import build_trainer
    from benchmarks.problems.base import evaluate_tasks

    cfg = load_experiment("configs/experiments/digits_da.yaml", [*tiny_overrides, "method.name=adabn"])
    trainer = build_trainer(cfg, tmp_path)
    trainer.fit()
    problem = trainer.problem
    before = {k: v.clone() for k, v in problem.model.state_dict().items()}
    adapted = problem.evaluate("test")["test/target/digit/accuracy"]
    after = problem.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    args = (problem.tasks, problem.preprocess, problem.eval_batch_size, problem.device)
    plain = evaluate_tasks(problem.model, problem.target_test, *args, prefix="t")["t/digit/accuracy"]
    assert adapted != plain  # the statistics really changed the predictions
