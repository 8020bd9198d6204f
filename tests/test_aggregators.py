"""Property tests for the gradient-level aggregators in ``mtl.aggregators``.

One helper per property, parametrised over every aggregator (TorchJD style),
then method-specific checks against the defining equations of each paper.
Everything is CPU, small and float64 where precision matters.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mtl.aggregators import (
    AGGREGATORS,
    IMTLG,
    MGDA,
    TARGETS,
    Aggregator,
    AlignedMTL,
    CAGrad,
    GradDrop,
    GradVac,
    MeanAggregator,
    NashMTL,
    PCGrad,
    SumAggregator,
    UPGrad,
    WeightedAggregator,
)
from mtl.aggregators.cagrad import cagrad_objective, project_to_simplex

F64 = torch.float64
NAMES = sorted(AGGREGATORS)
# deterministic and independent of the order of the rows (GradDrop: for a fixed seed,
# because U is drawn per coordinate and the sign rule is symmetric in the tasks)
ORDER_FREE = ["aligned_mtl", "cagrad", "graddrop", "imtl_g", "mean", "mgda", "nash_mtl", "sum", "upgrad"]
WEIGHTED = [n for n in NAMES if issubclass(AGGREGATORS[n], WeightedAggregator)]
SHAPES = [(1, 4), (2, 5), (3, 10), (5, 3), (6, 40)]


# ----------------------------------------------------------------------------- data
def make(name: str, **kwargs) -> Aggregator:
    return AGGREGATORS[name](**kwargs)


def randn(k: int, d: int, seed: int, dtype=F64) -> torch.Tensor:
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def conflicting(k: int, d: int, seed: int) -> torch.Tensor:
    """Random Jacobian in which row 1 conflicts with row 0 (and usually others)."""
    j = randn(k, d, seed)
    j[1] = -0.7 * j[0] + 0.4 * j[1]
    return j


# ----------------------------------------------------------------------------- helpers (one per property)
def assert_shape_and_finite(agg: Aggregator, jac: torch.Tensor) -> torch.Tensor:
    out = agg(jac)
    assert out.shape == (jac.shape[1],)
    assert out.dtype == jac.dtype
    assert bool(torch.isfinite(out).all()), f"{type(agg).__name__} returned non-finite values"
    if agg.last_weights is not None:
        assert agg.last_weights.shape == (jac.shape[0],)
        assert bool(torch.isfinite(agg.last_weights).all())
    return out


def assert_parallel(out: torch.Tensor, ref: torch.Tensor, atol: float = 1e-9) -> None:
    cos = float(out @ ref) / (float(out.norm()) * float(ref.norm()))
    assert cos == pytest.approx(1.0, abs=atol), f"cosine {cos}"
    assert float(out @ ref) > 0


def assert_parallel_for_identical_rows(agg: Aggregator, row: torch.Tensor, k: int) -> None:
    out = assert_shape_and_finite(agg, row.expand(k, -1).clone())
    assert_parallel(out, row)


def assert_permutation_invariant(name: str, jac: torch.Tensor, perm: torch.Tensor, **kwargs) -> None:
    first, second = make(name, **kwargs), make(name, **kwargs)
    out = first(jac)
    out_perm = second(jac[perm])
    torch.testing.assert_close(out_perm, out, rtol=1e-7, atol=1e-9)
    if first.last_weights is not None:
        torch.testing.assert_close(second.last_weights, first.last_weights[perm], rtol=1e-6, atol=1e-8)


def assert_non_conflicting(direction: torch.Tensor, jac: torch.Tensor, rtol: float = 1e-9) -> None:
    """``⟨d, g_k⟩ ≥ 0`` for all k, up to rounding (relative to |g|·|d| and to |g|² for tiny d)."""
    g_max = float(jac.norm(dim=1).max())
    tol = rtol * g_max * float(direction.norm()) + 1e-13 * g_max**2
    inner = jac @ direction
    assert float(inner.min()) >= -tol, f"conflict: {inner.tolist()}"


def assert_weights_reproduce_direction(agg: Aggregator, jac: torch.Tensor) -> None:
    out = agg(jac)
    torch.testing.assert_close(agg.last_weights @ jac, out, rtol=1e-9, atol=1e-12)


def assert_kkt_dual_cone_projection(jac: torch.Tensor, weights_row: torch.Tensor, i: int, tol: float) -> None:
    """``π = w @ J`` is the projection of row i onto {x : J x ≥ 0}: KKT of min ‖x − g_i‖² s.t. Jx ≥ 0."""
    gram = jac @ jac.T
    mu = weights_row.clone()
    mu[i] -= 1.0  # multipliers: π = g_i + Jᵀ μ
    constraint = gram @ weights_row  # = J π
    scale = float(gram.diagonal().max())
    assert float(mu.min()) >= -tol, f"dual infeasible: {mu.tolist()}"
    assert float(constraint.min()) >= -tol * scale, f"primal infeasible: {constraint.tolist()}"
    assert float((mu * constraint).abs().max()) <= tol * scale * max(1.0, float(mu.abs().max()))


def brute_force_simplex_min(f, k: int, starts: int = 8) -> tuple[float, np.ndarray]:
    """Minimum of ``f`` over the simplex: dense grid (K ≤ 3) refined by multi-start SLSQP."""
    best_val, best_x = math.inf, None
    if k <= 3:
        n = 400 if k == 2 else 120
        for a in range(n + 1):
            rest = range(n - a + 1) if k == 3 else [n - a]
            for b in rest:
                x = np.array([a, b] + ([n - a - b] if k == 3 else []), dtype=float) / n
                val = f(x)
                if val < best_val:
                    best_val, best_x = val, x
    rng = np.random.default_rng(0)
    x0s = [best_x] if best_x is not None else []
    x0s += [rng.dirichlet(np.ones(k)) for _ in range(starts)]
    for x0 in x0s:
        res = minimize(
            f,
            x0,
            bounds=[(0.0, 1.0)] * k,
            constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
            method="SLSQP",
            options={"ftol": 1e-15, "maxiter": 500},
        )
        if res.fun < best_val and abs(res.x.sum() - 1) < 1e-9 and res.x.min() > -1e-9:
            best_val, best_x = float(res.fun), res.x
    return best_val, best_x


# ----------------------------------------------------------------------------- registry / metadata
def test_registry_names_and_types():
    assert set(AGGREGATORS) == {
        "mgda", "pcgrad", "graddrop", "gradvac", "cagrad", "imtl_g",
        "nash_mtl", "aligned_mtl", "upgrad", "sum", "mean",
    }
    for cls in AGGREGATORS.values():
        assert issubclass(cls, Aggregator)


@pytest.mark.parametrize("name", NAMES)
def test_class_metadata(name):
    cls = AGGREGATORS[name]
    assert cls.default_target in TARGETS
    assert isinstance(cls.supports_representation, bool)
    if cls.default_target == "representation":
        assert cls.supports_representation
    module_doc = __import__(cls.__module__, fromlist=["_"]).__doc__
    if name not in ("sum", "mean"):
        assert "Reference" in module_doc and any(str(y) in module_doc for y in range(2018, 2025))


def test_targets_follow_papers():
    assert MGDA.default_target == "representation"  # MGDA-UB
    assert GradDrop.default_target == "representation"  # a layer on the last shared activations
    assert IMTLG.default_target == "representation"  # Algorithm 1 differentiates the shared feature z
    for cls in (PCGrad, GradVac, CAGrad, NashMTL, AlignedMTL, UPGrad, SumAggregator, MeanAggregator):
        assert cls.default_target == "parameters"
    for cls in (PCGrad, GradVac, CAGrad, NashMTL, UPGrad):
        assert not cls.supports_representation


# ----------------------------------------------------------------------------- properties of every aggregator
# K > d random Gaussians are often Pareto-stationary, where Nash-MTL has no solution and warns
@pytest.mark.filterwarnings("ignore:NashMTL.*no solution:RuntimeWarning")
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_shape_and_finite(name, shape):
    assert_shape_and_finite(make(name), randn(*shape, seed=sum(shape)))


@pytest.mark.parametrize("name", NAMES)
def test_float32_and_conflicting_input(name):
    out = assert_shape_and_finite(make(name), conflicting(4, 30, seed=3).float())
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [2, 3, 5])
def test_no_nan_with_a_zero_row(name, k):
    jac = randn(k, 8, seed=k)
    jac[1] = 0.0
    assert_shape_and_finite(make(name), jac)


@pytest.mark.parametrize("name", NAMES)
def test_all_zero_jacobian_gives_zero(name):
    out = assert_shape_and_finite(make(name), torch.zeros(3, 6, dtype=F64))
    assert float(out.abs().max()) == 0.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [1, 2, 4])
def test_identical_rows_give_a_parallel_direction(name, k):
    # GradDrop too: with identical rows every coordinate has purity 0 or 1, so the
    # sign choice is deterministic and the output is exactly the sum.
    assert_parallel_for_identical_rows(make(name), randn(1, 12, seed=k)[0], k)


@pytest.mark.parametrize("name", ORDER_FREE)
@pytest.mark.parametrize("k", [2, 3, 5])
def test_permutation_invariance(name, k):
    perm = torch.roll(torch.arange(k), 1)
    assert_permutation_invariant(name, conflicting(k, 7, seed=10 + k), perm)


@pytest.mark.parametrize("name", ["pcgrad", "gradvac"])
def test_permutation_invariance_two_tasks_for_random_order_methods(name):
    # with K = 2 each task has a single other task, so the random order plays no role
    assert_permutation_invariant(name, conflicting(2, 7, seed=1), torch.tensor([1, 0]))


@pytest.mark.parametrize("name", NAMES)
def test_input_validation(name):
    agg = make(name)
    bad = {
        "1-D": torch.ones(4, dtype=F64),
        "3-D": torch.ones(2, 3, 4, dtype=F64),
        "no rows": torch.ones(0, 4, dtype=F64),
        "NaN": torch.tensor([[1.0, float("nan")], [0.0, 1.0]], dtype=F64),
        "inf": torch.tensor([[1.0, 2.0], [float("-inf"), 1.0]], dtype=F64),
        "integer": torch.ones(2, 3, dtype=torch.int64),
    }
    for label, jac in bad.items():
        with pytest.raises(ValueError, match=type(agg).__name__):
            agg(jac)
    with pytest.raises(ValueError, match="non-finite"):
        agg(bad["NaN"])


@pytest.mark.parametrize("name", WEIGHTED)
def test_weights_reproduce_direction_and_gram_only_path(name):
    jac = conflicting(4, 9, seed=5)
    assert_weights_reproduce_direction(make(name), jac)
    # the Gram-only entry point gives the same weights as forward (fresh instances: same state/seed)
    from_forward = make(name)
    from_forward(jac)
    torch.testing.assert_close(make(name).weights(jac @ jac.T), from_forward.last_weights, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_reset_restores_initial_behaviour(name):
    jac1, jac2 = conflicting(3, 6, seed=1), conflicting(3, 6, seed=2)
    agg = make(name)
    first = agg(jac1)
    agg(jac2)
    agg.reset()
    assert agg.last_weights is None
    torch.testing.assert_close(agg(jac1), first)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_resumes_identically(name):
    jac1, jac2 = conflicting(3, 6, seed=3), conflicting(3, 6, seed=4)
    agg = make(name)
    agg(jac1)
    state = agg.state_dict()
    expected = agg(jac2)
    resumed = make(name)
    resumed.load_state_dict(state)
    torch.testing.assert_close(resumed(jac2), expected)


# ----------------------------------------------------------------------------- sum / mean
def test_sum_and_mean():
    jac = randn(3, 5, seed=0)
    torch.testing.assert_close(SumAggregator()(jac), jac.sum(0))
    torch.testing.assert_close(MeanAggregator()(jac), jac.mean(0))


# ----------------------------------------------------------------------------- PCGrad
def test_pcgrad_hand_computed_two_tasks():
    jac = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=F64)
    # g1 - <g1,g2>/|g2|^2 g2 = (1,0) + (-1,1)/2 = (0.5, 0.5);  g2 - <g2,g1>/|g1|^2 g1 = (0, 1)
    agg = PCGrad()
    torch.testing.assert_close(agg(jac), torch.tensor([0.5, 1.5], dtype=F64))
    torch.testing.assert_close(agg.last_weights, torch.tensor([2.0, 1.5], dtype=F64))


@pytest.mark.parametrize("seed", range(10))
def test_pcgrad_two_tasks_never_conflicts(seed):
    jac = conflicting(2, 6, seed)
    assert float(jac[0] @ jac[1]) < 0
    assert_non_conflicting(PCGrad(seed=seed)(jac), jac)


def test_pcgrad_without_conflicts_is_the_sum():
    jac = randn(5, 8, seed=0).abs()  # all inner products positive
    torch.testing.assert_close(PCGrad()(jac), jac.sum(0))


def _pcgrad_reference(jac, orders):
    """Direct vector implementation of the paper's Algorithm 1 for given orders."""
    projected = []
    for i, order in enumerate(orders):
        g = jac[i].clone()
        for j in order:
            dot = g @ jac[j]
            if dot < 0:
                g = g - dot / (jac[j] @ jac[j]) * jac[j]
        projected.append(g)
    return torch.stack(projected)


