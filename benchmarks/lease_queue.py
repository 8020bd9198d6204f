"""Run a queue of suite runs on one GPU for a fixed wall-clock window, as many as finish.

    python -m benchmarks.lease_queue configs/suites/digits_tllib.yaml \\
        --runs m2u/dann:1 m2u/dann:2 u2m/mcc:1 --window 480 \\
        --data-root data --output runs/gpu --max-parallel 14

Made for a borrowed accelerator with a hard time limit: small networks such as LeNet
leave one process far from filling a GPU, so several runs train at once, but how
many can share it before each slows down is a property of the machine (whether the
GPU runs kernels of several processes at once, how many CPU cores feed it).  So:

1. **Calibrate** (``--calibration-steps`` steps, default 300): the first queued
   experiment alone, then one experiment of each queued method at once (the method
   is the last part of the name: ``m2u/dann`` and ``u2m/dann`` are assumed to cost
   the same per step), each as a one-epoch run of that many steps in a scratch
   folder; their records' steps and ``train_seconds`` give seconds per step alone
   and under contention.
2. **Plan** (:func:`plan_queue`): for each number of parallel processes P, predict
   each run's duration (its steps × its seconds per step, scaled by the contention
   measured, interpolated linearly in P) and simulate list scheduling in queue order
   inside the time left; keep the P that finishes the most runs.  A run that would
   not finish is not started.
3. **Run** each planned run as ``python -m benchmarks run SUITE --only NAME --seeds S``
   (the ordinary harness: same folders, records and resume as anywhere else), at
   most P at a time.  When the window closes, runs still going are stopped; for each
   the epochs it completed are written to ``partial_history.json`` beside its
   checkpoint (a learning curve, not a record: no record is written for it).

The queue order is the priority order.  Prints one line per finished run and a
summary; exit status 0 unless calibration failed for every experiment.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .suite import plan_suite, read_record

STARTUP_SECONDS = 25.0  # process start, imports, data load: added to every predicted run
SAFETY = 1.15  # predicted durations are multiplied by this


@dataclass(frozen=True)
class QueuedRun:
    name: str
    seed: int
    steps: int


def parse_run(text: str) -> tuple[str, int]:
    """``'m2u/dann:1'`` → ``('m2u/dann', 1)``."""
    name, sep, seed = text.rpartition(":")
    if not sep or not name or not seed.isdigit():
        raise ValueError(f"--runs entry {text!r} is not NAME:SEED (for example m2u/dann:1)")
    return name, int(seed)


def method_of(name: str) -> str:
    """The method part of a suite entry's name (``'u2m/dann'`` → ``'dann'``): runs of one method share a calibration."""
    return name.rsplit("/", 1)[-1]


def total_steps(cfg) -> int:
    """Optimizer steps a run of ``cfg`` takes: its epochs plus any source-pretraining epochs."""
    per_epoch = int(cfg.train.steps_per_epoch)
    return per_epoch * (int(cfg.train.epochs) + int(cfg.train.get("source_pretraining_epochs") or 0))


def slowdown_at(parallel: int, measured_parallel: int, measured_slowdown: float) -> float:
    """Seconds-per-step factor with ``parallel`` processes, linear in P through (1, 1) and the measured point."""
    if measured_parallel <= 1:
        return 1.0
    slope = max(0.0, measured_slowdown - 1.0) / (measured_parallel - 1)
    return 1.0 + slope * (parallel - 1)


def plan_queue(runs: list[QueuedRun], seconds_per_step: dict[str, float], measured_parallel: int,
               measured_slowdown: float, seconds_left: float, max_parallel: int) -> tuple[int, list[QueuedRun]]:
    """The parallelism and the runs (queue order kept) that finish the most runs within ``seconds_left``.

    ``seconds_per_step[method]`` is a step's cost for runs of that method (:func:`method_of`), measured
    with ``measured_parallel`` processes at once, where the reference experiment ran
    ``measured_slowdown`` times slower than alone.  Runs of an unmeasured method are never planned.
    """
    best: tuple[int, list[QueuedRun]] = (1, [])
    for parallel in range(1, max_parallel + 1):
        factor = slowdown_at(parallel, measured_parallel, measured_slowdown) / max(measured_slowdown, 1e-9)
        free_at = [0.0] * parallel
        chosen = []
        for run in runs:
            cost = seconds_per_step.get(method_of(run.name))
            if cost is None:
                continue
            duration = SAFETY * (STARTUP_SECONDS + run.steps * cost * factor)
            slot = min(range(parallel), key=free_at.__getitem__)
            if free_at[slot] + duration <= seconds_left:
                free_at[slot] += duration
                chosen.append(run)
        if len(chosen) > len(best[1]):
            best = (parallel, chosen)
    return best


