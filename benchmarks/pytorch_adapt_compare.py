"""Equal-budget comparison with pytorch-adapt: the same runs trained by our engine and by its adapters.

For every method and seed, one config (network, data, seed, optimiser, learning-rate
schedule, number of steps) is trained twice:

* ``mtlda``: :func:`benchmarks.experiment.run_experiment`, our engine, as any run;
* ``pytorch-adapt``: a second trainer built from the same config (same initial
  weights, same data streams and preprocessing), whose modules are driven by a
  pytorch-adapt adapter (:class:`benchmarks.pytorch_adapt_steps.ReferenceStep`, whose
  docstring lists how its objective is matched to ours and where it is not), then
  evaluated on the same test splits.

Both report the last weights (``train.select=last`` is forced).  Each run writes a
``record.json`` under ``OUTPUT/<config name>/<library>/<method>/seed<k>/`` (existing
records are reused, so an interrupted comparison continues), and the table
(``OUTPUT/<config name>/table.md``) gives target accuracy mean ± std per library, the
difference of means, a paired t-test over seeds (the pairs share seed, data and
initial weights) and ms per training step.

    python -m benchmarks.pytorch_adapt_compare configs/experiments/digits/mnist_to_usps.yaml \\
        --methods source_only dann cdan bsp mcd mcc bnm entropy_min info_max afn coral dan jan \\
        --seeds 0 1 2 --data-root ../shared/data --output benchmarks/results/pytorch_adapt_compare
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from .config import config_hash, config_to_dict, load_experiment
from .experiment import build_trainer, run_experiment
from .pytorch_adapt_steps import METHODS, ReferenceStep, import_error
from .records import atomic_write_json, git_commit, hardware, package_versions, read_json_file

LIBRARIES = ("mtlda", "pytorch-adapt")
METRIC = "test/target/digit/accuracy"


def _config(config: str, method: str, seed: int, overrides: list[str]):
    return load_experiment(config, [*overrides, f"method.name={method}", f"train.seed={seed}", "train.select=last", "train.progress_bar=false"])


def train_reference(cfg, method: str) -> dict:
    """Train ``cfg`` with pytorch-adapt driving every step; returns the record's fields."""
    with tempfile.TemporaryDirectory(prefix="mtlda-pa-") as run_dir:
        trainer = build_trainer(cfg, run_dir)
        step = ReferenceStep(trainer, method)
        total = trainer.total_steps
        trainer.problem.train()
        started = time.perf_counter()
        for index in range(total):
            step.step(index / total)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        seconds = time.perf_counter() - started
        metrics = trainer.problem.evaluate("test")
    return {"metrics": metrics, "train_seconds": seconds, "steps": total, "device": trainer.device}


def run_folder(output: Path, cfg, library: str, method: str, seed: int) -> Path:
    """Where one (library, method, seed) run of config ``cfg`` keeps its record."""
    return output / cfg.name / library / method / f"seed{seed}"


class StaleRecordError(ValueError):
    """A record under the output folder was trained with another config than the one asked for."""


def reusable_record(path: Path, wanted: str) -> dict | None:
    """The record at ``path`` when it was trained with the config of hash ``wanted``; None when there is none.

    :class:`StaleRecordError` when it was trained with another config, so that a changed
    budget or override never reuses, or mixes with, records of another setting.
    """
    if not path.exists():
        return None
    record = read_json_file(path)
    if config_hash(record["config"]) != wanted:
        raise StaleRecordError(f"{path} was trained with another config than this command's "
                               "(different overrides or budget): choose another --output, or delete that folder")
    return record


def stale_records(config: str, methods: list[str], seeds: list[int], overrides: list[str], output: Path) -> list[str]:
    """One line per existing record whose config differs from the one this comparison would train.

    Checked for every (method, seed, library) before anything trains.
    """
    problems = []
    for method in methods:
        for seed in seeds:
            cfg = _config(config, method, seed, overrides)
            wanted = config_hash(cfg)
            for library in LIBRARIES:
                try:
                    reusable_record(run_folder(output, cfg, library, method, seed) / "record.json", wanted)
                except StaleRecordError as error:
                    problems.append(str(error))
    return problems


