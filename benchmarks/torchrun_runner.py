"""The run command under ``torchrun``: every rank trains each planned run together, data-parallel.

Orchestration, above the engine: it plans nothing itself (the CLI passes the
planned runs) and trains each through :mod:`benchmarks.experiment`, whose
trainer averages gradients with the collectives of :mod:`benchmarks.distributed`.
"""
from __future__ import annotations

import time

import torch.distributed as dist

from .distributed import Replicas
from .experiment import RECORD_NAME, build_trainer, run_experiment
from .records import atomic_write_json
from .suite import RunLock, _log, read_record


def run_planned(runs, replicas: Replicas, poll_seconds: float = 5.0) -> list[dict | None]:
    """Train each planned run data-parallel, in plan order; return the records (on rank 0; None elsewhere).

    Rank 0 decides for every run (complete → skip; free → lock and train;
    locked by another runner → wait for it) and tells the others, so all ranks
    enter the same runs together.  Rank 0 holds the run's lock while training.
    """
    def decide(run) -> tuple[str, RunLock | None]:
        """Rank 0: skip (complete), train (lock taken) or wait (another runner holds it)."""
        if read_record(run) is not None:
            return "skip", None
        lock = RunLock(run.run_dir)
        if not lock.acquire():
            return "wait", None
        if read_record(run) is not None:  # finished by another runner meanwhile
            lock.release()
            return "skip", None
        return "train", lock

    records: list[dict | None] = []
    for run in runs:
        while True:  # every rank goes round together, so none waits in a collective longer than poll_seconds
            decision, lock = decide(run) if replicas.is_main else (None, None)
            message = [decision]
            dist.broadcast_object_list(message, src=0)
            if message[0] != "wait":
                break
            time.sleep(poll_seconds)
        if message[0] == "skip":
            records.append(read_record(run) if replicas.is_main else None)
            continue
        try:
            if replicas.is_main:
                resumed = (run.run_dir / "checkpoints" / "last.pt").exists()
                _log(run, "resume" if resumed else "start")
                record = run_experiment(run.config, run.run_dir)
                record["distributed"] = replicas.describe()
                atomic_write_json(run.run_dir / RECORD_NAME, record)
                _log(run, "finish")
                records.append(record)
            else:
                build_trainer(run.config, run.run_dir).fit()
                records.append(None)
        finally:
            if lock is not None:
                lock.release()
        replicas.barrier()
    return records