def _command(suite: Path, name: str, seed: int, output: Path, data_root: str, device: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "benchmarks", "run", str(suite), "train.threads=1", *extra,
            "--only", name, "--seeds", str(seed), "--output", str(output), "--data-root", data_root,
            "--device", device, "--no-progress"]


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    with open(log, "w") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def calibrate(suite: Path, names: list[str], scratch: Path, data_root: str, device: str,
              steps: int, limit: int) -> tuple[dict[str, float], int, float]:
    """Seconds per step of each method under contention, how many ran at once, and the first name's slowdown."""
    extra = ["train.epochs=1", f"train.steps_per_epoch={steps}", "train.source_pretraining_epochs=0"]

    def measure(group: list[str], folder: Path) -> dict[str, float]:
        procs = {n: _start(_command(suite, n, 0, folder, data_root, device, extra), folder / "logs" / f"{n.replace('/', '_')}.log")
                 for n in group}
        for proc in procs.values():
            proc.wait()
        costs = {}
        for n in group:
            rec = next((json.loads(p.read_text()) for p in folder.glob(f"*/{n}/seed0/record.json")), None)
            if rec and rec.get("steps"):
                costs[n] = rec["train_seconds"] / rec["steps"]
            else:
                print(f"calibration: {n} failed; see {folder / 'logs'}", flush=True)
        return costs

    alone = measure(names[:1], scratch / "alone")
    group = [n for i, n in enumerate(names) if method_of(n) not in map(method_of, names[:i])][:limit]
    together = measure(group, scratch / "together")
    if names[0] in alone and names[0] in together:
        slowdown = together[names[0]] / alone[names[0]]
    else:
        slowdown = float(len(group))  # nothing to go by: assume the GPU serialises the processes
    for n, cost in together.items():
        print(f"calibration: {n}: {1000 * cost:.2f} ms/step with {len(group)} at once", flush=True)
    if names[0] in alone:
        print(f"calibration: {names[0]} alone {1000 * alone[names[0]]:.2f} ms/step; slowdown x{slowdown:.2f} "
              f"with {len(group)} at once", flush=True)
    return {method_of(n): cost for n, cost in together.items()}, len(group), slowdown


def _partial_history(run_dir: Path) -> bool:
    """Write ``partial_history.json`` from a stopped run's last checkpoint; False when it finished no epoch."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.exists():
        return False
    state = torch.load(last, map_location="cpu", weights_only=False)
    (run_dir / "partial_history.json").write_text(json.dumps(
        {"note": "stopped when the device window closed; epochs completed so far (not a record)",
         "epoch": state.get("epoch"), "global_step": state.get("global_step"), "history": state.get("history")},
        indent=1, default=str))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--runs", nargs="+", required=True, help="NAME:SEED entries, in priority order")
    parser.add_argument("--window", type=float, required=True, help="seconds from now until every run must have stopped")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--max-parallel", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--calibration-steps", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=0,
                        help="skip calibration and planning: start the queued runs in order, this many at a time")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides for every queued run (for example a shorter train.epochs)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.window

    try:  # a malformed entry or an unknown experiment: one line before anything starts
        parsed = [parse_run(text) for text in args.runs]
        names = list(dict.fromkeys(name for name, _ in parsed))
        # the configs the child runs will have (`--data-root` is part of a run's identity), so the
        # records they leave are read back through the suite's own identity check
        _, planned = plan_suite(args.suite, args.output, only=names, seeds=sorted({s for _, s in parsed}),
                                overrides=[*args.set, f"data.root={args.data_root}"])
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    by_key = {(r.experiment, r.seed): r for r in planned}  # every name × seed; the queue reads its pairs
    queue = [QueuedRun(name, seed, total_steps(by_key[(name, seed)].config)) for name, seed in parsed]

    if args.parallel:
        parallel, chosen = args.parallel, list(queue)
    else:
        costs, measured_parallel, slowdown = calibrate(args.suite, names, args.output / "_calibration",
                                                       args.data_root, args.device, args.calibration_steps,
                                                       args.max_parallel)
        if not costs:
            print("calibration failed for every experiment; nothing started", flush=True)
            return 1
        parallel, chosen = plan_queue(queue, costs, measured_parallel, slowdown, deadline - time.monotonic(),
                                      args.max_parallel)
    print(f"plan: {len(chosen)} of {len(queue)} runs, {parallel} at a time, "
          f"{deadline - time.monotonic():.0f} s left", flush=True)

    running: dict[tuple[str, int], subprocess.Popen] = {}
    pending = list(chosen)
    finished = []
    started = time.monotonic()
    while (pending or running) and time.monotonic() < deadline:
        for key, proc in list(running.items()):
            if proc.poll() is not None:
                del running[key]
                finished.append((key, proc.returncode))
                print(f"done: {key[0]} seed {key[1]} rc {proc.returncode} after "
                      f"{time.monotonic() - started:.0f} s", flush=True)
        while pending and len(running) < parallel:
            run = pending.pop(0)
            log = args.output / "_logs" / f"{run.name.replace('/', '_')}_seed{run.seed}.log"
            running[(run.name, run.seed)] = _start(
                _command(args.suite, run.name, run.seed, args.output, args.data_root, args.device, args.set), log)
        time.sleep(2)
    for key, proc in running.items():
        os.killpg(proc.pid, signal.SIGTERM)
    for key, proc in running.items():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    for key in running:
        kept = "partial_history.json written" if _partial_history(by_key[key].run_dir) else "no epoch completed"
        print(f"stopped: {key[0]} seed {key[1]} ({kept})", flush=True)
    for queued in queue:
        run = by_key[(queued.name, queued.seed)]
        record = read_record(run)
        if record:
            metric = record["config"]["report"][0]
            print(f"record: {run.experiment} seed {run.seed}: {metric} {record['metrics'].get(metric)} "
                  f"({record['steps']} steps, {record['train_seconds']:.0f} s)", flush=True)
    print(f"summary: {len(finished)} finished, {len(running)} stopped, {len(pending)} not started", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
