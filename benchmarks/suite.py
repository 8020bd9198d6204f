"""Suites: experiments × seeds, run (or resumed) one record at a time, then tabulated.

A suite file::

    name: quickstart
    seeds: [0, 1, 2]
    overrides: [train.epochs=10]        # optional, applied to every experiment
    experiments:
      - name: dann
        config: ../experiments/digits_da.yaml   # relative to the suite file
        overrides: [method.name=dann]
    sweeps:                              # optional: grid / random / ablation blocks
      - name: ablation                   # (see benchmarks/sweep.py)
        config: ../experiments/digits_da.yaml
        overrides: [method.name=dann]
        ablation:
          no_grl_schedule: [method.args.schedule=constant]

Each run lives in ``<output>/<suite>/<experiment>/seed<k>/`` and is complete
when its ``record.json`` exists.  Re-running a suite skips complete runs and
resumes interrupted ones from their last checkpoint; a record written by a
different configuration under the same name is refused, not mixed in.

Several runners may work on one suite at once (on one machine or on a shared
file system with working ``flock``): each run is guarded by a non-blocking
``fcntl.flock`` on ``<run_dir>/.lock``.  A runner skips a run that another
holds, goes on with the rest, and comes back to it later: it takes the other
runner's record if one appeared, or trains (resumes) the run itself if the
lock was released without one (the other runner died).  The kernel releases
the lock of a killed process, so ``kill -9`` never leaves a run stuck.
``<output>/<suite>/runs.log`` gets one line per training started and finished.
"""
from __future__ import annotations

import errno
import fcntl
import fnmatch
import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, List, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm.auto import tqdm

from .config import ConfigError, load_experiment, load_yaml
from .experiment import RECORD_NAME, check_config, run_experiment, run_identity
from .metric_names import reported_metrics
from .records import atomic_write_json, read_json_file
from .report import metric_scale
from .report.tables import markdown_lines, mean_error_text
from .selection import format_selection, select_configuration
from .sweep import SourceLines, SweepBlock, sweep_blocks

LOCK_NAME = ".lock"
LOG_NAME = "runs.log"
MANIFEST_NAME = "sweeps.json"
SWEEP_KEYS = ("sweeps", "sweep", "sweep_seed")


@dataclass
class SuiteExperiment:
    name: str = "?"
    config: str = "?"
    overrides: List[str] = field(default_factory=list)


@dataclass
class SuiteSchema:
    name: str = "suite"
    seeds: List[int] = field(default_factory=lambda: [0])
    overrides: List[str] = field(default_factory=list)
    experiments: List[SuiteExperiment] = field(default_factory=list)
    description: Optional[str] = None


@dataclass
class PlannedRun:
    experiment: str
    seed: int
    config: DictConfig
    run_dir: Path
    #: the sweep block that generated this run (None for an explicit experiment)
    sweep: Optional[str] = None
    #: the experiment's own overrides (the block's base overrides first), for listings
    overrides: List[str] = field(default_factory=list)
    #: the swept values of this configuration (grid/random) or the ablation's overrides as values
    params: dict = field(default_factory=dict)
    #: the block's selection rule ({metric, mode, oracle}) or None
    selection: Optional[dict] = None
    #: ``<output>/<suite>``; None for single experiments
    suite_dir: Optional[Path] = None
    #: grid | random | ablation | None
    kind: Optional[str] = None


def is_suite_file(path: str | Path) -> bool:
    raw = load_yaml(path)
    return "experiments" in raw or "sweeps" in raw or "sweep" in raw


def _raw_suite(path: str | Path) -> tuple[dict, SourceLines]:
    load_yaml(path)  # existence, YAML syntax, a mapping at the top
    text = Path(path).read_text()
    return yaml.safe_load(text), SourceLines(path, text)


def load_suite(path: str | Path) -> DictConfig:
    """The suite's explicit part (name, seeds, overrides, experiments), validated; sweeps: :func:`load_sweeps`."""
    raw, lines = _raw_suite(path)
    plain = {k: v for k, v in raw.items() if k not in SWEEP_KEYS}
    has_sweeps = any(raw.get(k) for k in ("sweeps", "sweep"))
    schema = OmegaConf.structured(SuiteSchema)
    try:
        suite = OmegaConf.merge(schema, plain)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "?") or "?"
        valid = "name, seeds, overrides, experiments, sweeps, sweep_seed, description (each experiment: name, config, overrides)"
        where = _key_path(str(key))
        if lines.line(where) in (None, 1) and where:
            # OmegaConf may name only the leaf key: find it in the file
            found = [p for p in lines.lines if p and p[-1] == where[-1]]
            where = found[0] if found else where
        raise ConfigError(
            f"{lines.at(where)}: bad suite key '{key}': {str(error).splitlines()[0]}. Valid keys: {valid}"
        ) from error
    if not suite.experiments and not has_sweeps:
        raise ConfigError(f"{lines.at(('experiments',))}: the suite lists no experiments (and has no sweeps)")
    names = [e.name for e in suite.experiments]
    for i, exp in enumerate(suite.experiments):
        if exp.name == "?" or exp.config == "?":
            raise ConfigError(f"{lines.at(('experiments', i))}: experiments[{i}] needs both 'name' and 'config'")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        second = next(i for i, n in enumerate(names) if n in duplicates and names.index(n) != i)
        raise ConfigError(
            f"{lines.at(('experiments', second, 'name'))}: experiment names must be unique; repeated: {', '.join(duplicates)}"
        )
    return suite