@pytest.mark.parametrize("seed", range(6))
def test_pcgrad_more_than_two_tasks_per_task_properties(seed):
    """For K > 2 (what the paper's procedure guarantees per task):

    each projected gradient matches the vector algorithm, is no longer than the
    original (orthogonal projections are non-expansive), and does not conflict
    with the last task it was checked against.
    """
    k = 4
    jac = conflicting(k, 5, seed)
    agg = PCGrad(seed=seed)
    orders = agg._draw_orders(k)
    coeffs = agg.projection_coefficients(jac @ jac.T, orders)
    projected = coeffs @ jac
    torch.testing.assert_close(projected, _pcgrad_reference(jac, orders))
    assert bool((projected.norm(dim=1) <= jac.norm(dim=1) * (1 + 1e-12)).all())
    for i, order in enumerate(orders):
        assert float(projected[i] @ jac[order[-1]]) >= -1e-12
    # forward draws the same orders from a fresh generator with the same seed
    torch.testing.assert_close(PCGrad(seed=seed)(jac), projected.sum(0))


def test_pcgrad_non_conflict_does_not_extend_to_three_tasks():
    """The K = 2 guarantee is not a K > 2 property: here every choice of orders conflicts."""
    jac = torch.tensor([[-2.0, 0.0], [0.0, -1.0], [1.0, 1.0]], dtype=F64)
    agg = PCGrad()
    per_task = [list(itertools.permutations([j for j in range(3) if j != i])) for i in range(3)]
    for orders in itertools.product(*per_task):
        direction = agg.projection_coefficients(jac @ jac.T, [list(o) for o in orders]).sum(0) @ jac
        assert float((jac @ direction).min()) <= -0.5 + 1e-12


