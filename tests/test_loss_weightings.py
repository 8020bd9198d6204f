"""DWA, RLW, GradNorm, FAMO, GLS and DB-MTL: their update rules recomputed by hand and their defining
properties; and, for every registered weighting (parametrised from the registry, so a new weighting is
covered the moment its file exists): its documentation, its config errors, reset and exact resume, and
an end-to-end run through the harness that resumes exactly."""
from __future__ import annotations

import inspect
import io
import math
import re

import pytest
import torch
from torch import nn

from benchmarks.config import ConfigError, load_experiment
from benchmarks.experiment import build_trainer, check_config
from benchmarks.registry import WEIGHTINGS, build, check_config_arguments
from mtl.aggregators import AGGREGATORS
from mtl.weighting import DBMTL, DWA, FAMO, RLW, GeometricLoss, GradNorm

F64 = torch.float64
DA = "configs/experiments/digits_da.yaml"
MTL = "configs/experiments/multidigits_mtl.yaml"
#: every registered weighting, loss-level and gradient-level
NAMES = list(WEIGHTINGS)


def weighting_args(name: str, terms) -> dict:
    """Arguments beyond the defaults: ``static`` has no default weights (a weighting with a required argument
    gives an example here); a small window makes DWA's non-trivial weights appear within a few steps."""
    if name == "static":
        return {"weights": {term: 1.0 + i for i, term in enumerate(terms)}}
    return {"dwa": {"window": 2}}.get(name, {})


# ----------------------------------------------------------------------------- helpers
def leaves(values, names=None):
    names = names or [f"t{i}" for i in range(len(values))]
    return {n: torch.tensor(float(v), dtype=F64, requires_grad=True) for n, v in zip(names, values)}


class Toy(nn.Module):
    """A shared two-layer trunk and one linear head per task; regression targets of very different scales."""

    def __init__(self, k: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in range(k))
        self.names = [f"task{i}" for i in range(k)]

    def terms(self, x, ys):
        features = self.backbone(x)
        return {n: ((h(features) - y) ** 2).mean() for n, h, y in zip(self.names, self.heads, ys)}, features


