"""Reports: the Δm column against single-task baselines, and the hardware/budget provenance table."""
import csv
import io
import json
import statistics

import pytest

from benchmarks.config import ConfigError
from benchmarks.commands.report import main
from benchmarks.report import DELTA_M, build_tables, collect_rows, make_report

LEFT, RIGHT = "test/left/accuracy", "test/right/accuracy"
CPU = {"device": "cpu", "cpu": "x86_64", "cpu_count": 2, "torch_threads": 1}
GPU = {"device": "cuda", "gpu": "NVIDIA H100", "cpu_count": 16, "torch_threads": 16}


def write_run(folder, label, seed, metrics, report=(LEFT, RIGHT), hardware=CPU, steps=200, epochs=2, per_epoch=100,
              dataset="multimnist"):
    record = {
        "name": label, "seed": seed,
        "config": {"report": list(report), "data": {"dataset": dataset, "batch_size": 256},
                   "train": {"epochs": epochs, "steps_per_epoch": per_epoch}},
        "metrics": metrics, "steps": steps, "epochs_run": epochs, "train_seconds": 10.0 + seed,
        "hardware": hardware,
    }
    run_dir = folder / label / f"seed{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "record.json").write_text(json.dumps(record))


# per seed, as fractions (the records' unit)
SINGLE_LEFT = {0: 0.90, 1: 0.92, 2: 0.91}
SINGLE_RIGHT = {0: 0.80, 1: 0.82, 2: 0.84}
MTL = {
    "mtl/good": {0: (0.93, 0.85), 1: (0.94, 0.86), 2: (0.92, 0.87)},
    "mtl/bad": {0: (0.85, 0.75), 1: (0.86, 0.74), 2: (0.84, 0.76)},
}


def make_suite(folder, prefix="", dataset="multimnist"):
    for seed, value in SINGLE_LEFT.items():
        write_run(folder, f"{prefix}single/left", seed, {LEFT: value}, dataset=dataset)
    for seed, value in SINGLE_RIGHT.items():
        write_run(folder, f"{prefix}single/right", seed, {RIGHT: value}, dataset=dataset)
    for name, seeds in MTL.items():
        for seed, (left, right) in seeds.items():
            write_run(folder, f"{prefix}{name}", seed, {LEFT: left, RIGHT: right}, dataset=dataset)
    return folder


def expected_delta_m(name, scale=1.0):
    """Independent formula: per seed, the mean relative gain (%) over the baselines' means; then mean and std."""
    base_left = statistics.mean(SINGLE_LEFT.values()) * scale
    base_right = statistics.mean(SINGLE_RIGHT.values()) * scale
    per_seed = [
        ((left * scale - base_left) / base_left + (right * scale - base_right) / base_right) / 2 * 100
        for left, right in MTL[name].values()
    ]
    return statistics.mean(per_seed), statistics.stdev(per_seed)


def table_lines(text):
    table = text.split("\n\n")[0]
    return {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}


def test_delta_m_column_is_the_mean_relative_gain_over_the_single_task_baselines(tmp_path):
    folder = make_suite(tmp_path / "runs")
    text = make_report(folder, "md", "std", references=None, tensorboard=False, delta_m=["single/left", "single/right"])
    lines = table_lines(text)
    assert lines["experiment"] == f"| experiment | n | {LEFT} | {RIGHT} | {DELTA_M} |"
    good_mean, good_std = expected_delta_m("mtl/good")
    bad_mean, bad_std = expected_delta_m("mtl/bad")
    assert good_mean > 0 > bad_mean  # the fixture: "good" beats both single-task models, "bad" loses to both
    assert lines["mtl/good"].endswith(f"| **{good_mean:.1f} ± {good_std:.1f}** |")  # best Δm, bold
    assert lines["mtl/bad"].endswith(f"| {bad_mean:.1f} ± {bad_std:.1f} † |")  # worse on every seed
    assert lines["single/left"].endswith("| baseline |") and lines["single/right"].endswith("| baseline |")
    assert "Δm: mean over the task columns" in text and "`single/left`, `single/right`" in text

    rows = collect_rows(folder)
    tables = build_tables(rows, "std", [], ["single/left", "single/right"])
    cell = tables[0].cells[("mtl/good", DELTA_M)]
    assert cell.n == 3 and cell.mean == pytest.approx(good_mean) and cell.error == pytest.approx(good_std)
    # the mean over seeds equals Δm of the mean metrics (baseline means are fixed per seed)
    mean_left = statistics.mean(v[0] for v in MTL["mtl/good"].values())
    mean_right = statistics.mean(v[1] for v in MTL["mtl/good"].values())
    of_means = ((mean_left / statistics.mean(SINGLE_LEFT.values()) - 1) + (mean_right / statistics.mean(SINGLE_RIGHT.values()) - 1)) / 2 * 100
    assert cell.mean == pytest.approx(of_means)
    # without --delta-m there is no Δm column
    assert DELTA_M not in make_report(folder, "md", "std", references=None, tensorboard=False)


