"""train.amp on every device (benchmarks/precision.py): what each setting resolves to, float16 loss
scaling on the CPU, bfloat16 end to end, and the record of how a run computed."""
from __future__ import annotations

import logging

import pytest
import torch

from benchmarks import precision
from benchmarks.config import ConfigError, config_hash, load_experiment
from benchmarks.experiment import build_trainer, run_experiment
from benchmarks.precision import LossScaler, resolve_amp

DA = "configs/experiments/digits_da.yaml"
FAST = ["train.validators=[source_accuracy]"]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_booleans_and_names_parse_and_old_configs_keep_their_hash():
    default = load_experiment(DA, [])
    assert load_experiment(DA, ["train.amp=false"]).train.amp is False
    assert load_experiment(DA, ["train.amp=true"]).train.amp is True
    assert load_experiment(DA, ["train.amp=bf16"]).train.amp == "bf16"
    assert config_hash(load_experiment(DA, ["train.amp=false"])) == config_hash(default)
    assert config_hash(load_experiment(DA, ["train.amp=true"])) != config_hash(default)
    with pytest.raises(ConfigError, match="train.amp.*choose one of: false, true, bf16, fp16"):
        load_experiment(DA, ["train.amp=fp8"])


@pytest.mark.parametrize("native", [True, False])
def test_cpu_uses_bf16_only_where_it_is_native_and_says_so(monkeypatch, caplog, native):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    for value in (True, "bf16"):
        with caplog.at_level(logging.WARNING):
            chosen = resolve_amp(value, CPU)
        assert chosen.dtype == (torch.bfloat16 if native else None) and not chosen.loss_scaling
        assert ("no native bfloat16" in caplog.text) is (not native)
        caplog.clear()
    assert resolve_amp(False, CPU).dtype is None


@pytest.mark.parametrize("bf16", [True, False])
def test_cuda_prefers_bf16_then_loss_scaled_fp16(monkeypatch, bf16):
    monkeypatch.setattr(precision, "cuda_has_bf16", lambda device: bf16)
    best = resolve_amp(True, CUDA)
    assert (best.dtype, best.loss_scaling) == ((torch.bfloat16, False) if bf16 else (torch.float16, True))
    assert resolve_amp("fp16", CUDA).loss_scaling
    if not bf16:
        with pytest.raises(ConfigError, match="does not support bfloat16"):
            resolve_amp("bf16", CUDA)
        # a run that cannot be loss-scaled: true falls back to float32, fp16 is an error
        assert resolve_amp(True, CUDA, loss_scaling_refused="it reads gradients").dtype is None
        with pytest.raises(ConfigError, match="needs loss scaling, which it reads gradients"):
            resolve_amp("fp16", CUDA, loss_scaling_refused="it reads gradients")


def test_fp16_refuses_weightings_that_read_the_terms_gradients(tmp_path, tiny_overrides):
    with pytest.raises(ConfigError, match="GradientAggregation reads the terms' gradients"):
        build_trainer(load_experiment(DA, [*tiny_overrides, *FAST, "train.amp=fp16", "weighting.name=mgda"]), tmp_path)


def test_the_scaled_gradient_is_the_gradient_times_the_scale():
    scaler = LossScaler(CPU, init_scale=8.0)
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    terms = scaler.scale_terms({"a": (x**2).sum(), "b": 3 * x.sum()})
    assert float(terms["a"].detach()) == 5.0 and float(terms["b"].detach()) == -3.0  # the weighting sees the true values
    (terms["a"] + terms["b"]).backward()
    torch.testing.assert_close(x.grad, 8.0 * (2 * x.detach() + 3))
    found = scaler.unscale_([x])
    torch.testing.assert_close(x.grad, 2 * x.detach() + 3)
    assert float(found) == 0.0


def test_fp16_skips_overflowed_steps_and_lowers_the_scale(tmp_path, tiny_overrides):
    """A scale of 2^100 overflows float16 (and float32) gradients: the step is skipped, the weights stay,
    the scale halves; once the scale fits, the weights move and the run finishes."""
    trainer = build_trainer(load_experiment(DA, [*tiny_overrides, *FAST, "train.amp=fp16", "method.name=dann"]), tmp_path)
    assert trainer.precision.name == "fp16" and trainer.loss_scaler is not None
    trainer.loss_scaler.scale.fill_(2.0**100)
    before = {k: v.detach().clone() for k, v in trainer.problem.named_parameters()}
    trainer.problem.train()
    trainer._weighted_step(0.0)
    assert float(trainer.loss_scaler.scale) == 2.0**99
    for name, value in trainer.problem.named_parameters():
        assert torch.equal(value, before[name]), name
    trainer.loss_scaler.scale.fill_(2.0**8)
    trainer._weighted_step(0.0)
    assert float(trainer.loss_scaler.scale) == 2.0**8
    assert any(not torch.equal(v, before[k]) for k, v in trainer.problem.named_parameters())


