"""Check a device end to end: one PASS/FAIL/SKIP line per check, exit status 1 on any FAIL.

    python -m benchmarks.gpu_check                    # the GPU (CUDA), full mode: a few minutes
    python -m benchmarks.gpu_check --device cpu       # reduced mode (what the test suite runs)

Checks, on the embedded quick-start data (no downloads):

1. ``method/<name>``: every domain-adaptation method trains a short run
   (``configs/experiments/digits_da.yaml``), with ``train.amp`` off and on; its
   test metrics are finite and the record names the precision used.
2. ``weighting/<name>``: every weighting, loss-level and gradient-level, likewise on
   ``configs/experiments/multidigits_mtl.yaml``.
3. ``resume``: a run killed after its first epoch and resumed by a new trainer ends
   with exactly the weights of an uninterrupted run (amp off and on).
4. ``sync-free``: the training step makes no host read of a tensor in this project's
   code (:class:`benchmarks.host_reads.HostReadCounter`); on CUDA also
   ``torch.cuda.set_sync_debug_mode``, over 10 steps without logging: fewer
   synchronising calls than steps (an occasional one, such as a new data cycle's
   index upload, is allowed; one per step is not).
5. ``ddp/nccl``: ``torchrun --nproc_per_node=2`` data-parallel training with nccl, when
   there are two or more GPUs (skipped with the reason otherwise).
6. ``throughput``: the table of ``python -m benchmarks.speed.precision`` on the device.

Full mode runs ``--steps`` steps per run (default 30) and both amp settings for
every method and weighting.  Reduced mode (the default with ``--device cpu``,
which the test suite runs; ``--reduced`` forces it, ``--full`` turns it off) keeps
the suite fast: 2 steps per run, one method or weighting of each kind of code
path (:data:`REDUCED`: adversarial, conditional, kernel, class-confusion and
own-update methods; value-, history- and gradient-based weightings) with amp
alternating between them so both precisions run, the resume check with amp on
only, and only ``lenet`` timed.  Every method and weighting is also trained end
to end in float32 by the test suite (tests/test_engine.py, tests/test_adapt_methods.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch

from . import registry
from .config import load_experiment
from .devices import select_device
from .experiment import build_trainer, run_experiment
from .host_reads import HostReadCounter
from .precision import resolve_amp
from .speed import precision as speed
from .step_guard import DeferredFiniteGuard

ROOT = Path(__file__).resolve().parent.parent
DA = "configs/experiments/digits_da.yaml"
MTL = "configs/experiments/multidigits_mtl.yaml"
#: reduced mode: one method / weighting per kind of code path
REDUCED = {"method": ("dann", "cdan", "jan", "mcc", "mcd"), "weighting": ("uncertainty", "dwa", "pcgrad", "nash_mtl")}
#: arguments some weightings need on the two-task quick-start problem
WEIGHTING_ARGS = {"static": ["weighting.args.weights={left: 1.0, right: 0.5}"]}


class Report:
    """Collects and prints one line per check."""

    def __init__(self, stream=None):
        self.stream = stream  # None: whatever sys.stdout is when a line is printed
        self.lines: list[tuple[str, str, str]] = []

    def add(self, status: str, name: str, detail: str = "") -> None:
        self.lines.append((status, name, detail))
        print(f"{status:4}  {name}" + (f"  ({detail})" if detail else ""), file=self.stream, flush=True)

    @contextlib.contextmanager
    def check(self, name: str):
        """Run the body as one check: PASS with the detail it sets, FAIL on any exception, SKIP on ``Skip``."""
        started = time.perf_counter()
        outcome = {"detail": ""}
        try:
            yield outcome
        except Skip as reason:
            self.add("SKIP", name, str(reason))
        except Exception as error:  # noqa: BLE001 - a failed check is reported, the others still run
            last = traceback.extract_tb(error.__traceback__)[-1]
            self.add("FAIL", name, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} "
                                   f"[{Path(last.filename).name}:{last.lineno}]")
        else:
            self.add("PASS", name, f"{outcome['detail']}{', ' if outcome['detail'] else ''}{time.perf_counter() - started:.1f} s")

    @property
    def failed(self) -> int:
        return sum(status == "FAIL" for status, _, _ in self.lines)


class Skip(Exception):
    """A check that does not apply here, with the reason."""


def _overrides(device: torch.device, steps: int, amp: bool) -> list[str]:
    return [
        f"train.device={device}", "train.epochs=1", f"train.steps_per_epoch={steps}", "train.progress_bar=false",
        "train.log_every=5", "data.batch_size=32", "train.validators=[source_accuracy]", f"train.amp={str(amp).lower()}",
    ]


def _finite_run(path: str, overrides: list[str], out: Path, amp: bool, device: torch.device) -> str:
    record = run_experiment(load_experiment(path, overrides), out)
    numbers = {k: v for k, v in record["metrics"].items() if isinstance(v, (int, float))}
    bad = sorted(k for k, v in numbers.items() if not math.isfinite(v))
    if bad or not numbers:
        raise AssertionError(f"non-finite or missing metrics: {bad or 'none reported'}")
    expected = resolve_amp(amp, device).name if amp else "fp32"
    used = record["numerics"]["precision"]
    # a weighting or method that cannot be loss-scaled runs fp32 where only fp16 exists: accepted and shown
    if used != expected and not (expected == "fp16" and used == "fp32"):
        raise AssertionError(f"precision {used}, expected {expected}")
    return f"{record['steps']} steps, {used}"


def check_components(report: Report, device: torch.device, steps: int, reduced: bool, work: Path) -> None:
    methods = REDUCED["method"] if reduced else tuple(registry.METHODS)
    weightings = REDUCED["weighting"] if reduced else tuple(registry.WEIGHTINGS)
    jobs = [("method", name, DA, [f"method.name={name}"]) for name in methods]
    jobs += [("weighting", name, MTL, [f"weighting.name={name}", *WEIGHTING_ARGS.get(name, [])]) for name in weightings]
    for index, (kind, name, path, extra) in enumerate(jobs):
        for amp in ([index % 2 == 1] if reduced else [False, True]):
            label = f"{kind}/{name} amp={'on' if amp else 'off'}"
            with report.check(label) as outcome:
                out = work / kind / f"{name}-{amp}"
                outcome["detail"] = _finite_run(path, [*_overrides(device, steps, amp), *extra], out, amp, device)


def _weights(trainer) -> dict:
    return {k: v.detach().cpu().clone() for k, v in trainer.problem.state_dict().items()}


class _Killed(Exception):
    pass


def check_resume(report: Report, device: torch.device, steps: int, reduced: bool, work: Path) -> None:
    for amp in (True,) if reduced else (False, True):
        with report.check(f"resume amp={'on' if amp else 'off'}") as outcome:
            overrides = [*_overrides(device, steps, amp), "train.epochs=3", "method.name=dann", "weighting.name=uncertainty"]
            cfg = load_experiment(DA, overrides)
            straight = build_trainer(cfg, work / f"resume-{amp}" / "straight")
            straight.fit()

            def kill_after_first(trainer, epoch):
                if epoch == 1:
                    raise _Killed

            with contextlib.suppress(_Killed):
                build_trainer(cfg, work / f"resume-{amp}" / "resumed", callbacks=[kill_after_first]).fit()
            torch.manual_seed(12345)  # a new process starts with another RNG state
            resumed = build_trainer(cfg, work / f"resume-{amp}" / "resumed")
            resumed.fit()
            a, b = _weights(straight), _weights(resumed)
            different = [k for k in a if not torch.equal(a[k], b[k])]
            if different or a.keys() != b.keys():
                raise AssertionError(f"resumed weights differ from the uninterrupted run's: {different[:5]}")
            outcome["detail"] = f"{len(a)} tensors equal after 3 epochs, {resumed.precision.name}"


def check_sync_free(report: Report, device: torch.device, work: Path) -> None:
    with report.check("sync-free hot step") as outcome:
        overrides = [*_overrides(device, 12, True), "train.log_every=100", "method.name=dann", "weighting.name=uncertainty"]
        trainer = build_trainer(load_experiment(DA, overrides), work / "sync-free")
        if trainer.guard is None:  # the CPU keeps the immediate check (a host read costs nothing there)
            trainer.guard = DeferredFiniteGuard(trainer.device, trainer._raise_deferred_non_finite)
        counter = HostReadCounter()
        trainer.problem.train()
        for _ in range(2):  # warm-up: first-step allocations, cuDNN autotuning
            trainer._weighted_step(0.0)
            trainer.global_step += 1
        synchronising = 0
        with counter, _cuda_sync_warnings(device) as caught:
            for _ in range(10):
                trainer._weighted_step(0.5)
                trainer.global_step += 1
        synchronising = len(caught)
        trainer.guard.check()
        if counter.reads:
            raise AssertionError(f"host reads in the step: {sorted(set(counter.reads))[:3]}")
        if device.type == "cuda" and synchronising >= 10:
            raise AssertionError(f"{synchronising} synchronising CUDA calls in 10 steps: {caught[0].message}")
        outcome["detail"] = "no host read in 10 steps" + (f", {synchronising} CUDA synchronisations" if device.type == "cuda" else "")


@contextlib.contextmanager
def _cuda_sync_warnings(device: torch.device):
    if device.type != "cuda":
        yield []
        return
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            torch.cuda.synchronize(device)
            torch.cuda.set_sync_debug_mode(previous)


def check_ddp(report: Report, device: torch.device, work: Path) -> None:
    with report.check("ddp/nccl") as outcome:
        count = torch.cuda.device_count() if device.type == "cuda" else 0
        if count < 2:
            raise Skip(f"nccl data parallelism needs 2 or more CUDA GPUs; {count} here "
                       "(gloo on CPU is tested by tests/test_distributed.py)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                   "-m", "benchmarks", "run", MTL, *_overrides(torch.device("cuda"), 10, True), "train.epochs=2",
                   "--device", "cuda", "--output", str(work / "ddp"), "--no-progress"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode != 0:
            raise AssertionError(f"torchrun exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
        record = json.loads(next((work / "ddp").rglob("record.json")).read_text())
        if record.get("distributed", {}).get("backend") != "nccl":
            raise AssertionError(f"the record says {record.get('distributed')}")
        outcome["detail"] = f"world size {record['distributed']['world_size']}, {record['steps']} steps"


def check_throughput(report: Report, device: torch.device, reduced: bool) -> str | None:
    with report.check("throughput") as outcome:
        if reduced:
            results = speed.run(("lenet",), ("fp32", "amp"), rounds=1, steps=1, warmup=1, device=device)
        else:
            results = speed.run(rounds=3, steps=10, warmup=3, device=device)
        table = speed.format_table(results, device)
        missing = [f"{b}/{s}" for b, by in results.items() for s, t in by.items() if s == "fp32" and isinstance(t, str)]
        if missing:
            raise AssertionError(f"fp32 did not run: {missing}")
        outcome["detail"] = "table below"
        outcome["table"] = table
    if outcome.get("table"):
        print(outcome["table"], flush=True)
        return outcome["table"]
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--steps", type=int, default=30, help="steps per run in full mode")
    parser.add_argument("--reduced", action="store_true", help="the fast subset (default on the CPU; see above)")
    parser.add_argument("--full", action="store_true", help="every method and weighting with amp off and on, also on the CPU")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--output", help="also write the report (and the throughput table) to this file")
    args = parser.parse_args(argv)
    try:
        device = select_device(args.device)
    except ValueError as error:
        print(f"FAIL  device  ({error})")
        return 1
    reduced = args.reduced or (device.type == "cpu" and not args.full)
    steps = 2 if reduced else args.steps
    print(f"# gpu_check on {speed.machine_line(device)}; {'reduced' if reduced else 'full'} mode, {steps} steps per run", flush=True)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="mtlda-gpu-check-") as tmp:
        work = Path(tmp)
        check_components(report, device, steps, reduced, work)
        check_resume(report, device, steps, reduced, work)
        check_sync_free(report, device, work)
        check_ddp(report, device, work)
        table = None if args.skip_throughput else check_throughput(report, device, reduced)
    summary = f"{len(report.lines)} checks: {report.failed} failed, {sum(s == 'SKIP' for s, _, _ in report.lines)} skipped"
    print(summary)
    if args.output:
        lines = [f"{s:4}  {n}" + (f"  ({d})" if d else "") for s, n, d in report.lines]
        Path(args.output).write_text("\n".join([*lines, summary, "", table or ""]) + "\n")
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
