"""Where the starting representation comes from, and regularising fine-tuning with few labels (issue 19).

    python -m benchmarks.selfsup_study --data-root ../shared/data --threads 1 \\
        --output runs/selfsup_study --results benchmarks/results/selfsup_transfer

1. Pretraining, once (seed 0), LeNet at 28×28 on 3 channels:

   * ``supervised``: MNIST labels (configs/experiments/transfer/pretrain_mnist_lenet.yaml);
   * ``rotation``: rotation prediction on MNIST + the target's training images without labels
     (pretrain_rotation_lenet.yaml), one backbone per target;
   * ``contrastive``: SimCLR on the same images (pretrain_contrastive_lenet.yaml), one per target.

2. Fine-tuning on each target (USPS, MNIST-M) × labels per class (10, 100, all) × start point
   ({scratch, supervised, rotation, contrastive}) × fine-tuning ({plain, L2-SP, BSS}) × seed,
   at the fixed budget of configs/experiments/transfer/to_*.yaml (every layer trains from the
   first step; the last checkpoint is reported).  L2-SP pulls towards a pretrained start, so it
   is not run from scratch.

3. One domain-adaptation row: MNIST→MNIST-M DANN (configs/experiments/digits/mnist_to_mnistm.yaml)
   with and without rotation prediction on source and target images as an auxiliary term.

4. ``table.md`` (mean ± std over seeds with n, every budget stated), ``selfsup_transfer.png``
   and every run's record.json under ``records/`` in ``--results``.

Every run goes through the normal harness (``benchmarks.suite.execute``): complete runs are
skipped, interrupted ones resume, and runs are locked, so two processes of this command on the
same ``--output`` share the work (one per CPU core).  ``--smoke`` runs every stage at a tiny
budget into another folder, to check the pipeline end to end; its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from datetime import date
from pathlib import Path

from .records import atomic_save_png, atomic_write_bytes
from .report.stats import paired_difference
from .report.tables import mean_error_text
from .suite import execute, plan_single
from .transfer_study import CONFIGS, LABELS, METRIC, TARGETS, copy_records, hardware_line

PRETRAIN = {
    "supervised": CONFIGS / "pretrain_mnist_lenet.yaml",
    "rotation": CONFIGS / "pretrain_rotation_lenet.yaml",
    "contrastive": CONFIGS / "pretrain_contrastive_lenet.yaml",
}
#: self-supervised starts read the target's images too; the dataset each target name means
TARGET_DATASETS = {"usps": "usps-esl", "mnist-m": "mnist-m"}
STARTS = ("scratch", "supervised", "rotation", "contrastive")
#: fine-tuning → overrides; the defaults of each regulariser are its paper's (mtl/regularizers)
FINETUNING: dict[str, list[str]] = {
    "plain": [],
    "l2_sp": ["regularizers=[{name: l2_sp}]"],
    "bss": ["regularizers=[{name: bss}]"],
}
DA_CONFIG = CONFIGS.parent / "digits" / "mnist_to_mnistm.yaml"
#: the DA row's budget: the reduced CPU budget of the committed digits table (benchmarks/results/digits_da_cpu)
DA_BUDGET = ["train.epochs=4", "train.steps_per_epoch=250"]
DA_RUNS: dict[str, list[str]] = {
    "dann": ["method.name=dann"],
    "dann_rotation": ["method.name=dann", "selfsup=[{name: rotation}]"],
}
DA_METRIC = "test/target/digit/accuracy"
SMOKE = ["train.epochs=1", "train.steps_per_epoch=5"]


def skipped(start: str, finetuning: str) -> bool:
    """L2-SP's reference is the pretrained starting point; from a random start it has none."""
    return start == "scratch" and finetuning == "l2_sp"