def test_pcgrad_seeded_reproducibility():
    jac = conflicting(5, 6, seed=0)
    a, b, c = PCGrad(seed=7), PCGrad(seed=7), PCGrad(seed=8)
    outs_a = [a(jac) for _ in range(4)]
    outs_b = [b(jac) for _ in range(4)]
    outs_c = [c(jac) for _ in range(4)]
    for x, y in zip(outs_a, outs_b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert any(not torch.allclose(x, y) for x, y in zip(outs_a, outs_c))


# ----------------------------------------------------------------------------- MGDA
def _min_norm_brute(jac):
    gram = (jac @ jac.T).numpy()
    return brute_force_simplex_min(lambda w: float(w @ gram @ w), jac.shape[0])


@pytest.mark.parametrize("k,d,seed", [(2, 4, 0), (2, 3, 1), (3, 5, 2), (3, 2, 3), (3, 8, 4), (4, 6, 5)])
def test_mgda_is_the_min_norm_point(k, d, seed):
    jac = conflicting(k, d, seed)
    best, _ = _min_norm_brute(jac)
    tight = MGDA(max_iter=5000, tol=0.0)
    out = tight(jac)
    w = tight.last_weights
    assert float(w.min()) >= 0 and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(out @ out) == pytest.approx(best, abs=1e-10)
    assert float(out @ out) <= best + 1e-12
    # the min-norm point is unique: compare with the direction from the brute-force weights
    _, w_best = _min_norm_brute(jac)
    torch.testing.assert_close(out, torch.tensor(w_best) @ jac, rtol=0, atol=1e-4)
    # defaults (authors' max_iter/tol) are close; optimality: <d, g_k> >= |d|^2 for all k
    out_default = MGDA()(jac)
    assert float(out_default @ out_default) == pytest.approx(best, abs=1e-6)
    assert float((jac @ out).min()) >= float(out @ out) - 1e-9


def test_mgda_two_tasks_closed_form():
    jac = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    # min over γ of |γ(1,0) + (1-γ)(0,2)|^2 → γ = 4/5
    agg = MGDA()
    torch.testing.assert_close(agg(jac), torch.tensor([0.8, 0.4], dtype=F64))
    torch.testing.assert_close(agg.last_weights, torch.tensor([0.8, 0.2], dtype=F64))


def test_mgda_plain_frank_wolfe_is_close():
    jac = conflicting(4, 6, seed=5)
    best, _ = _min_norm_brute(jac)
    out = MGDA(away_steps=False, max_iter=5000, tol=0.0)(jac)
    assert float(out @ out) == pytest.approx(best, rel=1e-3, abs=1e-6)


def test_mgda_normalizations():
    jac = conflicting(3, 5, seed=1) * torch.tensor([[1.0], [10.0], [0.1]], dtype=F64)
    norms = jac.norm(dim=1)
    losses = torch.tensor([0.5, 2.0, 4.0], dtype=F64)

    def expected(normalizers):
        ref = MGDA(max_iter=5000, tol=0.0)
        ref(jac / normalizers.unsqueeze(1))
        return ref.last_weights

    for mode, normalizers in [("l2", norms), ("loss", losses), ("loss+", losses * norms)]:
        agg = MGDA(normalization=mode, max_iter=5000, tol=0.0)
        out = agg(jac, losses=losses)
        torch.testing.assert_close(agg.last_weights, expected(normalizers), rtol=1e-7, atol=1e-9)
        # weights are applied to the raw gradients (authors' code: they become loss scales)
        torch.testing.assert_close(out, agg.last_weights @ jac)
    with pytest.raises(ValueError, match="loss"):
        MGDA(normalization="loss")(jac)
    with pytest.raises(ValueError, match="positive"):
        MGDA(normalization="loss")(jac, losses=torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError):
        MGDA(normalization="bogus")


# ----------------------------------------------------------------------------- IMTL-G
@pytest.mark.parametrize("k,d,seed", [(2, 5, 0), (3, 6, 1), (5, 12, 2), (4, 4, 3)])
def test_imtl_equal_projections_on_unit_gradients(k, d, seed):
    jac = conflicting(k, d, seed)
    agg = IMTLG()
    out = agg(jac)
    projections = (jac / jac.norm(dim=1, keepdim=True)) @ out
    torch.testing.assert_close(projections, projections[0].expand(k), rtol=1e-9, atol=1e-10)
    assert float(agg.last_weights.sum()) == pytest.approx(1.0, abs=1e-12)


def test_imtl_matches_the_papers_closed_form():
    jac = conflicting(4, 9, seed=7)
    units = jac / jac.norm(dim=1, keepdim=True)
    d_mat = jac[0:1] - jac[1:]
    u_mat = units[0:1] - units[1:]
    alpha_rest = (jac[0] @ u_mat.T) @ torch.linalg.inv(d_mat @ u_mat.T)
    alpha = torch.cat([(1 - alpha_rest.sum()).unsqueeze(0), alpha_rest])
    agg = IMTLG()
    agg(jac)
    torch.testing.assert_close(agg.last_weights, alpha, rtol=1e-8, atol=1e-10)


def test_imtl_paper_normalisation_can_give_ascent_and_ensure_descent_fixes_it():
    """Documented caveat: for some ill-conditioned J the paper's Σα = 1 gives equal negative projections."""
    seed = next(s for s in range(500) if float(IMTLG()(randn(5, 5, s)) @ randn(5, 5, s)[0]) < 0)
    jac = randn(5, 5, seed)
    units = jac / jac.norm(dim=1, keepdim=True)
    paper = units @ IMTLG()(jac)
    fixed_agg = IMTLG(ensure_descent=True)
    fixed = units @ fixed_agg(jac)
    assert float(paper.max()) < 0
    torch.testing.assert_close(fixed, -paper)
    torch.testing.assert_close(fixed, fixed[0].expand(5), rtol=1e-9, atol=1e-10)
    assert float(fixed_agg.last_weights.sum()) == pytest.approx(-1.0)


# ----------------------------------------------------------------------------- Nash-MTL
@pytest.mark.parametrize("k,d,seed", [(2, 5, 0), (3, 6, 1), (5, 12, 2), (6, 4, 3)])
@pytest.mark.parametrize("normalize_gram", [True, False])
def test_nash_weights_solve_the_bargaining_system(k, d, seed, normalize_gram):
    jac = randn(k, d, seed) + 0.5  # shared component: not Pareto-stationary
    gram = jac @ jac.T
    agg = NashMTL(max_norm=0.0, normalize_gram=normalize_gram)
    out = agg(jac)
    alpha = agg.last_weights
    assert agg.last_converged
    assert float(alpha.min()) > 0
    torch.testing.assert_close(gram @ alpha, 1.0 / alpha, rtol=1e-10, atol=0)
    # the exact bargaining solution has |Δθ|^2 = αᵀGα = K
    assert float(out @ out) == pytest.approx(k, rel=1e-10)


@pytest.mark.parametrize("scale", [1e-3, 1e-2, 1.0, 1e2])
def test_nash_matches_the_authors_constraint_at_every_gradient_scale(scale):
    """The authors' code (methods/weight_methods.py, NashMTL) normalises Gᵀ G by its Frobenius norm f
    and imposes log(α_i f) + log((Ĝα)_i) ≥ 0 with Ĝ = GᵀG / f, active at the optimum:
    α_i · f · (Ĝα)_i = 1.  So ‖Δθ‖ = √K before clipping, whatever the scale of the gradients."""
    jac = scale * (randn(3, 20, seed=7) + 0.3)
    gram = jac @ jac.T
    f = torch.linalg.matrix_norm(gram)
    alpha = NashMTL(max_norm=0.0).bargaining_weights(gram)
    torch.testing.assert_close(alpha * f * ((gram / f) @ alpha), torch.ones(3, dtype=F64), rtol=1e-9, atol=0)
    unclipped = NashMTL(max_norm=0.0)(jac)
    assert float(unclipped.norm()) == pytest.approx(math.sqrt(3), rel=1e-9)
    # and with the authors' default max_norm = 1 the direction is clipped to norm 1
    assert float(NashMTL()(jac).norm()) == pytest.approx(1.0, rel=1e-12)
    # the direction does not depend on the scale: α(c²G) = α(G)/c, so (cJ)ᵀα(c²G) = Jᵀα(G)
    reference = NashMTL(max_norm=0.0)(randn(3, 20, seed=7) + 0.3)
    torch.testing.assert_close(unclipped, reference, rtol=1e-8, atol=1e-12)


def test_nash_small_gradients_reproduction_of_issue_18():
    """Issue 18's reproduction: J = 1e-2·randn(2, 20) (seed 0).  The previous solution on the
    normalised Gram matrix gave a direction of norm 0.074; the authors' definition (and TorchJD's
    NashMTL) gives √2 before clipping to max_norm = 1, i.e. 1.0."""
    torch.manual_seed(0)
    jac = (1e-2 * torch.randn(2, 20)).double()
    assert float(NashMTL(max_norm=0.0)(jac).norm()) == pytest.approx(math.sqrt(2), rel=1e-9)
    assert float(NashMTL()(jac).norm()) == pytest.approx(1.0, rel=1e-12)


def test_nash_conflicting_gradients_and_max_norm():
    jac = torch.tensor([[1.0, 0.2, 0.0], [-0.5, 1.0, 0.1], [0.1, 0.1, 3.0]], dtype=F64)  # g1, g2 conflict
    alpha = NashMTL(max_norm=0.0, normalize_gram=False).bargaining_weights(jac @ jac.T)
    torch.testing.assert_close((jac @ jac.T) @ alpha, 1.0 / alpha, rtol=1e-10, atol=0)
    clipped = NashMTL(max_norm=0.5, normalize_gram=False)
    out = clipped(jac)
    assert float(out.norm()) == pytest.approx(0.5, rel=1e-12)
    assert_parallel(out, alpha @ jac)


def test_nash_zero_gradient_gets_zero_weight():
    jac = randn(3, 5, seed=1) + 0.5
    jac[2] = 0.0
    agg = NashMTL(max_norm=0.0, normalize_gram=False)
    agg(jac)
    alpha = agg.last_weights
    assert float(alpha[2]) == 0.0
    sub = jac[:2] @ jac[:2].T
    torch.testing.assert_close(sub @ alpha[:2], 1.0 / alpha[:2], rtol=1e-10, atol=0)


def test_nash_update_weights_every():
    jacs = [randn(3, 6, seed=s) + 0.3 for s in range(5)]
    agg = NashMTL(update_weights_every=3, max_norm=0.0)
    weights = []
    for jac in jacs:
        agg(jac)
        weights.append(agg.last_weights.clone())
    torch.testing.assert_close(weights[1], weights[0], rtol=0, atol=0)
    torch.testing.assert_close(weights[2], weights[0], rtol=0, atol=0)
    torch.testing.assert_close(weights[3], NashMTL(max_norm=0.0).bargaining_weights(jacs[3] @ jacs[3].T))
    torch.testing.assert_close(weights[4], weights[3], rtol=0, atol=0)
    agg.reset()
    assert agg.step == 0


def test_nash_pareto_stationary_falls_back_with_a_warning():
    jac = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=F64)
    agg = NashMTL(max_iter=30)
    with pytest.warns(RuntimeWarning, match="no solution"):
        out = agg(jac)
    assert bool(torch.isfinite(out).all())
    assert agg.last_converged is False


