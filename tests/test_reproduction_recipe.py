"""The pieces of Transfer-Learning-Library's digits recipe (issue 13) and the suite that states its budget."""
import math

import pytest
import torch

from adapt.methods import CDAN, DANN
from adapt.schedules import dann_ramp, ramp_input
from benchmarks.config import ConfigError, load_experiment
from benchmarks.engine import lr_factor
from benchmarks.experiment import build_trainer, run_experiment
from benchmarks.registry import METHODS, build
from benchmarks.suite import plan_suite

DA = "configs/experiments/digits_da.yaml"
SUITE = "configs/suites/digits_tllib.yaml"


def tllib_warm_start(i: int, alpha: float = 1.0, max_iters: int = 1000) -> float:
    """TLLib's WarmStartGradientReverseLayer coefficient (lo 0, hi 1), written from its formula."""
    return 2.0 / (1.0 + math.exp(-alpha * i / max_iters)) - 1.0


@pytest.mark.parametrize("step", [0, 1, 10, 999, 2500, 10_000, 49_999])
def test_inverse_schedule_is_tllibs_lambda_over_absolute_steps(step):
    expected = (1.0 + 0.001 * step) ** -0.75
    # the progress argument is irrelevant: the schedule does not stretch with the run's length
    for progress in (0.0, 0.3, 1.0):
        assert lr_factor("inverse", progress, step, 0.001, 0.75) == pytest.approx(expected, rel=1e-12)
    assert lr_factor("inverse", 0.5, step, 0.0003, 0.75) == pytest.approx((1.0 + 0.0003 * step) ** -0.75)


def test_ramp_steps_10000_is_tllibs_warm_start_grl():
    for i in range(0, 10_001, 250):
        assert dann_ramp(ramp_input(0.0, i, 10_000)) == pytest.approx(tllib_warm_start(i), abs=1e-12)
    # past the horizon ours is held at its end value, TLLib's creeps on towards 1
    for i in (10_001, 20_000, 50_000):
        assert abs(dann_ramp(ramp_input(0.0, i, 10_000)) - tllib_warm_start(i)) < 1e-4
    # without ramp_steps the ramp reads training progress, as before
    assert ramp_input(0.37, 12_345, None) == 0.37
    with pytest.raises(ValueError, match="ramp_steps"):
        ramp_input(0.0, 0, 0)


def test_dann_and_cdan_coefficient_follow_the_absolute_step_when_asked():
    torch.manual_seed(0)
    source, target = torch.randn(8, 6), torch.randn(8, 6)
    logits_s, logits_t = torch.randn(8, 3), torch.randn(8, 3)
    by_steps = DANN(6, hidden_sizes=(8,), ramp_steps=10_000)
    by_progress = DANN(6, hidden_sizes=(8,))
    for method in (by_steps, by_progress):
        method.alignment_terms(source_features=source, target_features=target, progress=0.5, step=1_000)
    assert by_steps.adversarial.coefficient == pytest.approx(tllib_warm_start(1_000))
    assert by_progress.adversarial.coefficient == pytest.approx(dann_ramp(0.5))
    cdan = CDAN(6, 3, hidden_sizes=(8,), ramp_steps=10_000)
    cdan.alignment_terms(
        source_features=source, target_features=target, source_logits=logits_s, target_logits=logits_t,
        progress=0.9, step=3_000,
    )
    assert cdan.coefficient == pytest.approx(tllib_warm_start(3_000))


def test_trainer_sets_the_inverse_lr_from_the_absolute_step(tmp_path, tiny_overrides):
    cfg = load_experiment(
        DA, [*tiny_overrides, "optim.name=sgd", "optim.lr=0.2", "optim.lr_schedule=inverse", "optim.lr_gamma=0.5", "optim.lr_decay=0.75"]
    )
    trainer = build_trainer(cfg, tmp_path)
    trainer.fit()
    last_step = trainer.global_step - 1  # the lr of the last step taken
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * (1 + 0.5 * last_step) ** -0.75)


