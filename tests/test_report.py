"""Reports: aggregation, error measures, best/significance marks, references, formats, plots, hparams."""
import csv
import io
import json
import math

import pytest
from scipy import stats

from benchmarks.commands.report import main
from benchmarks.report import collect_rows, make_report, paired_p_value, summary
from benchmarks.suite import PlannedRun, write_manifest

METRIC = "test/target/digit/accuracy"
VAL = "val/source/digit/accuracy"
# per experiment: seed → (val, test); "dann" is best, "coral" is close to it, "so" clearly worse
VALUES = {
    "ablation/base": {0: (0.90, 0.80), 1: (0.91, 0.82), 2: (0.92, 0.81)},
    "ablation/no_ramp": {0: (0.88, 0.70), 1: (0.89, 0.71), 2: (0.87, 0.73)},
    "ablation/tiny": {0: (0.93, 0.81), 1: (0.90, 0.80), 2: (0.95, 0.83)},
    "source_only": {0: (0.95, 0.50), 1: (0.96, 0.52), 2: (0.94, 0.49)},
}


def make_records(folder):
    for name, seeds in VALUES.items():
        method = "source_only" if name == "source_only" else "dann"
        for seed, (val, test) in seeds.items():
            record = {
                "name": name, "seed": seed,
                # TLLib's recipe (batch 128, absolute-step lr), so its published numbers apply
                "config": {"report": [METRIC], "data": {"source": "mnist", "target": "usps-esl", "batch_size": 128},
                           "model": {"backbone": "lenet"}, "method": {"name": method, "args": {}},
                           "optim": {"lr": 0.01, "lr_schedule": "inverse"}},
                "metrics": {VAL: val, METRIC: test},
                "history": [{"epoch": 0, "step": 2, VAL: val - 0.1}, {"epoch": 1, "step": 4, VAL: val}],
            }
            run_dir = folder / name / f"seed{seed}"
            run_dir.mkdir(parents=True)
            (run_dir / "record.json").write_text(json.dumps(record))
    return folder


def test_summary_error_measures():
    values = [80.0, 82.0, 81.0]
    s = summary(values, "ci95")
    std = stats.tstd(values)
    assert s["mean"] == pytest.approx(81.0) and s["n"] == 3 and s["std"] == pytest.approx(std)
    assert s["sem"] == pytest.approx(std / math.sqrt(3))
    assert s["error"] == pytest.approx(stats.t.ppf(0.975, 2) * std / math.sqrt(3))
    assert math.isnan(summary([1.0], "std")["error"])
    assert paired_p_value({0: 1.0, 1: 2.0, 2: 4.0}, {0: 0.5, 1: 1.0, 2: 3.9}) == pytest.approx(
        stats.ttest_rel([1.0, 2.0, 4.0], [0.5, 1.0, 3.9]).pvalue
    )
    assert paired_p_value({0: 1.0}, {0: 2.0}) is None  # one matched seed: no test