def plan(output: Path, data_root: str | None, seeds: list[int], targets: list[str], extra: list[str] = (),
         smoke: bool = False, labels: list[str] | None = None):
    """(pretraining runs, fine-tuning runs, domain-adaptation runs) of the study (``labels``: a subset of LABELS)."""
    common = ([f"data.root={data_root}"] if data_root else []) + list(extra) + (SMOKE if smoke else [])
    pretrain, backbones = [], {}
    for start, config in PRETRAIN.items():
        per_target = [None] if start == "supervised" else targets
        for target in per_target:
            name = f"pretrain/{start}" + (f"/{target}" if target else "")
            overrides = [*common, f"name={name}"]
            if target:
                overrides.append(f"data.unlabelled=[{TARGET_DATASETS[target]}]")
            [run] = plan_single(config, output, [0], overrides)[1]
            pretrain.append(run)
            for t in ([target] if target else targets):
                backbones[(start, t)] = (run.run_dir / "backbone.pt").resolve()
    finetune = []
    for target in targets:
        for count, label_overrides in LABELS.items():
            if labels is not None and count not in labels:
                continue
            for start in STARTS:
                for finetuning, overrides in FINETUNING.items():
                    if skipped(start, finetuning):
                        continue
                    name = f"{target}/{count}/{start}/{finetuning}"
                    layers = [*common, *label_overrides, *overrides, f"name={name}"]
                    if start != "scratch":
                        layers.append(f"model.weights={backbones[(start, target)]}")
                    finetune += plan_single(TARGETS[target], output, seeds, layers)[1]
    da = []
    for variant, overrides in DA_RUNS.items():
        layers = [*([f"data.root={data_root}"] if data_root else []), *extra, *DA_BUDGET, *(SMOKE if smoke else []),
                  *overrides, f"name=da/mnist_to_mnistm/{variant}"]
        da += plan_single(DA_CONFIG, output, seeds, layers)[1]
    return pretrain, finetune, da


def _cells(records: list[dict], metric: str) -> dict[str, list[float]]:
    by_name: dict[str, list[float]] = {}
    for record in records:
        by_name.setdefault(record["name"], []).append(100 * record["metrics"][metric])
    return by_name


def _budget(record: dict) -> str:
    cfg = record["config"]
    return f"{record['steps']} steps of batch {cfg['data']['batch_size']}"


def _label_columns() -> str:
    """The table header's label-count columns, one per entry of LABELS."""
    return " | ".join("all labels" if k == "all" else f"{k} labels/class" for k in LABELS)


def _by_seed(records: list[dict], metric: str) -> dict[str, dict[int, float]]:
    by_name: dict[str, dict[int, float]] = {}
    for record in records:
        by_name.setdefault(record["name"], {})[record["seed"]] = 100 * record["metrics"][metric]
    return by_name


def paired_cell(row: dict[int, float] | None, base: dict[int, float] | None) -> str:
    """``Δ ± sem (p)`` of ``row − base`` over the seeds both have (paired t-test); "—" without a pair."""
    difference = paired_difference(row or {}, base or {})
    if difference is None:
        return "—"
    if difference["n"] == 1:
        return f"{difference['delta']:+.1f} (n 1)"
    p = difference["p"]
    p_text = "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"
    return f"{difference['delta']:+.1f} ± {difference['sem']:.1f} (p {p_text})"