def test_test_every_epoch_adds_a_learning_curve_without_changing_training(tmp_path, tiny_overrides):
    plain = run_experiment(load_experiment(DA, [*tiny_overrides, "method.name=dann"]), tmp_path / "plain")
    curve = run_experiment(
        load_experiment(DA, [*tiny_overrides, "method.name=dann", "train.test_every_epoch=true"]), tmp_path / "curve"
    )
    assert len(curve["history"]) == plain["history"].__len__() == 2
    for with_test, without in zip(curve["history"], plain["history"]):
        assert {k: v for k, v in with_test.items() if not k.startswith("test/")} == without
        assert "test/target/digit/accuracy" in with_test
    # select=best with the source-validation metric: the final metrics are those of the same weights
    assert curve["metrics"] == plain["metrics"]
    selected = next(h for h in curve["history"] if h["epoch"] == curve["selected_epoch"])
    assert selected["test/target/digit/accuracy"] == curve["metrics"]["test/target/digit/accuracy"]


def test_channels_last_stores_conv_weights_nhwc_and_trains_the_same(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "model.backbone=lenet", "data.image_size=28"]
    nhwc = build_trainer(load_experiment(DA, [*overrides, "train.channels_last=true"]), tmp_path / "nhwc")
    convs = [m.weight for m in nhwc.problem.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    nhwc.fit()  # before the next build: building seeds the global RNG that training draws from
    nchw = build_trainer(load_experiment(DA, overrides), tmp_path / "nchw")
    assert not any(
        m.weight.is_contiguous(memory_format=torch.channels_last) for m in nchw.problem.modules() if isinstance(m, torch.nn.Conv2d)
    )
    nchw.fit()
    a, b = nhwc.problem.state_dict(), nchw.problem.state_dict()
    for key in a:  # the same arithmetic in another memory layout: equal up to summation order
        torch.testing.assert_close(a[key].contiguous(), b[key].contiguous(), rtol=1e-3, atol=1e-4, msg=key)


def test_unknown_lr_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="optim.lr_schedule"):
        load_experiment(DA, ["optim.lr_schedule=inv"])


def test_the_tllib_suite_states_tllibs_recipe_and_budget(tmp_path):
    """The budget and recipe the README quotes for configs/suites/digits_tllib.yaml, read from the configs."""
    _, runs = plan_suite(SUITE, tmp_path, seeds=[0])
    flagship = {f"{t}/{m}" for t in ("m2u", "u2m") for m in ("source_only", "dann", "cdan", "mcc")}
    assert flagship <= {r.experiment for r in runs}
    for run in (r for r in runs if r.experiment in flagship):
        cfg = run.config
        steps = cfg.train.epochs * cfg.train.steps_per_epoch
        assert steps == 50_000 and cfg.data.batch_size == 128
        assert steps * cfg.data.batch_size == 6_400_000  # source images seen: TLLib's 20 epochs × 2500 iterations × 128
        assert cfg.optim.name == "sgd" and cfg.optim.nesterov and cfg.optim.momentum == 0.9
        assert cfg.optim.lr_schedule == "inverse" and cfg.optim.lr_decay == 0.75
        assert cfg.optim.lr == (0.01 if run.experiment.startswith("m2u") else 0.1)
        assert cfg.train.test_every_epoch and cfg.train.select == "last"
        if cfg.method.name == "source_only":  # TLLib's erm.py defaults
            assert cfg.model.bottleneck_dim is None
            assert (cfg.optim.weight_decay, cfg.optim.lr_gamma) == (0.0005, 0.0003)
        else:  # dann.py / cdan.py / mcc.py defaults
            assert cfg.model.bottleneck_dim == 256 and cfg.model.bottleneck_dropout == 0.0
            assert (cfg.optim.weight_decay, cfg.optim.lr_gamma) == (0.001, 0.001)
        if cfg.method.name in ("dann", "cdan"):
            assert cfg.method.args.ramp_steps == 10_000