# ----------------------------------------------------------------------------- UPGrad
@pytest.mark.parametrize("k,d,seed", [(2, 4, 0), (3, 5, 1), (4, 3, 2), (5, 10, 3), (6, 4, 4), (8, 3, 5)])
def test_upgrad_is_non_conflicting(k, d, seed):
    jac = conflicting(k, d, seed)
    assert_non_conflicting(UPGrad()(jac), jac)


@pytest.mark.parametrize("k,d,seed", [(2, 4, 0), (3, 5, 1), (4, 3, 2), (5, 10, 3), (6, 4, 4)])
def test_upgrad_projections_satisfy_kkt(k, d, seed):
    jac = conflicting(k, d, seed)
    agg = UPGrad()
    w = agg.projection_weights(jac @ jac.T)
    for i in range(k):
        assert_kkt_dual_cone_projection(jac, w[i], i, tol=1e-10)
    agg(jac)
    torch.testing.assert_close(agg.last_weights, w.mean(0))


def test_upgrad_projection_matches_brute_force():
    jac = conflicting(3, 4, seed=9)
    w = UPGrad().projection_weights(jac @ jac.T)
    a = jac.numpy()
    for i in range(3):
        g = a[i]
        res = minimize(
            lambda x: float((x - g) @ (x - g)),
            g.copy(),
            jac=lambda x: 2 * (x - g),
            constraints=[{"type": "ineq", "fun": lambda x: a @ x, "jac": lambda x: a}],
            method="SLSQP",
            options={"ftol": 1e-15, "maxiter": 500},
        )
        np.testing.assert_allclose((w[i] @ jac).numpy(), res.x, atol=1e-6)