def batches(k: int, n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(16, 4, generator=g)
        ys = [(3.0**i) * torch.randn(16, 1, generator=g) for i in range(k)]
        out.append((x, ys))
    return out


def make(name: str, model: Toy):
    weighting = build(WEIGHTINGS, "weighting", name, weighting_args(name, model.names))
    weighting.ensure_terms(model.names)
    return weighting


def train(weighting, model, data, lr=0.05):
    """The engine's step: backward, SGD step (model and weighting parameters), update."""
    optimizer = torch.optim.SGD([*model.parameters(), *weighting.parameters()], lr=lr)
    history = []
    for x, ys in data:
        terms, features = model.terms(x, ys)
        optimizer.zero_grad(set_to_none=True)
        weights = weighting.backward(
            terms,
            shared_parameters=list(model.backbone.parameters()),
            task_parameters=list(model.heads.parameters()),
            representation=features,
        )
        optimizer.step()
        weighting.update(terms)
        history.append(weights)
    return history


def roundtrip(state):
    """Through torch.save / torch.load(weights_only=True), as the engine's checkpoints go."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ----------------------------------------------------------------------------- DWA
def dwa_expected(means, k, temperature=2.0):
    if len(means) < 2:
        return [1.0] * k
    ratios = [a / b for a, b in zip(means[-1], means[-2])]
    exps = [math.exp(r / temperature) for r in ratios]
    return [k * e / sum(exps) for e in exps]


def test_dwa_follows_its_rule_window_by_window():
    g = torch.Generator().manual_seed(0)
    sequence = (torch.rand(11, 3, generator=g, dtype=F64) * 2 + 0.1).tolist()
    dwa = DWA(window=3)
    means, buffer = [], []
    for step, values in enumerate(sequence):
        losses = leaves(values)
        total, weights = dwa.combine(losses)
        expected = dwa_expected(means, 3)
        assert list(weights.values()) == pytest.approx(expected, rel=1e-12), step
        assert float(total.detach()) == pytest.approx(sum(w * v for w, v in zip(expected, values)), rel=1e-12)
        assert sum(weights.values()) == pytest.approx(3.0)
        dwa.update(losses)
        buffer.append(values)
        if len(buffer) == 3:
            means.append([sum(col) / 3 for col in zip(*buffer)])
            buffer = []
    assert dwa.windows_closed == 3


def test_dwa_epoch_end_closes_windows_of_any_length():
    dwa = DWA(window=None, temperature=2.0)
    epochs = [[[4.0, 1.0], [2.0, 1.0]], [[2.0, 0.5]], [[1.0, 0.5], [1.0, 0.4], [1.0, 0.3]]]
    for epoch in epochs:
        for values in epoch:
            _, weights = dwa.combine(leaves(values, ["a", "b"]))
            dwa.update(leaves(values, ["a", "b"]))
        dwa.epoch_end()
    means = [[sum(c) / len(e) for c in zip(*e)] for e in epochs]
    _, weights = dwa.combine(leaves([1.0, 1.0], ["a", "b"]))
    assert list(weights.values()) == pytest.approx(dwa_expected(means[-2:], 2), rel=1e-12)
    # a ratio of 1.0/2.0 for 'a' against 0.4/0.5 for 'b': 'b' falls more slowly and gets more weight
    assert weights["b"] > 1.0 > weights["a"]
    dwa.epoch_end()  # no step since the last boundary: nothing changes
    assert dwa.windows_closed == 3


# ----------------------------------------------------------------------------- RLW
def test_rlw_weights_are_softmax_of_seeded_normal_draws_on_the_simplex():
    rlw = RLW(seed=123)
    reference = torch.Generator().manual_seed(123)
    for _ in range(5):
        losses = leaves([1.0, 2.0, 3.0, 4.0])
        total, weights = rlw.combine(losses)
        z = torch.randn(4, generator=reference, dtype=F64)
        expected = [math.exp(v) / sum(math.exp(u) for u in z.tolist()) for v in z.tolist()]
        w = list(weights.values())
        assert w == pytest.approx(expected, rel=1e-12)
        assert all(x > 0 for x in w) and sum(w) == pytest.approx(1.0, abs=1e-12)
        total.backward()
        assert [float(v.grad) for v in losses.values()] == pytest.approx(expected, rel=1e-12)


def test_rlw_is_reproducible_for_a_seed_and_differs_between_seeds():
    def draws(rlw):
        return [list(rlw.combine(leaves([1.0, 1.0, 1.0]))[1].values()) for _ in range(3)]

    assert draws(RLW(seed=5)) == draws(RLW(seed=5))
    assert draws(RLW(seed=5)) != draws(RLW(seed=6))
    torch.manual_seed(42)
    a = RLW()
    torch.manual_seed(42)
    b = RLW()  # seed=None takes its seed from the global RNG: reproducible under a run seed
    assert a.seed == b.seed and draws(a) == draws(b)


# ----------------------------------------------------------------------------- FAMO
class ReferenceFAMO:
    """Independent computation of the FAMO logits with torch.optim.Adam and autograd through softmax."""

    def __init__(self, k, lr=0.025, gamma=1e-3, eps=1e-8):
        self.xi = torch.zeros(k, dtype=F64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.xi], lr=lr, weight_decay=gamma)
        self.eps = eps

    def weights(self, losses):
        z = torch.softmax(self.xi.detach(), 0)
        d = torch.tensor(losses, dtype=F64) + self.eps
        return (z / d / (z / d).sum()).tolist()

    def step(self, before, after):
        delta = torch.log(torch.tensor(before, dtype=F64) + self.eps) - torch.log(torch.tensor(after, dtype=F64) + self.eps)
        (grad,) = torch.autograd.grad(torch.softmax(self.xi, 0), self.xi, grad_outputs=delta)
        self.optimizer.zero_grad()
        self.xi.grad = grad
        self.optimizer.step()


def famo_sequence(n, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, k, generator=g, dtype=F64) * 3 + 0.05).tolist()


def test_famo_engine_order_defers_the_logit_step_to_the_next_steps_losses():
    famo, reference = FAMO(), ReferenceFAMO(3)
    sequence = famo_sequence(8)
    previous = None
    for values in sequence:
        if previous is not None:
            reference.step(previous, values)
        losses = leaves(values)
        total, weights = famo.combine(losses)
        expected = reference.weights(values)
        assert list(weights.values()) == pytest.approx(expected, rel=1e-10)
        assert sum(weights.values()) == pytest.approx(1.0)
        total.backward()  # the gradient on each term is its effective weight
        assert [float(v.grad) for v in losses.values()] == pytest.approx(expected, rel=1e-10)
        famo.update(losses)  # the engine passes the very same pre-step losses
        previous = values
    assert torch.allclose(famo.logits, reference.xi.detach(), rtol=1e-10, atol=1e-14)
    assert famo.logit_steps == 7


def test_famo_with_post_step_losses_on_the_same_batch_is_algorithm_1():
    famo, reference = FAMO(lr=0.1, gamma=0.01), ReferenceFAMO(3, lr=0.1, gamma=0.01)
    sequence = famo_sequence(12, seed=1)
    for before, after in zip(sequence[0::2], sequence[1::2]):
        _, weights = famo.combine(leaves(before))
        assert list(weights.values()) == pytest.approx(reference.weights(before), rel=1e-10)
        famo.update(leaves(after))
        reference.step(before, after)
        assert torch.allclose(famo.logits, reference.xi.detach(), rtol=1e-10, atol=1e-14)
    assert famo.logit_steps == 6


def test_famo_gives_weight_to_the_task_whose_loss_falls_slowest():
    famo = FAMO()
    values = [1.0, 1.0]
    for _ in range(30):
        famo.combine(leaves(values))
        famo.update(leaves(values))
        values = [values[0] * 0.9, values[1] * 0.99]  # task 0 improves 10x faster
    z = famo.task_weights()
    assert z[1] > 0.5 > z[0]


# ----------------------------------------------------------------------------- GLS
@pytest.mark.parametrize("k", [1, 2, 5])
def test_gls_gradient_is_the_analytic_derivative(k):
    g = torch.Generator().manual_seed(k)
    values = (torch.rand(k, generator=g, dtype=F64) * 5 + 0.01).tolist()
    losses = leaves(values)
    total, weights = GeometricLoss().combine(losses)
    product = math.prod(values) ** (1.0 / k)
    assert float(total.detach()) == pytest.approx(product, rel=1e-12)
    total.backward()
    expected = [product / (k * v) for v in values]
    assert [float(v.grad) for v in losses.values()] == pytest.approx(expected, rel=1e-12)
    assert list(weights.values()) == pytest.approx(expected, rel=1e-12)


def test_gls_handles_many_small_losses_and_refuses_non_positive_ones():
    total, _ = GeometricLoss().combine(leaves([1e-3] * 40))
    assert float(total.detach()) == pytest.approx(1e-3, rel=1e-12)  # the plain product underflows past 1e-308 here
    with pytest.raises(ValueError, match="t1.*not positive"):
        GeometricLoss().combine(leaves([1.0, 0.0]))


# ----------------------------------------------------------------------------- GradNorm
def test_gradnorm_pushes_the_slower_task_towards_a_larger_gradient_norm():
    """Equal gradient norms, different loss ratios: the weights move towards equal training rates."""
    w_layer = nn.Parameter(torch.zeros(3, 3))
    u = {"a": torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 0]]), "b": torch.tensor([[0, 0, 0], [0, 1.0, 0], [0, 0, 0]])}

    def losses(level_a, level_b):  # affine in W: the gradient norms are equal and fixed
        return {"a": (w_layer * u["a"]).sum() + level_a, "b": (w_layer * u["b"]).sum() + level_b}

    gradnorm = GradNorm()
    gradnorm.ensure_terms(["a", "b"])
    optimizer = torch.optim.SGD(gradnorm.parameters(), lr=0.1)
    gradnorm.backward(losses(2.0, 2.0), shared_parameters=[w_layer])  # L(0) = (2, 2)
    optimizer.zero_grad()
    gradnorm.update({})
    # 'a' has not moved (L/L0 = 1), 'b' fell tenfold: r_a = 1/0.55 > 1 > r_b
    terms = losses(2.0, 0.2)
    w_layer.grad = None
    weights = gradnorm.backward(terms, shared_parameters=[w_layer])
    assert weights == {"a": 1.0, "b": 1.0}
    grads = {n: float(p.grad) for n, p in gradnorm.loss_weights.items()}
    assert grads["a"] < 0 < grads["b"]  # gradient descent raises w_a and lowers w_b
    r = torch.tensor([1.0, 0.1]) / torch.tensor([1.0, 0.1]).mean()
    target = r**1.5  # Ḡ = 1
    assert grads["a"] == pytest.approx(-1.0) and grads["b"] == pytest.approx(1.0)
    assert target[0] > 1 > target[1]
    optimizer.step()
    gradnorm.update(terms)
    w = gradnorm.weights()
    assert w["a"] > 1.0 > w["b"] and w["a"] + w["b"] == pytest.approx(2.0, abs=1e-6)
    # the network sees Σ w_k L_k with the weights used in that step: dL/dW = w_a u_a + w_b u_b
    assert torch.allclose(w_layer.grad, u["a"] + u["b"])


def _gradnorm_toy(weighting_name: str, sigmas=(1.0, 4.0, 12.0), steps=150):
    """The paper's synthetic problem, scaled down: y_k = σ_k tanh((B + ε_k) x), a shared ReLU trunk, one head each.

    Returns the loss ratios L_k(T)/L_k(0) and the weighting.
    """
    g = torch.Generator().manual_seed(0)
    d = 10
    base = torch.randn(d, d, generator=g) / d**0.5
    x = torch.randn(128, d, generator=g)
    ys = [s * torch.tanh(x @ (base + 0.3 * torch.randn(d, d, generator=g) / d**0.5).T) for s in sigmas]
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
    heads = nn.ModuleList(nn.Linear(32, d) for _ in sigmas)
    names = [f"t{k}" for k in range(len(sigmas))]
    weighting = build(WEIGHTINGS, "weighting", weighting_name, {})
    weighting.ensure_terms(names)
    optimizer = torch.optim.Adam([*trunk.parameters(), *heads.parameters(), *weighting.parameters()], lr=0.01)
    first = None
    for _ in range(steps):
        features = trunk(x)
        terms = {n: ((h(features) - y) ** 2).mean() for n, h, y in zip(names, heads, ys)}
        values = torch.stack([t.detach() for t in terms.values()])
        first = values if first is None else first
        optimizer.zero_grad()
        weighting.backward(terms, shared_parameters=list(trunk.parameters()))
        optimizer.step()
        weighting.update(terms)
        if weighting_name == "gradnorm":
            assert sum(weighting.weights().values()) == pytest.approx(len(sigmas), abs=1e-5)
    return values / first, weighting


def test_gradnorm_equalises_relative_training_rates_on_the_papers_toy_problem():
    log_spread = lambda r: math.log(float(r.max() / r.min()))  # noqa: E731
    equal_ratios, _ = _gradnorm_toy("equal")
    gradnorm_ratios, gradnorm = _gradnorm_toy("gradnorm")
    # equal weighting lets the large-scale task train fastest (loss ratios 0.049, 0.039, 0.024 here);
    # GradNorm brings the rates together (0.046, 0.038, 0.034): less than half the log-spread
    assert log_spread(equal_ratios) > math.log(1.8)
    assert log_spread(gradnorm_ratios) < 0.6 * log_spread(equal_ratios)
    w = gradnorm.weights()
    assert w["t0"] > w["t1"] > w["t2"] > 0  # the small-scale tasks get the large weights


def test_gradnorm_uses_the_last_shared_weight_matrix_not_a_trailing_bias():
    from mtl.weighting.gradnorm import last_shared_layer

    model = Toy()
    assert last_shared_layer(model.backbone.parameters()) is model.backbone[2].weight


# ----------------------------------------------------------------------------- DB-MTL
def test_db_mtl_scaled_gradients_have_equal_norms_and_match_a_hand_computation():
    model = Toy(k=3)
    db = DBMTL()
    shared = list(model.backbone.parameters())
    heads = list(model.heads.parameters())
    buffer = None
    for step, (x, ys) in enumerate(batches(3, 3), start=1):
        terms, _ = model.terms(x, ys)
        # independent: per-term gradients of log(L + ε), one backward each, and the EMA by hand
        rows = []
        for value in terms.values():
            grads = torch.autograd.grad(torch.log(value + 1e-8), shared, retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        jacobian = torch.stack(rows)
        beta_t = 0.9 / step**0.5
        buffer = (1 - beta_t) * jacobian if buffer is None else beta_t * buffer + (1 - beta_t) * jacobian
        norms = buffer.norm(dim=1)
        expected_scale = norms.max() / norms
        expected_direction = expected_scale @ buffer
        expected_head_grads = torch.autograd.grad(sum(torch.log(v + 1e-8) for v in terms.values()), heads, retain_graph=True)

        for p in model.parameters():
            p.grad = None
        weights = db.backward(terms, shared_parameters=shared, task_parameters=heads)
        scaled = db.last_weights[:, None] * db.grad_buffer
        assert torch.allclose(scaled.norm(dim=1), norms.max().expand(3), rtol=1e-5)
        assert torch.allclose(db.grad_buffer, buffer, rtol=1e-5, atol=1e-7)
        assert list(weights.values()) == pytest.approx(expected_scale.tolist(), rel=1e-5)
        got = torch.cat([p.grad.reshape(-1) for p in shared])
        assert torch.allclose(got, expected_direction, rtol=1e-5, atol=1e-7)
        for p, g in zip(heads, expected_head_grads):
            assert torch.allclose(p.grad, g, rtol=1e-6, atol=1e-8)
    assert max(weights.values()) > 1.5  # the tasks really are imbalanced here


# ----------------------------------------------------------------------------- reset and resume
@pytest.mark.parametrize("name", NAMES)
def test_reset_returns_to_the_initial_state(name):
    data = batches(3, 6)
    model, fresh = Toy(k=3), Toy(k=3)
    weighting = make(name, model)
    first = train(weighting, model, data)
    weighting.reset()
    again = train(weighting, fresh, data)
    assert again == first
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    if first[0] and not weighting.batch_independent_weights:
        assert len({tuple(w.values()) for w in first}) > 1  # the weights did change along the way


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_resumes_exactly(name):
    data = batches(3, 8)
    model = Toy(k=3)
    weighting = make(name, model)
    train(weighting, model, data[:4])
    saved_model = roundtrip(model.state_dict())
    saved_weighting = roundtrip(weighting.state_dict())

    resumed_model = Toy(k=3, seed=99)
    resumed_model.load_state_dict(saved_model)
    resumed = build(WEIGHTINGS, "weighting", name, weighting_args(name, resumed_model.names))
    resumed.ensure_terms(resumed_model.names)
    resumed.load_state_dict(saved_weighting)

    straight = train(weighting, model, data[4:])
    continued = train(resumed, resumed_model, data[4:])
    assert continued == straight
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- documentation and config errors
def _documented_class(name: str):
    """The class whose docstring and constructor a weighting's entry comes from (an aggregator's for the gradient ones)."""
    return AGGREGATORS[name] if name in AGGREGATORS else WEIGHTINGS[name].factory


def _settable(name: str):
    parameters = inspect.signature(WEIGHTINGS[name].factory).parameters.items()
    return {n: p for n, p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


@pytest.mark.parametrize("name", NAMES)
def test_each_weighting_documents_its_paper_and_its_defaults(name):
    cls = _documented_class(name)
    doc = cls.__doc__ or ""
    first = WEIGHTINGS[name].summary.removeprefix("[gradient] ")
    assert first == doc.strip().splitlines()[0], "mtlda list shows the docstring's first line"
    assert first.endswith(".") and len(first) <= 110, f"{name}: one short line first, for mtlda list"
    assert re.search(r"\b(19|20)\d\d\b", first) or "baseline" in first, f"{name}: the first line names the paper"
    own = [n for n in _settable(name) if n not in ("target", "jacobian")]  # those two are GradientAggregation's
    for key in own:
        parameter = _settable(name)[key]
        assert parameter.default is not parameter.empty or "no default" in doc.lower(), f"{name}.{key} has no default"
        if name not in AGGREGATORS:
            assert parameter.annotation is not parameter.empty, f"{name}.{key} has no type, so configs cannot be checked"
    if name not in AGGREGATORS and any(_settable(name)[key].default is not inspect.Parameter.empty for key in own):
        assert re.search(r"default|paper", doc, re.IGNORECASE), f"{name}: the docstring states the defaults"


@pytest.mark.parametrize("name", NAMES)
def test_each_weighting_refuses_bad_config_arguments_by_name(name):
    settable = _settable(name)
    cfg = load_experiment(MTL, [f"weighting.name={name}", "weighting.args.no_such_argument=1"])
    valid = ", ".join(settable) or "(none)"
    with pytest.raises(ConfigError, match=re.escape(f"weighting '{name}' has no argument 'no_such_argument'; valid arguments: {valid}")):
        check_config(cfg)
    given = weighting_args(name, ["left", "right"])
    for key, parameter in settable.items():  # every argument's type is checked: a mapping fits none but a Mapping
        if name not in AGGREGATORS and "Mapping" not in str(parameter.annotation):
            with pytest.raises(ConfigError, match=re.escape(f"weighting.args.{key} is {{'a': 1}}; it must be")):
                check_config_arguments(WEIGHTINGS, "weighting", name, {**given, key: {"a": 1}})
    # the defaults, written into a config, are valid values
    defaults = {k: p.default for k, p in settable.items() if p.default is not p.empty}
    check_config_arguments(WEIGHTINGS, "weighting", name, {**defaults, **given})


# ----------------------------------------------------------------------------- through the harness
def _overrides(name):
    given = weighting_args(name, ["left", "right"])
    return [f"weighting.name={name}", *(f"weighting.args.{k}={v}" for k, v in given.items())]


@pytest.mark.parametrize("name", NAMES)
def test_each_weighting_trains_end_to_end_and_resumes_exactly(tiny_overrides, fit_and_resume, name):
    cfg = load_experiment(MTL, [*tiny_overrides, *_overrides(name)])
    initial, result, trainer = fit_and_resume(cfg)
    assert result["steps"] == 6 and result["epochs_run"] == 2
    assert {"test/left/accuracy", "test/right/accuracy", "val/mean/accuracy"} <= set(result["metrics"])
    backbone = dict(trainer.problem.model.backbone.named_parameters())
    assert any(not torch.equal(initial[f"model.backbone.{n}"], p) for n, p in backbone.items())
    assert all(torch.isfinite(p).all() for p in backbone.values())
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in trainer.weighting.parameters())  # learned weights are trained


def test_dwa_balances_a_task_and_a_dann_term(tmp_path, tiny_overrides):
    cfg = load_experiment(DA, [*tiny_overrides, "method.name=dann", "weighting.name=dwa", "weighting.args.window=2"])
    trainer = build_trainer(cfg, tmp_path)
    trainer.fit()
    dwa = trainer.weighting
    assert set(dwa.names) == {"digit", "domain"} and dwa.windows_closed == 3
    weights = dwa.current_weights()
    assert float(weights.sum()) == pytest.approx(2.0) and not torch.allclose(weights, torch.ones(2, dtype=F64))


def test_harness_optimises_gradnorm_weights(tmp_path, tiny_overrides):
    trainer = build_trainer(load_experiment(MTL, [*tiny_overrides, "weighting.name=gradnorm"]), tmp_path)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert len(list(trainer.weighting.parameters())) == 2
    assert all(id(p) in optimised for p in trainer.weighting.parameters())


def test_weighting_cost_benchmark_writes_its_table(tmp_path):
    from benchmarks.speed.weighting_cost import main

    out = tmp_path / "cost.md"
    assert main(["--tasks", "2", "3", "--repeats", "1", "--steps", "1", "--warmup", "0", "--only", "famo", "gls", "--output", str(out)]) == 0
    text = out.read_text()
    assert "python -m benchmarks.speed.weighting_cost --tasks 2 3" in text and f"torch: {torch.__version__}" in text
    assert "| equal | loss | 1.00× | 1.00× |" in text and "| famo | loss |" in text and "| gls | loss |" in text