def test_lower_is_better_metrics_count_a_decrease_as_a_gain(tmp_path):
    folder = tmp_path / "runs"
    error = "test/left/error"
    for seed in (0, 1):
        write_run(folder, "single/left", seed, {error: 0.10}, report=(error,))
        write_run(folder, "mtl/x", seed, {error: 0.08}, report=(error,))
    rows = collect_rows(folder)
    cell = build_tables(rows, "std", [], ["single/left"])[0].cells[("mtl/x", DELTA_M)]
    assert cell.values == {0: pytest.approx(20.0), 1: pytest.approx(20.0)}  # 20% less error is +20


def test_regression_errors_stay_in_their_units_and_count_lower_as_better(tmp_path):
    folder = tmp_path / "runs"
    mae = "test/sum/mae"
    for seed in (0, 1):
        write_run(folder, "single/sum", seed, {mae: 1.25}, report=(mae,))
        write_run(folder, "mtl/x", seed, {mae: 1.0 + 0.6 * seed}, report=(mae,))  # 1.0 then 1.6
    tables = build_tables(collect_rows(folder), "std", [], ["single/sum"])
    cells = tables[0].cells
    assert cells[("single/sum", mae)].mean == pytest.approx(1.25)  # not ×100 like a fraction
    assert cells[("mtl/x", DELTA_M)].values == {0: pytest.approx(20.0), 1: pytest.approx(-28.0)}
    assert cells[("single/sum", mae)].best and not cells[("mtl/x", mae)].best  # lower is better: 1.25 < 1.3
    text = make_report(folder, "md", "std", references=None, tensorboard=False, delta_m=["single/sum"])
    assert "| single/sum | 2 | **1.25 ± 0.00** | baseline |" in text and "in the task's own units" in text


def test_shared_columns_put_single_task_baselines_in_the_multitask_table(tmp_path):
    folder = tmp_path / "runs"
    for seed in SINGLE_LEFT:  # each single-task network reports its own task only
        write_run(folder, "single/left", seed, {LEFT: SINGLE_LEFT[seed]}, report=(LEFT,))
        write_run(folder, "single/right", seed, {RIGHT: SINGLE_RIGHT[seed]}, report=(RIGHT,))
        write_run(folder, "mtl/good", seed, dict(zip((LEFT, RIGHT), MTL["mtl/good"][seed])))
    rows = collect_rows(folder)
    assert len(build_tables(rows, "std", [], ["single/left", "single/right"])) == 3  # one table per metric set
    (table,) = build_tables(rows, "std", [], ["single/left", "single/right"], columns=(LEFT, RIGHT))
    assert sorted(r.label for r in table.rows) == ["mtl/good", "single/left", "single/right"]
    assert ("single/left", RIGHT) not in table.cells and table.cells[("single/left", LEFT)].mean == pytest.approx(91.0)
    assert table.cells[("mtl/good", DELTA_M)].mean == pytest.approx(expected_delta_m("mtl/good")[0])