def test_upgrad_without_conflicts_is_the_mean():
    jac = randn(4, 6, seed=0).abs()
    torch.testing.assert_close(UPGrad()(jac), jac.mean(0))


# ----------------------------------------------------------------------------- CAGrad
def test_cagrad_c_zero_is_the_mean():
    jac = conflicting(4, 7, seed=0)
    for rescale in (0, 1, 2):
        torch.testing.assert_close(CAGrad(c=0.0, rescale=rescale)(jac), jac.mean(0))


@pytest.mark.parametrize("k,d,seed", [(2, 5, 0), (3, 4, 1), (3, 6, 2), (4, 8, 3)])
@pytest.mark.parametrize("c", [0.4, 0.8])
def test_cagrad_dual_optimum_and_strong_duality(k, d, seed, c):
    jac = conflicting(k, d, seed)
    gram = jac @ jac.T
    agg = CAGrad(c=c, rescale=0)
    w = agg.dual_weights(gram)
    value = float(cagrad_objective(w, gram, c))
    g_np = gram.numpy()
    g0_norm = math.sqrt(g_np.sum()) / k

    def objective(x):  # F(w) = wᵀG1/K + c|g0| sqrt(wᵀGw), in numpy for the brute force
        return float(x @ g_np.sum(1) / k + c * g0_norm * math.sqrt(max(x @ g_np @ x, 0.0)))

    best, _ = brute_force_simplex_min(objective, k)
    assert float(cagrad_objective(w, gram, c)) == pytest.approx(objective(w.numpy()), rel=1e-12)
    assert value <= best + 1e-10
    assert value == pytest.approx(best, abs=1e-8)
    # primal: d = g0 + c|g0| g_w/|g_w| lies on the trust-region boundary and attains min_k <g_k, d> = F(w*)
    out = agg(jac)
    g0 = jac.mean(0)
    assert float((out - g0).norm()) == pytest.approx(c * float(g0.norm()), rel=1e-10)
    assert float((jac @ out).min()) == pytest.approx(value, abs=1e-7)
    # authors' rescaling
    torch.testing.assert_close(CAGrad(c=c)(jac), out / (1 + c**2))
    torch.testing.assert_close(CAGrad(c=c, rescale=2)(jac), out / (1 + c))


