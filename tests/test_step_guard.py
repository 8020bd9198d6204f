"""The sync-free non-finite guard (benchmarks/step_guard.py), forced on the CPU.

Its guarantee: the hot step reads nothing back from the device; no update computed from a
non-finite loss (nor any later one) reaches the weights; the run stops at the next logging
step or epoch end, naming the first bad step and term, with the last good checkpoint untouched.
"""
from __future__ import annotations

import pytest
import torch

from benchmarks.config import load_experiment
from benchmarks.engine import NonFiniteLossError
from benchmarks.experiment import build_trainer
from benchmarks.host_reads import HostReadCounter
from benchmarks.step_guard import DeferredFiniteGuard

DA = "configs/experiments/digits_da.yaml"
MTL = "configs/experiments/multidigits_mtl.yaml"
FAST = ["train.validators=[source_accuracy]"]


def _trainer(path, overrides, run_dir, *, deferred: bool):
    trainer = build_trainer(load_experiment(path, [*overrides, *FAST]), run_dir)
    assert trainer.guard is None  # the CPU default: the immediate check
    if deferred:
        trainer.guard = DeferredFiniteGuard(trainer.device, trainer._raise_deferred_non_finite)
    return trainer


def _poison(monkeypatch, trainer, at_call: int):
    """Make the CORAL term NaN on the ``at_call``-th training step (1-based)."""
    method = trainer.problem.method
    original = method.alignment_terms
    calls = {"n": 0}

    def poisoned(**kwargs):
        calls["n"] += 1
        terms = original(**kwargs)
        if calls["n"] == at_call:
            terms["coral"] = terms["coral"] * float("nan")
        return terms

    monkeypatch.setattr(method, "alignment_terms", poisoned)


def _parameters(trainer):
    return {k: v.detach().clone() for k, v in trainer.problem.named_parameters()}


def test_deferred_guard_stops_at_the_next_check_with_the_weights_of_before_the_bad_step(tmp_path, tiny_overrides, monkeypatch):
    """3 steps per epoch, logging every 2: NaN at step 5 (epoch 2) is found at step 6, the next logging step."""
    overrides = [*tiny_overrides, "train.epochs=3", "method.name=coral", "optim.name=sgd", "optim.momentum=0.9"]
    saved = {}

    def keep_last_checkpoint(trainer, epoch):
        saved[epoch] = (tmp_path / "deferred" / "checkpoints" / "last.pt").read_bytes()

    immediate = _trainer(DA, overrides, tmp_path / "immediate", deferred=False)
    _poison(monkeypatch, immediate, at_call=5)
    with pytest.raises(NonFiniteLossError, match="coral.*at step 5 \\(epoch 2\\), before the optimiser step"):
        immediate.fit()

    deferred = _trainer(DA, overrides, tmp_path / "deferred", deferred=True)
    deferred.callbacks.append(keep_last_checkpoint)
    _poison(monkeypatch, deferred, at_call=5)
    with pytest.raises(NonFiniteLossError, match="coral.*at step 5 \\(epoch 2\\), found at step 6.*end of epoch 1"):
        deferred.fit()
    assert deferred.global_step == 6  # step 6 ran (on the restored weights) before the check
    # the weights are exactly those the immediate check stopped with: from before step 5
    before, after = _parameters(immediate), _parameters(deferred)
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), name
    assert all(bool(torch.isfinite(v).all()) for v in after.values())
    # the last good checkpoint is byte for byte the one written at the end of epoch 1
    assert list(saved) == [1]
    assert (tmp_path / "deferred" / "checkpoints" / "last.pt").read_bytes() == saved[1]


def test_a_bad_last_step_of_an_epoch_is_caught_before_its_checkpoint(tmp_path, tiny_overrides, monkeypatch):
    """Step 3 ends epoch 1 and is not a logging step (every 2): the end-of-epoch check catches it."""
    trainer = _trainer(DA, [*tiny_overrides, "method.name=coral"], tmp_path, deferred=True)
    _poison(monkeypatch, trainer, at_call=3)
    with pytest.raises(NonFiniteLossError, match="at step 3 \\(epoch 1\\), found at step 3.*no checkpoint was written yet"):
        trainer.fit()
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize("weighting", ["equal", "uncertainty"])
def test_deferred_guard_trains_exactly_like_the_immediate_check(tmp_path, tiny_overrides, weighting):
    overrides = [*tiny_overrides, "method.name=dann", f"weighting.name={weighting}"]
    runs = {}
    for deferred in (False, True):
        trainer = _trainer(DA, overrides, tmp_path / str(deferred), deferred=deferred)
        trainer.fit()
        runs[deferred] = trainer
    a, b = _parameters(runs[False]), _parameters(runs[True])
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert runs[False].history == runs[True].history


@pytest.mark.parametrize(
    "path,overrides",
    [
        (DA, ["method.name=dann", "weighting.name=uncertainty"]),
        (DA, ["method.name=cdan"]),
        (MTL, []),
    ],
)
def test_the_hot_step_reads_nothing_back_from_the_device(tmp_path, tiny_overrides, path, overrides):
    """Between logging steps this project's code makes no host read (``float``/``item``/``bool``/
    ``tolist``/``cpu`` …) of a tensor: each would make the host wait for a GPU."""
    def count_reads(trainer):
        counter = HostReadCounter()
        step = trainer._weighted_step

        def counted(progress):
            with counter:
                return step(progress)

        trainer._weighted_step = counted
        trainer.fit()
        return counter.reads

    deferred = _trainer(path, [*tiny_overrides, *overrides], tmp_path / "deferred", deferred=True)
    assert count_reads(deferred) == []
    # the counter sees reads: the immediate check reads its flag every step
    immediate = _trainer(path, [*tiny_overrides, *overrides], tmp_path / "immediate", deferred=False)
    reads = count_reads(immediate)
    assert len(reads) == immediate.global_step and all("engine.py" in r and "__bool__" in r for r in reads)