def paired_lines(finetune: list[dict], da: list[dict], targets: list[str]) -> list[str]:
    """What each start adds over training from scratch, and what each regulariser adds over plain fine-tuning.

    Every difference is over matched seeds (a seed fixes the labelled subset and
    the initialisation of the new layers), mean ± standard error, with the paired
    t-test's p.
    """
    values = _by_seed(finetune, METRIC)
    lines = [
        "## Paired differences (percentage points, over matched seeds)",
        "",
        "Mean ± standard error of the per-seed difference, paired t-test p in brackets; a seed fixes "
        "the labelled subset and the new layers' initialisation, so rows of one seed share them.",
        "",
    ]
    for target in targets:
        lines += [f"### {target}", "", f"| comparison | {_label_columns()} |", "|---|" + "---|" * len(LABELS)]
        comparisons = [(f"{start} − scratch (plain)", f"{start}/plain", "scratch/plain") for start in STARTS[1:]]
        comparisons += [(f"{start}: {finetuning} − plain", f"{start}/{finetuning}", f"{start}/plain")
                        for start in STARTS for finetuning in FINETUNING
                        if finetuning != "plain" and not skipped(start, finetuning)]
        for label, row, base in comparisons:
            cells = [paired_cell(values.get(f"{target}/{k}/{row}"), values.get(f"{target}/{k}/{base}")) for k in LABELS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    da_values = _by_seed(da, DA_METRIC)
    cell = paired_cell(da_values.get("da/mnist_to_mnistm/dann_rotation"), da_values.get("da/mnist_to_mnistm/dann"))
    lines += [f"MNIST→MNIST-M, DANN + rotation prediction − DANN: {cell}.", ""]
    return lines


def table(pretrain: list[dict], finetune: list[dict], da: list[dict], targets: list[str], smoke: bool = False) -> str:
    values = _cells(finetune, METRIC)
    when = date.today().isoformat()
    some = (pretrain + finetune + da)[:1]
    budget = _budget(finetune[0]) if finetune else "?"
    lines = [
        "# Self-supervised and supervised starting points, and fine-tuning regularisers, with few labels",
        "",
    ]
    if smoke:
        lines += ["**SMOKE RUN**: every stage at a tiny budget to check the pipeline; the numbers mean nothing.", ""]
    lines += [
        f"Generated by `python -m benchmarks.selfsup_study` on {when}, {hardware_line(pretrain + finetune + da) if some else ''}.",
        "Per-run records: `records/` next to this file. Target test accuracy in %, mean ± sample standard "
        "deviation over seeds (n per cell in brackets); the last checkpoint of every run is reported; "
        "the best mean of each column is in bold.",
        "",
        "## Pretraining (seed 0, LeNet, 28×28, 3 channels)",
        "",
        "| start | images | budget | pretext test accuracy | linear probe on MNIST test |",
        "|---|---|---|---|---|",
    ]
    for record in pretrain:
        cfg, metrics = record["config"], record["metrics"]
        images = " + ".join([cfg["data"]["dataset"], *cfg["data"].get("unlabelled", [])])
        if cfg["problem"] == "self_supervised":
            (objective,) = [e["name"] for e in cfg["selfsup"]]
            pretext = f"{100 * metrics[f'test/{objective}/accuracy']:.1f} ({objective})"
            probe = f"{100 * metrics['test/probe/digit/accuracy']:.1f}"
            images += " (no labels)"
        else:
            pretext, probe = f"{100 * metrics[METRIC]:.1f} (digit labels)", "—"
        per_step = cfg["data"]["batch_size"] * (1 + len(cfg["data"].get("unlabelled", [])))
        lines.append(f"| {record['name']} | {images} | {record['steps']} steps, {per_step} images a step | {pretext} | {probe} |")
    lines += [
        "",
        "Rotation: every image in its 4 rotations (4× the images through the network); contrastive: 2 views "
        "per image, τ = 0.5, Adam instead of the paper's LARS at batch 4096. The probe is a logistic "
        "regression on frozen features of 5,000 MNIST training images (labels read for this report only).",
        "",
        f"## Fine-tuning on the target ({budget}, Adam lr 1e-3, every layer trains from the first step)",
        "",
        "Plain: the task loss alone. L2-SP: α = β = 0.01 (towards the pretrained weights; heads decayed). "
        "BSS: k = 1, η = 0.001. L2-SP is not run from scratch (it needs a pretrained starting point).",
        "",
    ]
    for target in targets:
        lines += [f"### {target}", "",
                  f"| start | fine-tuning | {_label_columns()} |",
                  "|---|---|" + "---|" * len(LABELS)]
        best = {}
        for labels in LABELS:
            means = [statistics.mean(v) for n, v in values.items() if n.startswith(f"{target}/{labels}/") and v]
            best[labels] = max(means) if means else None
        for start in STARTS:
            for finetuning in FINETUNING:
                if skipped(start, finetuning):
                    continue
                cells = []
                for labels in LABELS:
                    found = values.get(f"{target}/{labels}/{start}/{finetuning}", [])
                    cell = f"{mean_error_text(found)} ({len(found)})" if found else "—"
                    if found and best[labels] is not None and statistics.mean(found) == best[labels]:
                        cell = f"**{cell}**"
                    cells.append(cell)
                lines.append(f"| {start} | {finetuning} | " + " | ".join(cells) + " |")
        lines.append("")
    da_values = _cells(da, DA_METRIC)
    lines += [
        f"## Domain adaptation: MNIST→MNIST-M ({_budget(da[0]) if da else '?'} + the same number of target images, "
        "DANN digits network, SGD with the DANN schedule)",
        "",
        "| method | target test accuracy |",
        "|---|---|",
    ]
    for variant in DA_RUNS:
        found = da_values.get(f"da/mnist_to_mnistm/{variant}", [])
        label = "DANN" if variant == "dann" else "DANN + rotation prediction on source and target images"
        lines.append(f"| {label} | {mean_error_text(found) + f' ({len(found)})' if found else '—'} |")
    lines.append("")
    lines += paired_lines(finetune, da, targets)
    return "\n".join(lines)


def plot(finetune: list[dict], targets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(STARTS, ("tab:grey", "tab:blue", "tab:orange", "tab:green")))
    styles = dict(zip(FINETUNING, ("-", "--", ":")))
    fig, axes = plt.subplots(1, len(targets), figsize=(6 * len(targets), 4.2), squeeze=False)
    for ax, target in zip(axes[0], targets):
        for start in STARTS:
            for finetuning in FINETUNING:
                xs, means, stds = [], [], []
                for position, labels in enumerate(LABELS):
                    found = [100 * r["metrics"][METRIC] for r in finetune
                             if r["name"] == f"{target}/{labels}/{start}/{finetuning}"]
                    if found:
                        xs.append(position)
                        means.append(statistics.mean(found))
                        stds.append(statistics.stdev(found) if len(found) > 1 else 0.0)
                if xs:
                    ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, color=colours[start],
                                linestyle=styles[finetuning], label=f"{start}, {finetuning}")
        ax.set_xticks(range(len(LABELS)), list(LABELS))
        ax.set_xlabel("labelled target images per class (all = the full training set)")
        ax.set_ylabel("target test accuracy (%)")
        ax.set_title(f"LeNet → {target}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_save_png(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.selfsup_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", help="folder with MNIST/, USPS/ and mnist_m.tar.gz (default: $MTLDA_DATA)")
    parser.add_argument("--output", help="run folders (default: runs/selfsup_study, or runs/selfsup_study_smoke)")
    parser.add_argument("--results", help="write table.md, selfsup_transfer.png and the records here")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (0 with --smoke)")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--labels", nargs="+", default=list(LABELS), choices=list(LABELS),
                        help="labelled images per class to fine-tune with (default: all three)")
    parser.add_argument("--threads", type=int, help="torch CPU threads per run (train.threads)")
    parser.add_argument("--smoke", action="store_true", help="every stage at a tiny budget (pipeline check only)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    output = Path(args.output or ("runs/selfsup_study_smoke" if args.smoke else "runs/selfsup_study"))
    seeds = args.seeds or ([0] if args.smoke else [0, 1, 2])
    extra = [f"train.threads={args.threads}"] if args.threads else []
    if args.no_progress:
        extra.append("train.progress_bar=false")
    pretrain_runs, finetune_runs, da_runs = plan(output, args.data_root, seeds, args.targets, extra, args.smoke, args.labels)
    progress = not args.no_progress
    pretrain = execute(pretrain_runs, progress=progress)
    finetune = execute(finetune_runs, progress=progress)
    da = execute(da_runs, progress=progress)
    text = table(pretrain, finetune, da, args.targets, smoke=args.smoke)
    print(text)
    if args.results:
        results = Path(args.results)
        results.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(results / "table.md", (text + "\n").encode())
        plot(finetune, args.targets, results / "selfsup_transfer.png")
        copy_records(pretrain_runs + finetune_runs + da_runs, output, results)
        print(f"table, plot and records written to {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
