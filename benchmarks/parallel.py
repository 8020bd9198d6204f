"""Run a suite's runs in parallel: local worker processes (``--workers N``) or Ray tasks (``--ray``).

Both reuse the per-run protocol of :func:`benchmarks.suite.execute` unchanged:
a worker takes the run's ``flock``, trains (or resumes) it and writes its
``record.json`` exactly as a sequential runner would, so run folders, resume
after ``kill -9``, sharing a suite with other runners and ``mtlda report``
work the same.  A run held by a runner outside the pool is retried every
``poll_seconds`` until its record appears (or its lock is freed and a worker
finishes it).  The first run that fails stops the suite with a
:class:`RunFailedError` naming it; the other workers are stopped and their
runs resume from their last checkpoint next time.

Local workers are spawned processes (not forked: torch's thread pools and
CUDA state do not survive ``fork``).  Each gets ``max(1, cores // N)`` torch
threads, and when several CUDA devices exist, worker ``k`` trains on
``cuda:k mod #devices`` (``train.device`` is not part of the config hash, so
records stay comparable).  Ray tasks get the CPUs (and a GPU, when the
cluster has them) that Ray assigns.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .suite import PlannedRun, execute, read_record
from .user_errors import is_user_error


class RunFailedError(RuntimeError):
    """A run of a parallel suite raised; the message names the run, its folder and the cause."""

    def __init__(self, run: PlannedRun, cause: str, where: str, details: str = "", user_error: bool = False):
        self.run, self.cause, self.details, self.user_error = run, cause, details, user_error
        # a user error (bad config value, missing or damaged file) is one line: its message says what to do
        super().__init__(
            f"run '{run.experiment}' seed {run.seed} ({run.run_dir}) failed in {where}: {cause}. "
            + ("Fix it and rerun the same command" if user_error else "The other runs were stopped; rerun the same command")
            + " to resume them (complete runs are skipped)"
            + (f"\n--- traceback from the worker ---\n{details}" if details and not user_error else "")
        )


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """CPU threads for each of ``workers`` processes sharing ``cores`` (default: the CPUs this process may use)."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


def worker_device(requested: str, worker: int, cuda_devices: int) -> str:
    """The device worker ``worker`` should use: round-robin over CUDA devices when there are several."""
    if cuda_devices > 1 and requested in ("auto", "cuda"):
        return f"cuda:{worker % cuda_devices}"
    return requested


def run_one(run: PlannedRun) -> tuple[str, dict | None]:
    """Train one run under its lock, as the sequential runner does: ("done", record) or ("busy", None)."""
    record = execute([run], progress=False, wait=False)[0]
    return ("busy", None) if record is None else ("done", record)


# --------------------------------------------------------------------------- local worker processes


@dataclass
class _Message:
    worker: int
    index: int
    status: str  # done | busy | error
    record: dict | None = None
    cause: str = ""
    details: str = ""
    user_error: bool = False