def run_pair(config: str, method: str, seed: int, overrides: list[str], output: Path) -> dict[str, dict]:
    """Both libraries' records for one (method, seed), training whichever is missing.

    An existing record is reused only when it was trained with the same config
    (:func:`reusable_record`).
    """
    cfg = _config(config, method, seed, overrides)
    wanted = config_hash(cfg)
    records = {}
    for library in LIBRARIES:
        run_dir = run_folder(output, cfg, library, method, seed)
        path = run_dir / "record.json"
        record = reusable_record(path, wanted)
        if record is not None:
            records[library] = record
            continue
        print(f"[{library}] {cfg.name} {method} seed {seed}", flush=True)
        started = datetime.now(timezone.utc)
        commit = git_commit()
        if library == "mtlda":
            record = run_experiment(cfg, run_dir)
            record["library"] = library
        else:
            result = train_reference(cfg, method)
            record = {
                "name": cfg.name,
                "library": library,
                "config": config_to_dict(cfg),
                "seed": seed,
                "metrics": result["metrics"],
                "train_seconds": result["train_seconds"],
                "steps": result["steps"],
                "started": started.isoformat(),
                "finished": datetime.now(timezone.utc).isoformat(),
                "versions": package_versions(),
                "git": commit,
                "hardware": hardware(result["device"]),
            }
        atomic_write_json(path, record)
        records[library] = record
    return records


def _mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def paired_p_value(ours: list[float], theirs: list[float]) -> float | None:
    """Two-sided paired t-test p-value over seeds; None below two pairs or when every difference is equal."""
    if len(ours) < 2 or len(ours) != len(theirs):
        return None
    differences = [a - b for a, b in zip(ours, theirs)]
    if statistics.pstdev(differences) <= 1e-9 * max(1.0, abs(statistics.mean(differences))):
        return None  # equal differences (up to rounding): the t statistic is undefined
    from scipy.stats import ttest_rel

    return float(ttest_rel(ours, theirs).pvalue)


def table(results: dict[str, dict[int, dict[str, dict]]], metric: str = METRIC) -> str:
    """Markdown table: one row per method, both libraries side by side."""
    lines = [
        f"| method | n | mtlda {metric} % | pytorch-adapt % | Δ (mtlda − pytorch-adapt) | paired t-test p | mtlda ms/step | pytorch-adapt ms/step |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for method, by_seed in results.items():
        seeds = sorted(by_seed)
        acc = {lib: [100.0 * by_seed[s][lib]["metrics"][metric] for s in seeds] for lib in LIBRARIES}
        ms = {lib: [1000.0 * by_seed[s][lib]["train_seconds"] / by_seed[s][lib]["steps"] for s in seeds] for lib in LIBRARIES}
        delta = statistics.mean(acc["mtlda"]) - statistics.mean(acc["pytorch-adapt"])
        p = paired_p_value(acc["mtlda"], acc["pytorch-adapt"])
        lines.append(
            f"| {method} | {len(seeds)} | {_mean_std(acc['mtlda'])} | {_mean_std(acc['pytorch-adapt'])} | {delta:+.1f} | "
            f"{'—' if p is None else f'{p:.3f}'} | {statistics.median(ms['mtlda']):.1f} | {statistics.median(ms['pytorch-adapt']):.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a domain-adaptation experiment config")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=2 train.steps_per_epoch=50")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-root", help="folder holding the real datasets (sets data.root)")
    parser.add_argument("--output", default="runs/pytorch_adapt_compare")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (train.threads)")
    args = parser.parse_args(argv)
    problem = import_error()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.threads:
        overrides.append(f"train.threads={args.threads}")
    output = Path(args.output)
    stale = stale_records(args.config, args.methods, args.seeds, overrides, output)
    if stale:
        print(f"error: {stale[0]}" + (f" (and {len(stale) - 1} more records)" if len(stale) > 1 else ""), file=sys.stderr)
        return 2
    results: dict[str, dict[int, dict[str, dict]]] = {}
    name = None
    for method in args.methods:
        for seed in args.seeds:
            pair = run_pair(args.config, method, seed, overrides, output)
            name = pair["mtlda"]["name"]
            results.setdefault(method, {})[seed] = pair
    text = table(results)
    first = results[args.methods[0]][args.seeds[0]]["mtlda"]
    train = first["config"]["train"]
    header = (
        f"# mtlda vs pytorch-adapt at equal budget: {name}\n\n"
        f"`python -m benchmarks.pytorch_adapt_compare {args.config} {' '.join(args.overrides)} --methods {' '.join(args.methods)} "
        f"--seeds {' '.join(map(str, args.seeds))}`; {train['epochs']} × {first['steps'] // max(1, train['epochs'])} steps, "
        f"last weights, target test accuracy; torch {torch.__version__}, {first['hardware'].get('device', '')}.\n\n"
    )
    path = output / name / "table.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + text)
    print(header + text)
    print(f"table: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
