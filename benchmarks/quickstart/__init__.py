"""The quick start (``make demo``, ``python -m benchmarks.quickstart``): both fields on embedded data, with pictures.

Runs ``configs/suites/quickstart.yaml`` (3 seeds; complete runs are reused,
interrupted ones resumed), then writes into ``<output>/quickstart/``:

* ``results.md``: the domain-adaptation table (``da/*`` experiments: target
  and source test accuracy on ``moons → moons-rotated``) and the multi-task
  table (``mtl/*``: per-task metrics on ``multidigits-sum`` and Δm against the
  single-task networks ``mtl/single/<task>`` trained by the same harness);
* ``moons_decision_boundaries.png``: each DA method's decision boundary over
  the source and target points (the lowest seed of each; ``--all-seeds``: a
  row per seed);
* ``multitask_tradeoff.png``: each weighting strategy's mean classification
  accuracy against its regression error, the single-task networks marked;

logs both pictures to TensorBoard (``<output>/quickstart/figures``) and
prints the tables, the pictures' paths and a TensorBoard command that works
as printed.  The tables are built from the run records by
:mod:`benchmarks.report`, like every other table of the project.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError
from ..experiment import build_trainer
from ..parallel import execute_parallel
from ..records import atomic_save_png, atomic_write_bytes
from ..report import Row, build_tables, metric_columns, to_markdown
from ..suite import plan_suite
from ..tensorboard_hint import tensorboard_command
from .boundaries import Panel, decision_boundary_figure
from .tradeoff import Point, tradeoff_figure

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "configs" / "suites" / "quickstart.yaml"
DA_PREFIX, MTL_PREFIX = "da/", "mtl/"
#: Δm baselines: one single-task network per task, looked up beside each mtl/* row
SINGLE_TASK_PREFIX = "single/"
BOUNDARIES_PNG = "moons_decision_boundaries.png"
TRADEOFF_PNG = "multitask_tradeoff.png"
FIGURES_DIR = "figures"
CLASSIFICATION_METRICS = ("test/left/accuracy", "test/right/accuracy")
REGRESSION_METRIC = "test/sum/mae"


@dataclass
class DemoResult:
    suite_dir: Path
    records: list[dict]
    tables: str
    pictures: list[Path] = field(default_factory=list)
    tensorboard: str = ""


def rows_by_experiment(records: list[dict], prefix: str) -> list[Row]:
    """Report rows (one per experiment, in suite order) for the records whose name starts with ``prefix``."""
    rows: dict[str, Row] = {}
    for record in records:
        if record["name"].startswith(prefix):
            rows.setdefault(record["name"], Row(record["name"], [], record.get("config", {}))).records.append(record)
    return list(rows.values())


def single_task_names(rows: list[Row]) -> list[str]:
    """The Δm baseline names (``single/<task>``) present among ``rows``."""
    names = [r.label[len(MTL_PREFIX):] for r in rows if r.label.startswith(MTL_PREFIX + SINGLE_TASK_PREFIX)]
    if not names:
        raise ConfigError(f"the quick-start suite has no {MTL_PREFIX}{SINGLE_TASK_PREFIX}<task> experiments for Δm")
    return names


def result_tables(records: list[dict]) -> str:
    """The DA table, then the multi-task table with Δm, in Markdown."""
    da, mtl = rows_by_experiment(records, DA_PREFIX), rows_by_experiment(records, MTL_PREFIX)
    parts = []
    if da:
        parts.append("### Domain adaptation\n\n" + to_markdown(build_tables(da)))
    if mtl:
        # one table: the single-task rows beside the strategies they are the Δm baselines of
        joint = [r for r in mtl if not r.label.startswith(MTL_PREFIX + SINGLE_TASK_PREFIX)]
        columns = metric_columns(joint[0]) if joint else None
        tables = build_tables(mtl, delta_m=single_task_names(mtl), columns=columns)
        parts.append("### Multi-task learning\n\n" + to_markdown(tables))
    return "\n\n".join(parts)


def draw_boundaries(runs, out: Path, all_seeds: bool = False) -> tuple[Path, object]:
    """The decision-boundary picture of the DA experiments: the lowest seed of each, or one row per seed."""
    da = [(run, record) for run, record in runs if run.experiment.startswith(DA_PREFIX)]
    seeds = sorted({run.seed for run, _ in da})
    rows = []
    for seed in seeds if all_seeds else seeds[:1]:
        row = []
        for run, record in da:
            if run.seed != seed:
                continue
            trainer = build_trainer(run.config, run.run_dir)
            trainer.load_weights(run.config.train.select)
            metric = next(m for m in record["config"]["report"] if m.startswith("test/target/"))
            title = f"{run.experiment[len(DA_PREFIX):]}: target {100 * record['metrics'][metric]:.1f}% (seed {seed})"
            row.append(Panel(title, trainer.problem))
        rows.append(row)
    figure = decision_boundary_figure(rows)
    atomic_save_png(figure, out)
    return out, figure


def draw_tradeoff(records: list[dict], out: Path) -> tuple[Path, object]:
    """The multi-task trade-off picture from the ``mtl/*`` records."""
    rows = {r.label: r for r in rows_by_experiment(records, MTL_PREFIX)}

    def per_seed(row: Row, metrics) -> list[float]:
        values = [row.values(m) for m in metrics]
        seeds = sorted(set.intersection(*(set(v) for v in values)))
        return [sum(v[s] for v in values) / len(values) for s in seeds]

    single = {m: rows[f"{MTL_PREFIX}{SINGLE_TASK_PREFIX}{m.split('/')[1]}"] for m in (*CLASSIFICATION_METRICS, REGRESSION_METRIC)}
    # single-task networks are separate runs: their point is the mean of each network's per-seed values
    classification = [sum(single[m].values(m)[s] for m in CLASSIFICATION_METRICS) / len(CLASSIFICATION_METRICS)
                      for s in sorted(set.intersection(*(set(single[m].values(m)) for m in CLASSIFICATION_METRICS)))]
    reference = Point("single-task", classification, list(single[REGRESSION_METRIC].values(REGRESSION_METRIC).values()))
    points = [
        Point(label[len(MTL_PREFIX):], per_seed(row, CLASSIFICATION_METRICS), per_seed(row, [REGRESSION_METRIC]))
        for label, row in rows.items() if not label.startswith(MTL_PREFIX + SINGLE_TASK_PREFIX)
    ]
    figure = tradeoff_figure(points, reference, "mean accuracy of the left and right digit (%)",
                             "MAE of the digit sum, in the task's units")
    atomic_save_png(figure, out)
    return out, figure


def log_figures(suite_dir: Path, figures: dict[str, object]) -> Path:
    """Both pictures as TensorBoard images under ``<suite>/figures`` (tags ``quickstart/<name>``)."""
    from torch.utils.tensorboard import SummaryWriter

    folder = suite_dir / FIGURES_DIR
    # one event file: a rerun redraws the pictures, and TensorBoard would otherwise show each run's under one tag
    for old in folder.glob("events.out.tfevents.*"):
        old.unlink()
    with SummaryWriter(log_dir=str(folder)) as writer:
        for tag, figure in figures.items():
            writer.add_figure(f"quickstart/{tag}", figure, close=True)
    return folder


def run_demo(output: str | Path = "runs", seeds: list[int] | None = None, overrides: list[str] | None = None,
             workers: int = 1, progress: bool = True, suite: str | Path = SUITE, all_seeds: bool = False) -> DemoResult:
    """Train (or reuse) every run of the quick-start suite, then write the tables and pictures."""
    name, runs = plan_suite(suite, output, seeds, [*(overrides or []), "train.progress_bar=false"])
    suite_dir = Path(output) / name
    records = execute_parallel(runs, workers, progress=progress)
    tables = result_tables(records)
    atomic_write_bytes(suite_dir / "results.md", (tables + "\n").encode())
    pictures, figures = [], {}
    paired = list(zip(runs, records))
    if any(r.experiment.startswith(DA_PREFIX) for r in runs):
        path, figures["decision_boundaries"] = draw_boundaries(paired, suite_dir / BOUNDARIES_PNG, all_seeds)
        pictures.append(path)
    if any(r.experiment.startswith(MTL_PREFIX) for r in runs):
        path, figures["multitask_tradeoff"] = draw_tradeoff(records, suite_dir / TRADEOFF_PNG)
        pictures.append(path)
    log_figures(suite_dir, figures)
    return DemoResult(suite_dir, records, tables, pictures, tensorboard_command(suite_dir))