def test_fp16_kill_and_resume_gives_the_uninterrupted_weights(tmp_path, tiny_overrides):
    """The loss scale is part of the checkpoint, so a resumed fp16 run continues exactly."""
    cfg = load_experiment(DA, [*tiny_overrides, *FAST, "train.amp=fp16", "method.name=dann"])
    straight = build_trainer(cfg, tmp_path / "straight")
    straight.fit()

    class Stop(Exception):
        pass

    def stop_after_one(trainer, epoch):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        build_trainer(cfg, tmp_path / "resumed", callbacks=[stop_after_one]).fit()
    checkpoint = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert "loss_scaler" in checkpoint
    torch.manual_seed(999)
    resumed = build_trainer(cfg, tmp_path / "resumed")
    resumed.fit()
    a, b = dict(straight.problem.named_parameters()), dict(resumed.problem.named_parameters())
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert torch.equal(straight.loss_scaler.scale, resumed.loss_scaler.scale)


@pytest.mark.skipif(not precision.cpu_has_native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_bf16_run_on_the_cpu_records_how_it_computed(tmp_path, tiny_overrides):
    record = run_experiment(load_experiment(DA, [*tiny_overrides, *FAST, "train.amp=true", "method.name=coral"]), tmp_path)
    numerics = record["numerics"]
    assert numerics["precision"] == "bf16" and not numerics["loss_scaling"]
    assert numerics["matmul_allow_tf32"] is False and numerics["cudnn_allow_tf32"] is False
    assert numerics["cudnn_benchmark"] is False  # CPU: nothing to autotune
    assert all(torch.isfinite(torch.tensor(v)) for k, v in record["metrics"].items() if isinstance(v, float))


def test_the_parity_suite_compares_fp32_with_the_fast_setting_and_nothing_else(tmp_path):
    """configs/suites/amp_parity_digits.yaml (issue 12, point 6; not run yet): per task and seed, the two runs
    differ only in train.amp and train.channels_last, at the experiment config's own budget."""
    from benchmarks.config import config_to_dict
    from benchmarks.suite import load_suite, plan_suite

    def flat(node, prefix=""):
        out = {}
        for key, value in node.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    assert list(load_suite("configs/suites/amp_parity_digits.yaml").seeds) == [0, 1, 2]
    _, runs = plan_suite("configs/suites/amp_parity_digits.yaml", tmp_path, seeds=[2])
    by_name = {(run.experiment, run.seed): flat(config_to_dict(run.config)) for run in runs}
    assert len(runs) == 4
    for task, config in (("m2mm", "mnist_to_mnistm"), ("m2u", "mnist_to_usps")):
        budget = load_experiment(f"configs/experiments/digits/{config}.yaml", [])
        for seed in (2,):
            fp32, fast = by_name[(f"{task}/dann/fp32", seed)], by_name[(f"{task}/dann/bf16_channels_last", seed)]
            assert {k for k in fp32 if fp32[k] != fast[k]} == {"name", "train.amp", "train.channels_last"}
            assert (fp32["train.amp"], fast["train.amp"], fast["train.channels_last"]) == (False, "bf16", True)
            assert fp32["method.name"] == "dann" and fp32["train.seed"] == seed
            assert (fp32["train.epochs"], fp32["train.steps_per_epoch"]) == (budget.train.epochs, budget.train.steps_per_epoch)


def test_compile_keeps_the_checkpoint_keys_and_is_recorded(tmp_path, tiny_overrides):
    """train.compile compiles the model in place (lazily: nothing is compiled before its first forward),
    so its state-dict keys, and so checkpoints, are those of the eager model."""
    eager = build_trainer(load_experiment(DA, [*tiny_overrides, *FAST]), tmp_path / "eager")
    compiled = build_trainer(load_experiment(DA, [*tiny_overrides, *FAST, "train.compile=true"]), tmp_path / "compiled")
    assert compiled.problem.model._compiled_call_impl is not None and eager.problem.model._compiled_call_impl is None
    assert list(compiled.problem.state_dict()) == list(eager.problem.state_dict())
    assert compiled.numerics["compile"] is True and eager.numerics["compile"] is False