#: the non-flagship methods of the TLLib suite (issue 13.5), in the suite's order
OTHER_METHODS = ("cdan_e", "dan", "jan", "mcd", "bsp", "afn", "coral", "info_max", "bnm", "entropy_min")


def test_the_tllib_suite_states_the_other_methods_recipes(tmp_path):
    """CDAN+E, DAN, JAN, MCD, BSP and AFN with their TLLib scripts' digits settings; CORAL, IM, BNM and
    entropy minimisation (no TLLib digits script) on dann.py's base recipe with their paper defaults."""
    _, runs = plan_suite(SUITE, tmp_path, seeds=[0])
    names = [r.experiment for r in runs]
    # the flagship entries come first, unchanged in order, and the others are appended
    assert names[:8] == [f"{t}/{m}" for t in ("m2u", "u2m") for m in ("source_only", "dann", "cdan", "mcc")]
    assert names[8:28] == [f"{t}/{m}" for t in ("m2u", "u2m") for m in OTHER_METHODS]
    for run in runs[8:28]:
        cfg, method = run.config, run.config.method.name
        args, m2u = dict(cfg.method.args), run.experiment.startswith("m2u")
        assert method == run.experiment.split("/")[1]
        # TLLib's budget and batch, and each script's --lr (afn.sh: 0.03 for USPS → MNIST)
        assert cfg.train.epochs * cfg.train.steps_per_epoch == 50_000 and cfg.data.batch_size == 128
        assert cfg.optim.name == "sgd" and cfg.optim.momentum == 0.9
        assert cfg.optim.lr == (0.01 if m2u else 0.03 if method == "afn" else 0.1)
        assert cfg.train.test_every_epoch and cfg.train.select == "last"
        if method in ("mcd", "afn"):  # mcd.py, afn.py: constant lr, plain momentum, wd 5e-4
            assert cfg.optim.lr_schedule == "constant" and not cfg.optim.nesterov
            assert cfg.optim.weight_decay == 0.0005
        else:
            assert cfg.optim.lr_schedule == "inverse" and cfg.optim.nesterov and cfg.optim.lr_decay == 0.75
        if method in ("dan", "jan"):  # dan.py, jan.py defaults
            assert (cfg.optim.weight_decay, cfg.optim.lr_gamma) == (0.0005, 0.0003)
        elif method not in ("mcd", "afn"):  # dann.py / cdan.py / bsp.py defaults: the experiment file's
            assert (cfg.optim.weight_decay, cfg.optim.lr_gamma) == (0.001, 0.001)
        bottleneck = (cfg.model.bottleneck_dim, cfg.model.bottleneck_dropout, cfg.model.bottleneck_batch_norm,
                      cfg.model.bottleneck_l2_dropout)
        assert bottleneck == {
            "dan": (256, 0.5, False, False),  # tllib/alignment/dan.py: Linear–ReLU–Dropout
            "jan": (256, 0.5, True, False),  # tllib/alignment/jan.py: Linear–BN–ReLU–Dropout
            "mcd": (None, 0.0, True, False),  # mcd.py: G is the backbone alone
            "afn": (1000, 0.5, True, True),  # tllib/normalization/afn.py: Block with L2-preserving dropout
        }.get(method, (256, 0.0, True, False))  # dann/cdan/bsp ImageClassifier: Linear–BN–ReLU
        assert args == {
            "cdan_e": {"ramp_steps": 10_000, "entropy_weight_normalization": "joint"},
            "dan": {"linear": True, "linear_pairing": "circular"},
            "jan": {"schedule": "constant", "prediction_bandwidth": 1.6928},
            "mcd": {"trade_off": 0.3, "entropy_trade_off": 0.03, "generator_momentum": False},
            "bsp": {"ramp_steps": 10_000, "bsp_trade_off": 0.0001},
            "afn": {"delta": 0.3 if m2u else 0.1, "entropy_trade_off": 0.03},
            "bnm": {"normalization": "rank"},
        }.get(method, {})
        # the values the methods run with beyond the listed ones are their defaults, which TLLib shares
        features = cfg.model.bottleneck_dim or 500  # LeNet's 500 features without a bottleneck
        built = build(METHODS, "method", method, args, {"feature_dim": features, "num_classes": 10})
        if method == "mcd":
            assert built.num_generator_steps == 4  # mcd.py --num-k
        if method == "afn":
            assert built.trade_off == 0.05  # afn.py --trade-off-norm
        if method == "jan":
            assert built.trade_off == 1.0 and built.schedule(0.0) == 1.0
        if method in ("cdan_e", "bsp"):
            assert built.max_coefficient == 1.0 and built.trade_off == 1.0
        if method == "cdan_e":
            assert built.randomized_map is None  # 256 × 10 = 2560 ≤ 4096: the exact multilinear map, as cdan.py