def _key_path(dotted: str) -> tuple:
    """``experiments[2].overides`` → ("experiments", 2, "overides")."""
    out: list = []
    for part in dotted.replace("]", "").split("."):
        for j, piece in enumerate(part.split("[")):
            if piece:
                out.append(int(piece) if j and piece.isdigit() else piece)
    return tuple(out)


def load_sweeps(path: str | Path) -> list[SweepBlock]:
    """The suite's sweep blocks, validated and expanded (errors name the file, line and key)."""
    raw, lines = _raw_suite(path)
    return sweep_blocks(raw, lines)


def _matches(name: str, patterns: list[str]) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def plan_suite(
    path: str | Path,
    output: str | Path,
    seeds: list[int] | None = None,
    overrides: list[str] | None = None,
    only: list[str] | None = None,
) -> tuple[str, list[PlannedRun]]:
    """Resolve every (experiment, seed) of a suite, sweeps included, into a validated config and a run folder.

    ``only`` keeps experiments whose name equals one of the entries or matches it as a glob
    (``'ablation/*'``).  ``seeds`` replaces the suite's and every block's seeds.
    """
    path = Path(path)
    suite = load_suite(path)
    lines = SourceLines(path)
    blocks = load_sweeps(path)
    suite_dir = Path(output) / suite.name
    # (name, config, overrides, seeds, where, block, generated)
    entries: list[tuple] = [
        (e.name, e.config, list(e.overrides), None, ("experiments", i), None, None) for i, e in enumerate(suite.experiments)
    ]
    for block in blocks:
        entries.extend((g.name, g.config, g.overrides, g.seeds, g.where, block, g) for g in block.experiments)
    names = [e[0] for e in entries]
    for name, *_rest in entries:
        if names.count(name) > 1:
            where = next(e[4] for e in entries[names.index(name) + 1:] if e[0] == name)
            raise ConfigError(f"{lines.at(where)}: experiment name '{name}' is used twice (an explicit experiment and a sweep?)")
    if only:
        unknown = [p for p in only if not any(_matches(n, [p]) for n in names)]
        if unknown:
            raise ConfigError(f"--only names unknown experiments {unknown}; the suite has {names}")
        entries = [e for e in entries if _matches(e[0], only)]
    runs = []
    for name, config, exp_overrides, exp_seeds, where, block, generated in entries:
        config_path = (path.parent / config).resolve()
        for seed in seeds or exp_seeds or list(suite.seeds):
            layers = [*suite.overrides, *exp_overrides, *(overrides or []), f"train.seed={seed}", f"name={name}"]
            try:
                cfg = load_experiment(config_path, layers)
                check_config(cfg)  # every run of the suite, before the first one trains
            except ConfigError as error:
                raise ConfigError(f"{lines.at(where)}: experiment '{name}': {error}") from error
            runs.append(
                PlannedRun(
                    name, seed, cfg, suite_dir / name / f"seed{seed}",
                    sweep=block.name if block else None,
                    overrides=list(exp_overrides),
                    params=dict(generated.params) if generated else {},
                    selection=block.selection if block else None,
                    suite_dir=suite_dir,
                    kind=block.kind if block else None,
                )
            )
    return suite.name, runs


def plan_single(path: str | Path, output: str | Path, seeds: list[int] | None, overrides: list[str] | None):
    """A plain experiment config run over seeds, laid out like a one-experiment suite."""
    base = load_experiment(path, overrides)
    runs = []
    for seed in seeds or [base.train.seed]:
        cfg = load_experiment(path, [*(overrides or []), f"train.seed={seed}"])
        check_config(cfg)
        runs.append(PlannedRun(cfg.name, seed, cfg, Path(output) / cfg.name / f"seed{seed}", overrides=list(overrides or [])))
    return base.name, runs


def read_record(run: PlannedRun) -> dict | None:
    """The run's record if it is complete and was made by the same configuration."""
    path = run.run_dir / RECORD_NAME
    if not path.exists():
        return None
    record = read_json_file(path)
    if record.get("config_hash") != run_identity(run.config):
        raise ConfigError(
            f"{path} was produced by a different configuration than experiment '{run.experiment}' seed {run.seed} "
            "now has; give the changed experiment a new name or output folder (results are never mixed)"
        )
    return record