def test_simplex_projection():
    v = torch.tensor([0.5, 1.2, -0.3, 0.1], dtype=F64)
    p = project_to_simplex(v)
    assert float(p.sum()) == pytest.approx(1.0) and float(p.min()) >= 0
    _, x = brute_force_simplex_min(lambda x: float(((x - v.numpy()) ** 2).sum()), 4)
    np.testing.assert_allclose(p.numpy(), x, atol=1e-6)


# ----------------------------------------------------------------------------- Aligned-MTL
@pytest.mark.parametrize("k,d,seed", [(2, 5, 0), (3, 8, 1), (5, 3, 2), (4, 4, 3)])
def test_aligned_mtl_has_condition_number_one_on_the_span(k, d, seed):
    jac = conflicting(k, d, seed)
    agg = AlignedMTL()
    b = agg.alignment_matrix(jac @ jac.T)
    aligned = b @ jac
    sv_aligned = torch.linalg.svdvals(aligned)
    sv = torch.linalg.svdvals(jac)
    rank = int((sv > sv[0] * 1e-10).sum())
    nonzero = sv_aligned[:rank]
    assert float(nonzero.max() / nonzero.min()) == pytest.approx(1.0, abs=1e-9)
    assert float(nonzero[0]) == pytest.approx(float(sv[rank - 1]), rel=1e-9)  # scale: smallest singular value
    assert float(sv_aligned[rank:].abs().sum()) <= 1e-9 * float(sv[0])
    # same span (row space) as J, and the direction is the sum of the aligned rows
    torch.testing.assert_close(aligned @ torch.linalg.pinv(jac) @ jac, aligned)
    torch.testing.assert_close(agg(jac), aligned.sum(0))