def test_markdown_marks_best_significance_and_published_numbers(tmp_path):
    folder = make_records(tmp_path / "runs")
    text = make_report(folder, "md", "std", plots=tmp_path / "plots")
    main_table = text.split("\n\n")[0]
    lines = {line.split(" | ")[0].strip("| "): line for line in main_table.splitlines() if line.startswith("| ")}
    assert "| experiment | n | test/target/digit/accuracy | published |" in text
    assert "**81.3 ± 1.5**" in lines["ablation/tiny"]  # the best mean, bold
    assert "†" in lines["source_only"] and "†" in lines["ablation/no_ramp"]  # clearly worse over matched seeds
    assert "†" not in lines["ablation/base"]  # within noise of the best
    assert "91.7 [" in lines["ablation/base"] and "82.1 [" in lines["source_only"]  # TLLib M→U, beside ours
    assert "(ours −31.8)" in lines["source_only"]  # mean(50, 52, 49) − 82.1: the shortfall is in the table
    assert "Transfer-Learning-Library" in text
    # ablation deltas against the base, over matched seeds
    assert "Ablation 'ablation' vs its base" in text and "| ablation/no_ramp | -9.7 |" in text
    for name in ("bars_test_target_digit_accuracy.png", "curves_val_source_digit_accuracy.png",
                 "ablation_ablation_test_target_digit_accuracy.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000
    # one hparams summary per run
    events = sorted((folder / "hparams").rglob("events.out.tfevents.*"))
    assert len(events) == 12
    assert {e.parent.relative_to(folder / "hparams").as_posix() for e in events} >= {"source_only/seed0", "ablation/tiny/seed2"}
    # rerunning the report does not pick up its own output or duplicate hparams files
    make_report(folder, "md", "std")
    assert len(sorted((folder / "hparams").rglob("events.out.tfevents.*"))) == 12
    assert len(collect_rows(folder)) == 4


def test_csv_latex_and_the_error_choice(tmp_path):
    folder = make_records(tmp_path / "runs")
    rows = list(csv.DictReader(io.StringIO(make_report(folder, "csv", "sem", tensorboard=False))))
    so = next(r for r in rows if r["experiment"] == "source_only")
    assert so["n"] == "3" and so["significant_vs_best"] == "1" and so["published"] == "82.1"
    assert float(so["sem"]) == pytest.approx(stats.sem([50.0, 52.0, 49.0]), abs=1e-3)
    assert float(so["ci95"]) == pytest.approx(stats.t.ppf(0.975, 2) * stats.sem([50.0, 52.0, 49.0]), abs=1e-3)
    latex = make_report(folder, "latex", "ci95", tensorboard=False)
    assert r"\textbf{81.3 $\pm$" in latex and r"$^\dagger$" in latex and r"ablation/no\_ramp" in latex
    assert "95% confidence" in make_report(folder, "md", "ci95", tensorboard=False)
    plain = make_report(folder, "md", "std", references=None, tensorboard=False)
    assert "published" not in plain


def test_report_shows_the_sweep_selection_and_the_cli_works(tmp_path, capsys):
    folder = make_records(tmp_path / "runs")
    runs = [
        PlannedRun(name, seed, None, folder / name / f"seed{seed}", sweep="ablation", kind="ablation",
                   selection={"metric": VAL, "mode": "max", "oracle": False})
        for name in VALUES if name.startswith("ablation/") for seed in VALUES[name]
    ]
    write_manifest(folder, runs)
    assert main([str(folder), "--error", "sem", "--no-tensorboard"]) == 0
    out = capsys.readouterr().out
    assert "Sweep 'ablation' selection" in out and "**ablation/tiny**" in out and "oracle (upper bound)" in out
    assert main([str(tmp_path / "missing")]) == 2
    refs = tmp_path / "refs.yaml"
    refs.write_text("references:\n  - value: 50\n    column: test/x\n")
    assert main([str(folder), "--references", str(refs), "--no-tensorboard"]) == 2
    assert "lacks source" in capsys.readouterr().err


def test_each_domain_adaptation_pair_gets_its_own_table(tmp_path):
    """"Best" and the significance marks compare rows of one source→target pair only."""
    folder = make_records(tmp_path / "runs")
    for seed, test in {0: 0.95, 1: 0.96, 2: 0.97}.items():  # an easier pair, far above every M→U row
        record = {
            "name": "u2m/dann", "seed": seed,
            "config": {"report": [METRIC], "data": {"source": "usps-esl", "target": "mnist", "batch_size": 128},
                       "model": {"backbone": "lenet"}, "method": {"name": "dann", "args": {}},
                       "optim": {"lr_schedule": "inverse"}},
            "metrics": {VAL: 0.9, METRIC: test},
        }
        (folder / "u2m" / "dann" / f"seed{seed}").mkdir(parents=True)
        (folder / "u2m" / "dann" / f"seed{seed}" / "record.json").write_text(json.dumps(record))
    text = make_report(folder, "md", "std", tensorboard=False)
    assert "Dataset `mnist→usps-esl`:" in text and "Dataset `usps-esl→mnist`:" in text
    mu, um = text.split("Dataset `usps-esl→mnist`:")[0], text.split("Dataset `usps-esl→mnist`:")[1].split("\n\n")[1]
    assert "**81.3 ± 1.5**" in mu  # still the best of its own pair
    assert "**96.0 ± 1.0**" in um and "95.2 [" in um  # TLLib's U→M DANN number beside the U→M row


def test_paired_against_compares_each_row_with_its_named_neighbour_seed_by_seed(tmp_path, capsys):
    """``--paired-against tiny``: every row beside ``ablation/tiny`` minus it, per seed, with the paired t-test."""
    folder = make_records(tmp_path / "runs")
    text = make_report(folder, "md", "std", tensorboard=False, paired_against=["tiny"])
    assert "Paired against ablation/tiny, test/target/digit/accuracy" in text
    row = next(line for line in text.splitlines() if line.startswith("| ablation/no_ramp |") and "0: " in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    per_seed = [100 * (VALUES["ablation/no_ramp"][s][1] - VALUES["ablation/tiny"][s][1]) for s in range(3)]
    assert float(cells[1]) == pytest.approx(sum(per_seed) / 3, abs=0.006)
    assert cells[3] == "3"
    expected_p = stats.ttest_rel([VALUES["ablation/no_ramp"][s][1] for s in range(3)],
                                 [VALUES["ablation/tiny"][s][1] for s in range(3)]).pvalue
    assert float(cells[4]) == pytest.approx(expected_p, rel=1e-2)
    assert cells[5] == ", ".join(f"{s}: {d:+.2f}" for s, d in enumerate(per_seed))
    # source_only is not beside ablation/tiny (another folder level): not compared
    assert "| source_only |" not in text.split("Paired against")[1]
    assert main([str(folder), "--no-tensorboard", "--paired-against", "nope"]) != 0
    assert "--paired-against nope: no row of that name" in capsys.readouterr().err