def test_the_tllib_suite_libsvm_entries_differ_from_the_flagship_only_in_the_usps_copy(tmp_path):
    """``<task>_libsvm/<method>``: the flagship run with TLLib's USPS copy (the LIBSVM one, rebuilt from the
    ESL files) in place of the ESL copy, and nothing else changed."""
    from omegaconf import OmegaConf

    _, runs = plan_suite(SUITE, tmp_path, seeds=[0])
    by_name = {r.experiment: OmegaConf.to_container(r.config, resolve=True) for r in runs}
    variants = [name for name in by_name if "_libsvm/" in name]
    assert variants == [f"{t}_libsvm/{m}" for t in ("m2u", "u2m") for m in ("source_only", "dann", "cdan", "mcc")]
    for name in variants:
        task, method = name.split("/")
        libsvm, flagship = by_name[name], by_name[f"{task.removesuffix('_libsvm')}/{method}"]
        side = "target" if task.startswith("m2u") else "source"
        assert (flagship["data"][side], libsvm["data"][side]) == ("usps-esl", "usps-esl-as-libsvm")
        libsvm["data"][side], libsvm["name"] = "usps-esl", flagship["name"]
        assert libsvm == flagship


# ------------------------------------------------------------------ published numbers only beside their recipe
def _rows(suite, tmp_path, only=None):
    from omegaconf import OmegaConf

    from benchmarks.report import Row

    _, runs = plan_suite(suite, tmp_path, seeds=[0], only=only)
    return [Row(r.experiment, [], config=OmegaConf.to_container(r.config, resolve=True)) for r in runs]


def _with_epochs(rows, epochs):
    import copy

    from benchmarks.report import Row

    shorter = []
    for row in rows:
        config = copy.deepcopy(row.config)
        config["train"]["epochs"] = epochs
        shorter.append(Row(row.label, [], config=config))
    return shorter


def test_each_tllib_number_stands_beside_exactly_its_suite_rows(tmp_path):
    """Every TLLib entry of references.yaml reaches its method's suite row for its task (and the LIBSVM-copy row
    of a flagship method), under each script's own lr schedule (constant for mcd.py and afn.py), and no other:
    MCD's number stands beside the entry with mcd.py's three-layer heads, BSP's beside the one with bsp.py's
    source pretraining and AFN's beside the one with afn.py's per-domain passes, classifier initialisation and
    backbone without momentum, not beside their ablations."""
    from benchmarks.report import DEFAULT_REFERENCES, load_references

    rows = _rows(SUITE, tmp_path)
    refs = [r for r in load_references(DEFAULT_REFERENCES) if "TLLib" in r.label]
    assert len(refs) == 18
    for ref in refs:
        method, task = ref.match["method.name"], "m2u" if ref.setting.startswith("MNIST→") else "u2m"
        faithful = {"mcd": "mcd_tllib_heads", "bsp": "bsp_source_pretrained", "afn": "afn_tllib"}.get(method, method)
        expected = {f"{task}/{faithful}"}
        if method in ("source_only", "dann", "cdan", "mcc"):
            expected.add(f"{task}_libsvm/{method}")
        assert {row.label for row in rows if ref.applies_to(row)} == expected, ref.label