def test_aligned_mtl_scale_modes():
    jac = conflicting(3, 6, seed=4)
    eig = torch.linalg.eigvalsh(jac @ jac.T)
    for mode, sigma in [("median", eig.median().sqrt()), ("rmse", eig.mean().sqrt())]:
        aligned = AlignedMTL(scale_mode=mode).alignment_matrix(jac @ jac.T) @ jac
        torch.testing.assert_close(torch.linalg.svdvals(aligned), sigma.expand(3))


def test_aligned_mtl_rank_threshold():
    # a direction with singular value 1e-5 σ_max is below the authors' float32-based threshold
    basis = torch.linalg.qr(randn(6, 3, seed=0).T)[0].T  # orthonormal rows
    jac = torch.diag(torch.tensor([2.0, 1.0, 1e-5], dtype=F64)) @ basis
    default = AlignedMTL().alignment_matrix(jac @ jac.T) @ jac
    torch.testing.assert_close(torch.linalg.svdvals(default), torch.tensor([1.0, 1.0, 0.0], dtype=F64))
    exact = AlignedMTL(rank_tol=0.0).alignment_matrix(jac @ jac.T) @ jac
    torch.testing.assert_close(torch.linalg.svdvals(exact), torch.full((3,), 1e-5, dtype=F64))


# ----------------------------------------------------------------------------- GradVac
def test_gradvac_first_step_is_pcgrad():
    # with all targets at their initial value 0 the adjustment is PCGrad's projection
    jac = conflicting(4, 6, seed=2)
    torch.testing.assert_close(GradVac(seed=3)(jac), PCGrad(seed=3)(jac))


def _cos(a, b):
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def test_gradvac_ema_rule_step_by_step():
    beta = 0.25
    agg = GradVac(beta=beta)
    assert agg.targets is None and agg.num_steps == 0
    expected = torch.zeros(2, 2, dtype=F64)
    for step, seed in enumerate(range(4)):
        jac = randn(2, 5, seed=seed)
        # for K = 2 the cosine is measured on the original gradients (each task has one partner)
        c = _cos(jac[0], jac[1])
        expected[0, 1] = (1 - beta) * expected[0, 1] + beta * c
        expected[1, 0] = (1 - beta) * expected[1, 0] + beta * c
        agg(jac)
        torch.testing.assert_close(agg.targets, expected, rtol=1e-12, atol=1e-15)
        assert agg.num_steps == step + 1
    agg.reset()
    assert agg.targets is None and agg.num_steps == 0 and agg.last_weights is None


def _gradvac_reference_step(jac, targets, beta, generator):
    """Vector implementation of the paper's Algorithm 1 (orders drawn as documented)."""
    k = jac.shape[0]
    targets = targets.clone()
    adjusted = []
    for i in range(k):
        others = [j for j in range(k) if j != i]
        order = [others[p] for p in torch.randperm(k - 1, generator=generator).tolist()]
        g = jac[i].clone()
        for j in order:
            phi = _cos(g, jac[j])
            if phi < targets[i, j]:
                t = float(targets[i, j])
                g = g + g.norm() * (t * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - t**2)) / (
                    jac[j].norm() * math.sqrt(1 - t**2)
                ) * jac[j]
            targets[i, j] = (1 - beta) * targets[i, j] + beta * phi
        adjusted.append(g)
    return torch.stack(adjusted).sum(0), targets


