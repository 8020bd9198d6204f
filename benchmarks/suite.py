"""Suites: experiments × seeds, run (or resumed) one record at a time, then tabulated.

A suite file::

    name: quickstart
    seeds: [0, 1, 2]
    overrides: [train.epochs=10]        # optional, applied to every experiment
    experiments:
      - name: dann
        config: ../experiments/digits_da.yaml   # relative to the suite file
        overrides: [method.name=dann]

Each run lives in ``<output>/<suite>/<experiment>/seed<k>/`` and is complete
when its ``record.json`` exists.  Re-running a suite skips complete runs and
resumes interrupted ones from their last checkpoint; a record written by a
different configuration under the same name is refused, not mixed in.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm.auto import tqdm

from .config import ConfigError, config_hash, load_experiment, load_yaml
from .experiment import RECORD_NAME, run_experiment


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


def is_suite_file(path: str | Path) -> bool:
    return "experiments" in load_yaml(path)


def load_suite(path: str | Path) -> DictConfig:
    raw = load_yaml(path)
    schema = OmegaConf.structured(SuiteSchema)
    try:
        suite = OmegaConf.merge(schema, raw)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "?")
        valid = "name, seeds, overrides, experiments, description (each experiment: name, config, overrides)"
        raise ConfigError(f"{path}: bad suite key '{key}': {str(error).splitlines()[0]}. Valid keys: {valid}") from error
    if not suite.experiments:
        raise ConfigError(f"{path}: the suite lists no experiments")
    names = [e.name for e in suite.experiments]
    for i, exp in enumerate(suite.experiments):
        if exp.name == "?" or exp.config == "?":
            raise ConfigError(f"{path}: experiments[{i}] needs both 'name' and 'config'")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{path}: experiment names must be unique; repeated: {', '.join(duplicates)}")
    return suite


def plan_suite(
    path: str | Path,
    output: str | Path,
    seeds: list[int] | None = None,
    overrides: list[str] | None = None,
    only: list[str] | None = None,
) -> tuple[str, list[PlannedRun]]:
    """Resolve every (experiment, seed) of a suite into a validated config and a run folder."""
    path = Path(path)
    suite = load_suite(path)
    chosen = list(suite.experiments)
    if only:
        unknown = sorted(set(only) - {e.name for e in chosen})
        if unknown:
            raise ConfigError(f"--only names unknown experiments {unknown}; the suite has {[e.name for e in chosen]}")
        chosen = [e for e in chosen if e.name in only]
    runs = []
    for exp in chosen:
        config_path = (path.parent / exp.config).resolve()
        for seed in seeds or list(suite.seeds):
            layers = [*suite.overrides, *exp.overrides, *(overrides or []), f"train.seed={seed}", f"name={exp.name}"]
            try:
                cfg = load_experiment(config_path, layers)
            except ConfigError as error:
                raise ConfigError(f"{path}: experiment '{exp.name}': {error}") from error
            runs.append(PlannedRun(exp.name, seed, cfg, Path(output) / suite.name / exp.name / f"seed{seed}"))
    return suite.name, runs


def plan_single(path: str | Path, output: str | Path, seeds: list[int] | None, overrides: list[str] | None):
    """A plain experiment config run over seeds, laid out like a one-experiment suite."""
    base = load_experiment(path, overrides)
    runs = []
    for seed in seeds or [base.train.seed]:
        cfg = load_experiment(path, [*(overrides or []), f"train.seed={seed}"])
        runs.append(PlannedRun(cfg.name, seed, cfg, Path(output) / cfg.name / f"seed{seed}"))
    return base.name, runs


def read_record(run: PlannedRun) -> dict | None:
    """The run's record if it is complete and was made by the same configuration."""
    path = run.run_dir / RECORD_NAME
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("config_hash") != config_hash(run.config):
        raise ConfigError(
            f"{path} was produced by a different configuration than experiment '{run.experiment}' seed {run.seed} "
            "now has; give the changed experiment a new name or output folder (results are never mixed)"
        )
    return record


def execute(runs: list[PlannedRun], progress: bool = True) -> list[dict]:
    """Run what has no complete record yet; return every run's record, in plan order."""
    records: list[dict | None] = [read_record(run) for run in runs]
    todo = [i for i, r in enumerate(records) if r is None]
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc="suite", unit="run", disable=not progress)
    try:
        for i in todo:
            run = runs[i]
            bar.set_postfix_str(f"{run.experiment} seed {run.seed}")
            records[i] = run_experiment(run.config, run.run_dir)
            bar.update(1)
    finally:
        bar.close()
    return records


def summarise(records: list[dict]) -> str:
    """Markdown tables of mean ± std over seeds, one table per set of reported metrics."""
    groups: dict[tuple[str, ...], dict[str, list[dict]]] = {}
    for record in records:
        metrics = tuple(record["config"]["report"]) or tuple(sorted(k for k in record["metrics"] if k.startswith("test/")))
        groups.setdefault(metrics, {}).setdefault(record["name"], []).append(record)
    lines = []
    for metrics, by_experiment in groups.items():
        header = ["experiment", "n", *metrics]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * len(header)) + "|")
        for name, recs in by_experiment.items():
            cells = [name, str(len(recs))]
            for metric in metrics:
                values = [100.0 * r["metrics"][metric] for r in recs if metric in r["metrics"]]
                if not values:
                    cells.append("n/a")
                elif len(values) == 1:
                    cells.append(f"{values[0]:.1f}")
                else:
                    cells.append(f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Accuracies in %, mean ± sample standard deviation over seeds (n runs).")
    return "\n".join(lines)
