"""The equal-budget comparison with pytorch-adapt (issue 14, point 2): its step driver and its harness.

The strongest check of "same objective, different engine": on a network without
batch norm or dropout (the DANN MNIST-M extractor on the embedded digits, resized to
28×28, a discriminator without BN), three training steps driven by pytorch-adapt's
adapters leave the parameters equal to those of three steps of our engine, to float32
rounding, for every wired method except DAN, whose bandwidth heuristic differs (its
median vs our mean pairwise distance; see ``benchmarks/pytorch_adapt_steps.py``).
Skips only when pytorch-adapt cannot be imported.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.pytorch_adapt_steps import METHODS, import_error

_MISSING = import_error()
if _MISSING:
    pytest.skip(_MISSING, allow_module_level=True)

from benchmarks.config import load_experiment  # noqa: E402
from benchmarks.experiment import build_trainer  # noqa: E402
from benchmarks.pytorch_adapt_compare import main, paired_p_value, table  # noqa: E402
from benchmarks.pytorch_adapt_steps import ReferenceStep  # noqa: E402

CONFIG = "configs/experiments/digits_da.yaml"
NO_BN = [
    "data.image_size=28",
    "model.backbone=dann_digits",  # no batch norm, no dropout
    "data.batch_size=16",
    "train.epochs=1",
    "train.steps_per_epoch=4",
    "train.progress_bar=false",
    "train.device=cpu",
    "optim.name=sgd",
    "optim.lr=0.05",
    "optim.momentum=0.9",
    "optim.weight_decay=0.001",
    "optim.lr_schedule=dann",
]


def _parameter_gap(method: str, tmp_path) -> float:
    overrides = [*NO_BN, f"method.name={method}"]
    if method in ("dann", "cdan", "bsp"):
        overrides.append("method.args.batch_norm=false")  # pytorch-adapt runs D per domain: BN would differ
    cfg = load_experiment(CONFIG, overrides)
    ours, theirs = build_trainer(cfg, tmp_path / "ours"), build_trainer(cfg, tmp_path / "theirs")
    reference = ReferenceStep(theirs, method)
    initial = {k: v.clone() for k, v in ours.problem.state_dict().items()}
    ours.problem.train()
    theirs.problem.train()
    for index in range(3):
        progress = (index + 1) / 4  # a non-zero GRL coefficient and a decayed learning rate
        ours.global_step = index
        ours._set_lr(progress)
        (ours._method_step if ours.problem.owns_update else ours._weighted_step)(progress)
        reference.global_step = index
        reference.step(progress)
    gaps = [
        float((a - b).abs().max())
        for a, b in zip(ours.problem.state_dict().values(), theirs.problem.state_dict().values())
        if a.is_floating_point()
    ]
    moved = max(float((v - initial[k]).abs().max()) for k, v in ours.problem.state_dict().items() if v.is_floating_point())
    assert moved > 1e-3, "the steps did not train anything"
    return max(gaps)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "dan"])
def test_pytorch_adapt_step_equals_our_step(method, tmp_path):
    # BSP's penalty grows with the squared feature norm (its gradient scales with the
    # unnormalised 768-d features here), so the float32 rounding of a joint vs a
    # per-domain forward pass is amplified about tenfold (2e-6 measured); a doubled BSP weight gives 2e-3
    tolerance = 1e-5 if method == "bsp" else 1e-6
    assert _parameter_gap(method, tmp_path) < tolerance


def test_dan_differs_only_by_the_bandwidth_heuristic(tmp_path):
    """Its median bandwidth vs our mean pairwise distance: the same method, measurably different steps."""
    assert _parameter_gap("dan", tmp_path) > 1e-5


def test_unknown_method_is_refused(tmp_path):
    cfg = load_experiment(CONFIG, [*NO_BN, "method.name=cdan_e"])
    with pytest.raises(ValueError, match="no pytorch-adapt counterpart wired for 'cdan_e'"):
        ReferenceStep(build_trainer(cfg, tmp_path), "cdan_e")


def test_paired_p_value_and_table():
    assert paired_p_value([0.8], [0.7]) is None
    assert paired_p_value([0.8, 0.9], [0.7, 0.8]) is None  # constant difference: no variance
    p = paired_p_value([80.0, 82.0, 85.0], [70.0, 75.0, 71.0])
    assert 0.0 < p < 0.05
    record = lambda acc, seconds: {"metrics": {"test/target/digit/accuracy": acc}, "train_seconds": seconds, "steps": 10}  # noqa: E731
    results = {"dann": {0: {"mtlda": record(0.80, 1.0), "pytorch-adapt": record(0.70, 2.0)}, 1: {"mtlda": record(0.82, 1.0), "pytorch-adapt": record(0.74, 2.0)}}}
    row = table(results).splitlines()[2]
    # differences 10 and 8 points: t = 9 / (√2 / √2) = 9 with 1 degree of freedom, p = 1 − (2/π)·atan(9)
    p_expected = 1.0 - 2.0 / math.pi * math.atan(9.0)
    assert row == f"| dann | 2 | 81.0 ± 1.4 | 72.0 ± 2.8 | +9.0 | {p_expected:.3f} | 100.0 | 200.0 |"


def test_harness_writes_records_and_table_and_reuses_them(tmp_path, capsys):
    """The whole command at a tiny size: records for both libraries, a table, and a rerun that trains nothing."""
    argv = [CONFIG, "train.epochs=1", "train.steps_per_epoch=3", "data.batch_size=16", "train.device=cpu",
            "--methods", "mcc", "--seeds", "0", "--output", str(tmp_path)]
    assert main(argv) == 0
    folder = tmp_path / "digits_to_digits-m"
    for library in ("mtlda", "pytorch-adapt"):
        record = json.loads((folder / library / "mcc" / "seed0" / "record.json").read_text())
        assert record["library"] == library and record["steps"] == 3
        assert 0.0 <= record["metrics"]["test/target/digit/accuracy"] <= 1.0
        assert record["config"]["train"]["select"] == "last"
    table_text = (folder / "table.md").read_text()
    assert "| mcc | 1 |" in table_text and "pytorch-adapt ms/step" in table_text
    first = (folder / "pytorch-adapt" / "mcc" / "seed0" / "record.json").read_text()
    capsys.readouterr()
    assert main(argv) == 0
    assert "[pytorch-adapt]" not in capsys.readouterr().out  # reused, not retrained
    assert (folder / "pytorch-adapt" / "mcc" / "seed0" / "record.json").read_text() == first

    # another budget into the same folder: refused before anything trains, the records untouched
    changed = [argv[0], "train.epochs=1", "train.steps_per_epoch=4", *argv[3:]]
    assert main(changed) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "another config" in error and "--output" in error
    assert "[mtlda]" not in error
    assert (folder / "pytorch-adapt" / "mcc" / "seed0" / "record.json").read_text() == first


def test_speed_benchmark_times_every_method_side_by_side():
    """``benchmarks.speed.dann_speed`` at a tiny size on the embedded data: one row per (method, setting), both libraries."""
    from benchmarks.speed.dann_speed import METHODS as SPEED_METHODS
    from benchmarks.speed.dann_speed import format_table, run

    small = ["data.image_size=28", "model.backbone=dann_digits", "data.batch_size=16"]
    results = run(None, 1, 1, "cpu", SPEED_METHODS, ("fp32",), config=CONFIG, extra=small)
    results |= run(None, 1, 1, "cpu", ("dann",), ("channels_last", "bf16"), config=CONFIG, extra=small)
    text = format_table(results)
    for method in SPEED_METHODS:
        times = results[(method, "fp32")]
        assert set(times) == ({"mtlda", "pytorch-adapt", "bare loop"} if method == "dann" else {"mtlda", "pytorch-adapt"})
        assert all(len(values) == 1 and values[0] > 0 for values in times.values())
        assert f"| {method} | fp32 |" in text
    assert isinstance(results[("dann", "channels_last")], dict) and "| dann | channels_last |" in text
    bf16 = results[("dann", "bf16")]  # measured where the engine enables bf16 autocast here, else the reason
    assert isinstance(bf16, dict) or "not measured" in text


def test_bnm_reference_step_runs_under_bfloat16_autocast(tmp_path):
    """Its BNMLoss has no bfloat16 kernel (torch.linalg.matrix_norm); the driver hands it float32 logits."""
    cfg = load_experiment(CONFIG, [*NO_BN, "method.name=bnm", "train.amp=true"])
    losses = ReferenceStep(build_trainer(cfg, tmp_path), "bnm").step(0.5)["total_loss"]
    assert math.isfinite(losses["bnm_loss"]) and losses["bnm_loss"] < 0  # −‖A‖_* / B