def test_each_row_uses_the_baselines_beside_it(tmp_path):
    folder = make_suite(tmp_path / "runs", prefix="multimnist/")
    # a second dataset whose single-task models are half as accurate: the same MTL numbers are a big gain there
    fashion = dict(dataset="multifashion")
    for seed in SINGLE_LEFT:
        write_run(folder, "multifashion/single/left", seed, {LEFT: SINGLE_LEFT[seed] / 2}, **fashion)
        write_run(folder, "multifashion/single/right", seed, {RIGHT: SINGLE_RIGHT[seed] / 2}, **fashion)
        left, right = MTL["mtl/good"][seed]
        write_run(folder, "multifashion/mtl/good", seed, {LEFT: left, RIGHT: right}, **fashion)
    # a third dataset whose right-task baseline has not run yet: no Δm for it, and the report says why
    for seed in (0, 1):
        write_run(folder, "multifashion-mnist/single/left", seed, {LEFT: 0.9}, dataset="multifashion-mnist")
        write_run(folder, "multifashion-mnist/mtl/equal", seed, {LEFT: 0.9, RIGHT: 0.8}, dataset="multifashion-mnist")
    rows = collect_rows(folder)
    tables = build_tables(rows, "std", [], ["single/left", "single/right"])
    # one table per dataset, so "best" compares rows of the same dataset only
    assert [t.dataset for t in tables] == ["multifashion", "multifashion-mnist", "multimnist"]
    assert {r.label for r in tables[0].rows} == {"multifashion/single/left", "multifashion/single/right", "multifashion/mtl/good"}
    assert tables[2].cells[("multimnist/mtl/good", LEFT)].best and tables[0].cells[("multifashion/mtl/good", LEFT)].best
    cells = {key: cell for table in tables for key, cell in table.cells.items()}
    assert cells[("multimnist/mtl/good", DELTA_M)].mean == pytest.approx(expected_delta_m("mtl/good")[0])
    base_left, base_right = statistics.mean(SINGLE_LEFT.values()) / 2, statistics.mean(SINGLE_RIGHT.values()) / 2
    fashion = statistics.mean(
        ((left - base_left) / base_left + (right - base_right) / base_right) / 2 * 100 for left, right in MTL["mtl/good"].values()
    )
    assert cells[("multifashion/mtl/good", DELTA_M)].mean == pytest.approx(fashion)
    assert ("multifashion-mnist/mtl/equal", DELTA_M) not in cells
    text = make_report(folder, "md", "std", references=None, tensorboard=False, delta_m=["single/left", "single/right"],
                       plots=tmp_path / "plots")
    assert f"No Δm for `multifashion-mnist/mtl/equal`: no baseline reports {RIGHT}." in text
    assert text.startswith("Dataset `multifashion`:\n\n| experiment |") and "Dataset `multimnist`:" in text
    equal_line = next(line for line in text.splitlines() if line.startswith("| multifashion-mnist/mtl/equal | 2 |"))
    assert equal_line.endswith("| n/a |")
    for dataset in ("multimnist", "multifashion", "multifashion-mnist"):
        assert (tmp_path / "plots" / f"bars_{dataset}_test_left_accuracy.png").is_file()
    assert (tmp_path / "plots" / "tasks_multifashion_test_left_accuracy_vs_test_right_accuracy.png").is_file()


def test_baseline_mistakes_are_errors_that_say_what_is_wrong(tmp_path, capsys):
    folder = make_suite(tmp_path / "runs")
    rows = collect_rows(folder)
    with pytest.raises(ConfigError, match=r"baseline\(s\) single/middle match no experiment.*mtl/good"):
        build_tables(rows, "std", [], ["single/left", "single/middle"])
    # two baselines that both report the left task: which one is meant is ambiguous
    with pytest.raises(ConfigError, match="both 'single/left' and 'mtl/bad' report test/left/accuracy"):
        build_tables(collect_rows(folder), "std", [], ["single/left", "single/right", "mtl/bad"])
    assert main([str(folder), "--delta-m", "single/nope", "--no-tensorboard", "--no-references"]) == 2
    assert "single/nope match no experiment" in capsys.readouterr().err