# --------------------------------------------------------------------------- locks and the run log


class RunLock:
    """A non-blocking exclusive ``flock`` on ``<run_dir>/.lock``; :meth:`acquire` returns False if held elsewhere."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _log(run: PlannedRun, event: str) -> None:
    """Append one line to ``<suite>/runs.log`` (O_APPEND: lines from several runners never interleave)."""
    folder = run.suite_dir or run.run_dir.parent.parent
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).isoformat()
    line = f"{stamp} {event} {run.experiment} seed{run.seed} host={socket.gethostname()} pid={os.getpid()}\n"
    fd = os.open(folder / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def execute(
    runs: list[PlannedRun], progress: bool = True, poll_seconds: float = 5.0, wait: bool = True, callbacks=()
) -> list[dict]:
    """Run what has no complete record yet; return every run's record, in plan order.

    Each run is trained under its lock; runs locked by another runner are
    skipped and revisited after the rest (every ``poll_seconds``) until they
    have a record: the other runner's, or this runner's if the lock was freed
    without one.  With ``wait=False`` such runs come back as ``None`` instead.
    ``callbacks`` go to every trainer (called after each epoch).
    """
    records: list[dict | None] = [read_record(run) for run in runs]
    pending = [i for i, r in enumerate(records) if r is None]
    bar = tqdm(total=len(runs), initial=len(runs) - len(pending), desc="suite", unit="run", disable=not progress)
    try:
        while pending:
            busy = []
            for i in pending:
                run = runs[i]
                lock = RunLock(run.run_dir)
                if not lock.acquire():
                    busy.append(i)
                    continue
                with lock:
                    records[i] = read_record(run)  # another runner may have finished it meanwhile
                    if records[i] is None:
                        bar.set_postfix_str(f"{run.experiment} seed {run.seed}")
                        resumed = (run.run_dir / "checkpoints" / "last.pt").exists()
                        _log(run, "resume" if resumed else "start")
                        records[i] = run_experiment(run.config, run.run_dir, callbacks)
                        _log(run, "finish")
                bar.update(1)
            pending = []
            for i in busy:
                records[i] = read_record(runs[i])
                if records[i] is None:
                    pending.append(i)
                else:
                    bar.update(1)
            if pending:
                if not wait:
                    break
                bar.set_postfix_str(f"waiting for {len(pending)} run(s) held by another runner")
                time.sleep(poll_seconds)
    finally:
        bar.close()
    return records


# --------------------------------------------------------------------------- manifest and tables


def sweep_manifest(runs: list[PlannedRun]) -> dict:
    """What the report needs to know about sweeps: blocks, their kind, rule and experiments."""
    blocks: dict[str, dict] = {}
    for run in runs:
        if run.sweep is None:
            continue
        block = blocks.setdefault(run.sweep, {"kind": run.kind, "selection": run.selection, "experiments": {}})
        block["experiments"].setdefault(run.experiment, {"overrides": run.overrides, "params": _jsonable(run.params)})
    return {"sweeps": blocks}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def write_manifest(suite_dir: str | Path, runs: list[PlannedRun]) -> Path | None:
    """Write ``<suite>/sweeps.json`` (read by ``mtlda report``) when the plan has sweeps."""
    manifest = sweep_manifest(runs)
    if not manifest["sweeps"]:
        return None
    path = Path(suite_dir) / MANIFEST_NAME
    atomic_write_json(path, manifest)
    return path


def summarise(records: list[dict], runs: list[PlannedRun] | None = None) -> str:
    """Markdown tables of mean ± std over seeds, one table per set of reported metrics.

    With ``runs`` (the plan), every sweep with a ``selection`` rule adds its
    chosen configuration and the oracle upper bound.
    """
    records = [r for r in records if r is not None]
    groups: dict[tuple[str, ...], dict[str, list[dict]]] = {}
    for record in records:
        metrics = reported_metrics(record)
        groups.setdefault(metrics, {}).setdefault(record["name"], []).append(record)
    lines = []
    for metrics, by_experiment in groups.items():
        rows = [
            [name, str(len(recs)), *(
                mean_error_text([metric_scale(metric) * r["metrics"][metric] for r in recs if metric in r["metrics"]])
                for metric in metrics)]
            for name, recs in by_experiment.items()
        ]
        lines += [*markdown_lines(["experiment", "n", *metrics], rows), ""]
    lines.append("Accuracies in %, errors (MSE, MAE) in the task's units; mean ± sample standard deviation over seeds (n runs).")
    if runs:
        for name, block in sweep_manifest(runs)["sweeps"].items():
            if block["selection"]:
                result = select_configuration(records, block["selection"], experiments=list(block["experiments"]))
                lines += ["", format_selection(name, result)]
    return "\n".join(lines)