def _worker_main(worker: int, threads: int, cuda_devices: int, tasks, results) -> None:
    """A worker process: take (index, run) from ``tasks`` until None, report to ``results``."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch
    from omegaconf import read_write

    torch.set_num_threads(threads)
    while True:
        item = tasks.get()
        if item is None:
            return
        index, run = item
        try:
            device = worker_device(run.config.train.device, worker, cuda_devices)
            if device != run.config.train.device:
                with read_write(run.config):
                    run.config.train.device = device
            status, record = run_one(run)
            results.put(_Message(worker, index, status, record))
        except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it by name
            results.put(_Message(worker, index, "error", cause=f"{type(error).__name__}: {error}",
                                 details=traceback.format_exc(), user_error=is_user_error(error)))
            if not isinstance(error, Exception):
                raise


def execute_parallel(
    runs: list[PlannedRun], workers: int, progress: bool = True, poll_seconds: float = 5.0
) -> list[dict]:
    """Like :func:`benchmarks.suite.execute`, with ``workers`` processes; ``workers=1`` is that function."""
    threads = threads_per_worker(workers)
    if workers == 1:
        return execute(runs, progress=progress, poll_seconds=poll_seconds)
    import torch

    cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    records: list[dict | None] = [read_record(run) for run in runs]
    pending = [i for i, r in enumerate(records) if r is None]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    inboxes = [context.Queue() for _ in range(min(workers, len(pending)))]
    processes = []
    for k, inbox in enumerate(inboxes):
        # not daemonic: a run may start its own DataLoader workers (image folders); stopped in ``finally``
        process = context.Process(target=_worker_main, args=(k, threads, cuda_devices, inbox, results))
        process.start()
        processes.append(process)
    bar = tqdm(total=len(runs), initial=len(runs) - len(pending), desc="suite", unit="run", disable=not progress)
    assigned: dict[int, int] = {}  # worker → run index
    waiting: list[tuple[float, int]] = []  # (retry time, run index) for runs held by another runner
    try:
        while pending or assigned or waiting:
            now = time.monotonic()
            for retry_at, i in [w for w in waiting if w[0] <= now]:
                waiting.remove((retry_at, i))
                records[i] = read_record(runs[i])
                if records[i] is None:
                    pending.append(i)
                else:
                    bar.update(1)
            for k in range(len(processes)):
                if k not in assigned and pending:
                    i = pending.pop(0)
                    assigned[k] = i
                    inboxes[k].put((i, runs[i]))
            if not assigned:
                time.sleep(min(poll_seconds, max(0.05, min(w[0] for w in waiting) - time.monotonic())))
                continue
            try:
                message: _Message = results.get(timeout=1.0)
            except queue.Empty:
                for k, i in assigned.items():
                    if not processes[k].is_alive():
                        raise RunFailedError(runs[i], f"worker process exited with code {processes[k].exitcode}",
                                             f"worker {k}")
                continue
            i = assigned.pop(message.worker)
            if message.status == "error":
                raise RunFailedError(runs[i], message.cause, f"worker {message.worker}", message.details,
                                     message.user_error)
            if message.status == "busy":
                waiting.append((time.monotonic() + poll_seconds, i))
                bar.set_postfix_str(f"{len(waiting)} run(s) held by another runner")
                continue
            records[i] = message.record
            bar.update(1)
            bar.set_postfix_str(f"last: {runs[i].experiment} seed {runs[i].seed}")
    finally:
        bar.close()
        for inbox in inboxes:
            inbox.put(None)
        for process in processes:
            process.join(timeout=5 if not assigned else 0.1)
            if process.is_alive():
                process.terminate()  # a failure elsewhere: the run resumes from its checkpoint next time
                process.join()
    return records


# --------------------------------------------------------------------------- Ray


def _require_ray():
    try:
        import ray
    except ImportError as error:
        raise ImportError("--ray needs Ray: pip install 'mtlda[ray]' (or pip install ray)") from error
    return ray


def _ray_task(run: PlannedRun, cwd: str) -> tuple[str, dict | None]:
    """Body of the Ray task: the driver's working directory (relative paths in configs), Ray's CPUs, one run."""
    import ray
    import torch

    if os.path.isdir(cwd):
        os.chdir(cwd)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return run_one(run)


def execute_ray(
    runs: list[PlannedRun], address: str | None = None, progress: bool = True, poll_seconds: float = 5.0,
    cpus_per_run: float = 1,
) -> list[dict]:
    """Run every run without a record as one Ray task (``address``: a cluster, or None to start a local Ray).

    Run folders must be on a file system every Ray node sees (and supports
    ``flock``); paths are made absolute before the runs are shipped.  An
    already initialised Ray (``ray.init`` called by the caller) is reused.
    """
    ray = _require_ray()
    cwd = os.getcwd()
    runs = [_absolute(run) for run in runs]
    records: list[dict | None] = [read_record(run) for run in runs]
    pending = [i for i, r in enumerate(records) if r is None]
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus, max_retries=0)(_ray_task)
        bar = tqdm(total=len(runs), initial=len(runs) - len(pending), desc="suite", unit="run", disable=not progress)
        futures = {task.remote(runs[i], cwd): i for i in pending}
        waiting: list[tuple[float, int]] = []
        try:
            while futures or waiting:
                now = time.monotonic()
                for retry_at, i in [w for w in waiting if w[0] <= now]:
                    waiting.remove((retry_at, i))
                    records[i] = read_record(runs[i])
                    if records[i] is None:
                        futures[task.remote(runs[i], cwd)] = i
                    else:
                        bar.update(1)
                if not futures:
                    time.sleep(max(0.05, min(w[0] for w in waiting) - time.monotonic()))
                    continue
                ready, _ = ray.wait(list(futures), num_returns=1, timeout=1.0)
                for future in ready:
                    i = futures.pop(future)
                    try:
                        status, record = ray.get(future)
                    except Exception as error:  # a RayTaskError carries the worker's traceback
                        for other in futures:
                            ray.cancel(other, force=True)
                        cause, user_error = _ray_cause(error)
                        raise RunFailedError(runs[i], cause, "a Ray task", str(error), user_error) from error
                    if status == "busy":
                        waiting.append((time.monotonic() + poll_seconds, i))
                    else:
                        records[i] = record
                        bar.update(1)
        finally:
            bar.close()
    finally:
        if started_here:
            ray.shutdown()
    return records


def _ray_cause(error: Exception) -> tuple[str, bool]:
    """The task's own exception as ``"Type: message"`` (Ray wraps it in ``error.cause``), and whether it
    is a user error (a bad config or input: one ``error:`` line, exit code 2)."""
    cause = getattr(error, "cause", None)
    if cause is None:
        return type(error).__name__, False
    return f"{type(cause).__name__}: {cause}", is_user_error(cause)


def _absolute(run: PlannedRun) -> PlannedRun:
    from dataclasses import replace

    return replace(
        run, run_dir=Path(run.run_dir).resolve(), suite_dir=Path(run.suite_dir).resolve() if run.suite_dir else None
    )