def test_published_digits_numbers_stand_only_beside_runs_of_the_published_recipe(tmp_path):
    from benchmarks.report import DEFAULT_REFERENCES, load_references

    refs = [r for r in load_references(DEFAULT_REFERENCES) if "TLLib" in r.label or "Ganin" in r.label]
    assert len(refs) >= 20
    flagship = ["*/source_only", "*/dann", "*/cdan", "*/mcc"]
    tllib = _rows(SUITE, tmp_path, flagship)
    ganin = _rows("configs/suites/mnistm_ganin.yaml", tmp_path)
    for rows in (tllib, _with_epochs(tllib, 3)):  # a run stopped early is the full run's first epochs: same recipe
        shown = {row.label for row in rows if any(ref.applies_to(row) for ref in refs)}
        pairs = ("m2u", "u2m", "m2u_libsvm", "u2m_libsvm")  # either USPS copy
        assert shown == {f"{pair}/{m}" for pair in pairs for m in ("source_only", "dann", "cdan", "mcc")}
    assert {row.label for row in ganin if any(ref.applies_to(row) for ref in refs)} >= {"m2mm/source_only", "m2mm/dann"}
    # other recipes (batch 32, progress schedules, the quick start, a shorter annealed Ganin run) never show them
    other = [
        *_rows("configs/suites/digits_da.yaml", tmp_path / "da", flagship),
        *_rows("configs/suites/ablation_dann_digits.yaml", tmp_path / "ablation", ["source_only", "ablation/base"]),
        *_rows("configs/suites/amp_parity_digits.yaml", tmp_path / "amp"),
        *_with_epochs(ganin, 10),
    ]
    assert len(other) > 10
    wrongly = sorted({(row.label, ref.label) for row in other for ref in refs if ref.applies_to(row)})
    assert not wrongly, wrongly


@pytest.mark.parametrize(
    "faithful, ablation, keys",
    [
        ("mcd_tllib_heads", "mcd", {"model.architecture_args", "method.args.joint_generator_batch"}),
        ("bsp_source_pretrained", "bsp", {"train.source_pretraining_epochs", "train.source_pretraining_lr"}),
        ("afn_per_domain_forward", "afn", {"train.forward_domains_separately"}),
        ("afn_tllib", "afn_per_domain_forward", {"model.classifier_init", "optim.backbone_momentum"}),
    ],
)
def test_each_faithful_entry_differs_from_its_ablation_only_in_the_reference_setting(faithful, ablation, keys, tmp_path):
    """`*/mcd`, `*/bsp`, `*/afn` keep the recipe minus mcd.py's heads / bsp.py's pretraining / afn.py's per-domain
    passes, and nothing else differs."""
    from omegaconf import OmegaConf

    def flat(cfg):
        out = {}

        def walk(node, prefix):
            for key, value in node.items():
                dotted = f"{prefix}{key}"
                if isinstance(value, dict) and value and dotted != "model.architecture_args":
                    walk(value, dotted + ".")
                else:
                    out[dotted] = value

        walk(OmegaConf.to_container(cfg, resolve=True), "")
        return out

    for task in ("m2u", "u2m"):
        _, runs = plan_suite(SUITE, tmp_path / task, seeds=[0], only=[f"{task}/{faithful}", f"{task}/{ablation}"])
        configs = {r.experiment: flat(r.config) for r in runs}
        a, b = configs[f"{task}/{faithful}"], configs[f"{task}/{ablation}"]
        differing = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} - {"name"}
        assert differing == keys