def test_gradvac_matches_algorithm_1_over_several_steps():
    beta, seed, k = 0.3, 4, 4
    agg = GradVac(beta=beta, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    targets = torch.zeros(k, k, dtype=F64)
    for step in range(5):
        jac = conflicting(k, 6, seed=step)
        expected, targets = _gradvac_reference_step(jac, targets, beta, generator)
        torch.testing.assert_close(agg(jac), expected)
        torch.testing.assert_close(agg.targets, targets)
    assert bool((targets.diagonal() == 0).all()) and float(targets.abs().max()) > 0.1


def test_gradvac_adjustment_reaches_the_target_cosine():
    jac = torch.tensor([[1.0, 0.2, 0.0], [0.3, 1.0, -0.5]], dtype=F64)
    agg = GradVac(beta=0.0)
    agg(jac)  # creates the state (targets stay 0 with beta = 0)
    state = agg.state_dict()
    target = 0.9
    state["_extra_state"]["targets"] = torch.full((2, 2), target, dtype=F64)
    agg.load_state_dict(state)
    agg(jac)
    coeffs = agg.last_weights  # d = g1' + g2' with g1' = g1 + a g2, g2' = g2 + b g1
    a = float(coeffs[1]) - 1.0
    b = float(coeffs[0]) - 1.0
    assert _cos(jac[0] + a * jac[1], jac[1]) == pytest.approx(target, abs=1e-12)
    assert _cos(jac[1] + b * jac[0], jac[0]) == pytest.approx(target, abs=1e-12)
    # a pair already above its target is left alone
    agg2 = GradVac(beta=0.0)
    out = agg2(torch.tensor([[1.0, 0.1], [1.0, 0.0]], dtype=F64))
    torch.testing.assert_close(out, torch.tensor([2.0, 0.1], dtype=F64))


def test_gradvac_rejects_a_different_number_of_tasks():
    agg = GradVac()
    agg(randn(3, 4, seed=0))
    with pytest.raises(ValueError, match="reset"):
        agg(randn(2, 4, seed=0))
    agg.reset()
    assert_shape_and_finite(agg, randn(2, 4, seed=0))


# ----------------------------------------------------------------------------- GradDrop
def _graddrop_parts(jac):
    purity = 0.5 * (1 + jac.sum(0) / jac.abs().sum(0))
    return purity, jac.clamp(min=0).sum(0), jac.clamp(max=0).sum(0)


def test_graddrop_seeded_reproducibility():
    jac = conflicting(3, 200, seed=0)
    a, b, c = GradDrop(seed=1), GradDrop(seed=1), GradDrop(seed=2)
    for _ in range(3):
        out_a, out_b, out_c = a(jac), b(jac), c(jac)
        torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
        assert not torch.equal(out_a, out_c)


def test_graddrop_sign_rule():
    jac = conflicting(4, 500, seed=1)
    purity, positive, negative = _graddrop_parts(jac)
    out = GradDrop(seed=5)(jac)
    # every coordinate keeps only the positive or only the negative values ...
    chose_positive = torch.isclose(out, positive, rtol=1e-12, atol=1e-15)
    chose_negative = torch.isclose(out, negative, rtol=1e-12, atol=1e-15)
    assert bool((chose_positive | chose_negative).all())
    # ... and the sign is positive exactly where P > U, with U the documented draw
    u = torch.rand(500, generator=torch.Generator().manual_seed(5), dtype=F64)
    mixed = (positive != 0) & (negative != 0)
    assert bool((chose_positive[mixed] == (purity > u)[mixed]).all())
    # coordinates where all gradients share a sign are always kept
    torch.testing.assert_close(out[negative == 0], positive[negative == 0])
    torch.testing.assert_close(out[positive == 0], negative[positive == 0])


def test_graddrop_keeps_positive_sign_with_probability_purity():
    jac = torch.tensor([[3.0, 1.0, 1.0], [-1.0, -1.0, -3.0]], dtype=F64)  # P = 0.75, 0.5, 0.25
    purity, positive, _ = _graddrop_parts(jac)
    agg = GradDrop(seed=0)
    n = 4000
    hits = torch.zeros(3, dtype=F64)
    for _ in range(n):
        hits += (agg(jac) == positive).to(F64)
    freq = hits / n
    assert torch.allclose(freq, purity, atol=4 * math.sqrt(0.25 / n))


def test_graddrop_leak():
    jac = conflicting(3, 50, seed=2)
    torch.testing.assert_close(GradDrop(leak=1.0)(jac), jac.sum(0))
    # a per-task leak of 1 keeps that task entirely: d = g_0 + dropped(others)
    purity, _, _ = _graddrop_parts(jac)
    out = GradDrop(leak=[1.0, 0.0, 0.0], seed=3)(jac)
    u = torch.rand(50, generator=torch.Generator().manual_seed(3), dtype=F64)
    rest = jac[1:]
    expected = jac[0] + torch.where(purity > u, rest.clamp(min=0).sum(0), 0.0) + torch.where(
        purity < u, rest.clamp(max=0).sum(0), 0.0
    )
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError):
        GradDrop(leak=1.5)
    with pytest.raises(ValueError, match="leak"):
        GradDrop(leak=[0.0, 1.0])(jac)