def test_cli_csv_latex_and_plots_carry_delta_m(tmp_path, capsys):
    folder = make_suite(tmp_path / "runs")
    plots = tmp_path / "plots"
    assert main([str(folder), "--delta-m", "single/left", "single/right", "--no-tensorboard", "--no-references",
                 "--plots", str(plots)]) == 0
    assert "| baseline |" in capsys.readouterr().out
    for name in ("bars_delta_m.png", "tasks_test_left_accuracy_vs_test_right_accuracy.png", "bars_test_left_accuracy.png"):
        assert (plots / name).stat().st_size > 1000
    text = make_report(folder, "csv", "std", references=None, tensorboard=False, delta_m=["single/left", "single/right"])
    rows = {(r["experiment"], r["metric"]): r for r in csv.DictReader(io.StringIO(text))}
    assert float(rows[("mtl/good", DELTA_M)]["mean"]) == pytest.approx(expected_delta_m("mtl/good")[0], abs=1e-4)
    assert ("single/left", DELTA_M) not in rows
    latex = make_report(folder, "latex", "std", references=None, tensorboard=False, delta_m=["single/left", "single/right"])
    assert r"$\Delta_m$ (\%)" in latex


def test_the_report_states_hardware_and_budget_per_row(tmp_path):
    folder = make_suite(tmp_path / "runs")
    text = make_report(folder, "md", "std", references=None, tensorboard=False)
    assert text.endswith("| cpu: x86_64, 2 cores, 1 torch thread(s) | 200 steps (2 epochs × 100 steps), batch 256 | 11 s | all 4 |")
    # one seed of one experiment ran elsewhere, with another budget
    write_run(folder, "mtl/gpu", 0, {LEFT: 0.9, RIGHT: 0.8}, hardware=GPU, steps=2000, epochs=10, per_epoch=None)
    text = make_report(folder, "md", "std", references=None, tensorboard=False)
    assert "| hardware | budget per run | train time per run | experiments |" in text
    cpu_line = next(line for line in text.splitlines() if line.startswith("| cpu: x86_64, 2 cores, 1 torch thread(s)"))
    assert "| 200 steps (2 epochs × 100 steps), batch 256 | 11 s |" in cpu_line
    assert "mtl/bad, mtl/good, single/left, single/right" in cpu_line and "mtl/gpu" not in cpu_line
    gpu_line = next(line for line in text.splitlines() if line.startswith("| cuda: NVIDIA H100"))
    assert "2000 steps (10 epochs × 200 steps = one pass), batch 256 | 10 s | mtl/gpu |" in gpu_line
    # a run in reduced precision says so; float32 runs and records without the numerics field do not
    bf16 = json.loads((folder / "mtl" / "gpu" / "seed0" / "record.json").read_text())
    bf16["numerics"] = {"precision": "bf16"}
    (folder / "mtl" / "gpu" / "seed0" / "record.json").write_text(json.dumps(bf16))
    text = make_report(folder, "md", "std", references=None, tensorboard=False)
    assert next(line for line in text.splitlines() if line.startswith("| cuda: NVIDIA H100")).startswith(
        "| cuda: NVIDIA H100, bf16 autocast |")
    assert "1 torch thread(s) | 200 steps" in text
    # a row whose seeds differ in hardware is listed in both groups, with its seeds
    write_run(folder, "mtl/good", 3, {LEFT: 0.9, RIGHT: 0.8}, hardware=GPU)
    text = make_report(folder, "md", "std", references=None, tensorboard=False)
    assert "mtl/good (seeds 0, 1, 2)" in text and "mtl/good (seeds 3)" in text


def test_seeds_run_on_different_cpu_models_are_listed_apart(tmp_path):
    """Two x86_64 hosts need not reproduce each other's float32 runs, so the table names the model."""
    folder = make_suite(tmp_path / "runs")
    epyc = {**CPU, "cpu_model": "AMD EPYC", "cpu_flags": ["avx2", "avx512f", "avx512_bf16"]}
    write_run(folder, "mtl/good", 3, {LEFT: 0.9, RIGHT: 0.8}, hardware=epyc)
    text = make_report(folder, "md", "std", references=None, tensorboard=False)
    assert "| cpu: AMD EPYC, 2 cores, 1 torch thread(s) | 200 steps" in text
    assert "mtl/good (seeds 0, 1, 2)" in text and "mtl/good (seeds 3)" in text
