"""Target test accuracy under each selection protocol (benchmarks/selection_protocols.py)."""
import json

import pytest

from benchmarks.commands.report import main as report_main
from benchmarks.report import Reference
from benchmarks.selection_protocols import BEST_ON_TEST, curve_table, plot_test_curves, protocol_accuracies, protocol_table

T = "test/target/digit/accuracy"


def _record(seed, test, im, snd, batch=128):
    history = [
        {"epoch": e, "step": 100 * (e + 1), T: t, "val/validator/im": i, "val/validator/snd": s}
        for e, (t, i, s) in enumerate(zip(test, im, snd))
    ]
    config = {"data": {"source": "mnist", "target": "usps-esl", "batch_size": batch}, "method": {"name": "dann"}}
    return {"seed": seed, "config": config, "metrics": {T: test[-1]}, "history": history}


def test_each_protocol_reads_the_epoch_it_selects():
    record = _record(0, test=[0.5, 0.9, 0.7], im=[0.1, 0.2, 0.3], snd=[0.3, 0.9, 0.9])
    got = protocol_accuracies(record)
    assert got["last"] == pytest.approx(70.0)
    assert got["im"] == pytest.approx(70.0)  # IM is highest at the last epoch
    assert got["snd"] == pytest.approx(90.0)  # tie between epochs 1 and 2: the first
    assert got[BEST_ON_TEST] == pytest.approx(90.0)
    assert got[BEST_ON_TEST] >= max(v for k, v in got.items() if k != BEST_ON_TEST)
    # a run trained without train.test_every_epoch has no test curve: nothing to compare
    assert protocol_accuracies({"history": [{"epoch": 0, "val/validator/im": 0.1}]}) == {}


def test_table_shows_mean_over_seeds_and_the_gap_to_the_published_number(tmp_path):
    for seed, test in enumerate(([0.80, 0.90, 0.85], [0.84, 0.92, 0.87])):
        run = tmp_path / "m2u" / "dann" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "record.json").write_text(json.dumps(_record(seed, test, im=[0, 1, 2], snd=[2, 1, 0])))
    ref = Reference(value=91.7, source="TLLib digits table", column=T, match={"method.name": "dann"})
    text = protocol_table(tmp_path, [ref])
    row = next(line for line in text.splitlines() if line.startswith("| m2u/dann"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["m2u/dann", "2", "3"]
    assert cells[3].startswith("86.0 ± ")  # last: (85 + 87) / 2
    assert cells[4].startswith("86.0")  # IM picks the last epoch
    assert cells[5].startswith("82.0")  # SND picks the first epoch
    assert cells[6].startswith("91.0")  # best on test: (90 + 92) / 2
    assert cells[7] == "91.7 [1] (last -5.7, best-on-test -0.7)"
    assert "- [1] TLLib digits table" in text
    paths = plot_test_curves(tmp_path, tmp_path / "plots", [ref])
    assert [p.name for p in paths] == ["test_curves_mnist_to_usps-esl.png"] and paths[0].stat().st_size > 0
    # any other per-epoch test metric gets its own file, so per-task curves do not overwrite each other
    other = plot_test_curves(tmp_path, tmp_path / "plots", [ref], metric=T)
    assert other == paths  # T is the default metric here
    assert plot_test_curves(tmp_path, tmp_path / "plots", [ref], metric="test/target/left/accuracy") == []


def test_table_says_what_to_do_without_curves(tmp_path):
    run = tmp_path / "a" / "seed0"
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps({"seed": 0, "config": {}, "metrics": {T: 0.5}, "history": [{"epoch": 0}]}))
    assert "train.test_every_epoch=true" in protocol_table(tmp_path)


def test_curves_of_a_named_task_metric_get_their_own_file(tmp_path):
    """``mtlda report --curves``: a multi-task record's per-task test metric is drawn under its own name."""
    left = "test/target/left/accuracy"
    record = _record(0, [0.5, 0.6], im=[0, 1], snd=[0, 1])
    for entry, value in zip(record["history"], (0.55, 0.65)):
        entry[left] = value
    run = tmp_path / "mm2mmm" / "dann" / "seed0"
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps(record))
    paths = plot_test_curves(tmp_path, tmp_path / "plots", metric=left)
    assert [p.name for p in paths] == ["test_curves_mnist_to_usps-esl_test_target_left_accuracy.png"]
    assert paths[0].stat().st_size > 0


def test_report_curves_option_refuses_without_a_plot_folder_or_a_known_metric(tmp_path):
    run = tmp_path / "m2u" / "dann" / "seed0"
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps(_record(0, [0.8, 0.9], im=[0, 1], snd=[0, 1])))
    with pytest.raises(SystemExit, match="--curves needs --plots"):
        report_main([str(tmp_path), "--no-tensorboard", "--curves", T])
    with pytest.raises(SystemExit, match="no record .* has this metric"):
        report_main([str(tmp_path), "--no-tensorboard", "--plots", str(tmp_path / "plots"), "--curves", "test/target/nope"])
    assert report_main([str(tmp_path), "--no-tensorboard", "--plots", str(tmp_path / "plots"), "--curves", T]) == 0
    assert (tmp_path / "plots" / "test_curves_mnist_to_usps-esl.png").exists()


def test_curve_table_gives_the_seed_mean_at_evenly_spaced_epochs(tmp_path):
    """``mtlda report --curves train/dann/domain_accuracy``: the per-epoch training scalars the engine keeps in the
    history are tabulated (accuracies in %, other scalars as logged) at ten evenly spaced epochs."""
    acc, weight = "train/dann/domain_accuracy", "train/weight/domain"
    for seed, offset in enumerate((0.0, 0.1)):
        record = _record(seed, [0.5] * 20, im=[0] * 20, snd=[0] * 20)
        for index, entry in enumerate(record["history"], 1):
            entry[acc] = 0.5 + offset + index / 100
            entry[weight] = 2.0 * index
        run = tmp_path / "mm2mmm" / "dann" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "record.json").write_text(json.dumps(record))
    text = curve_table(tmp_path, acc)
    header = next(line for line in text.splitlines() if line.startswith("| experiment"))
    assert [c.strip() for c in header.strip("|").split("|")][2:] == [f"epoch {e}" for e in range(2, 21, 2)]
    row = [c.strip() for c in next(l for l in text.splitlines() if l.startswith("| mm2mmm/dann")).strip("|").split("|")]
    assert row[:2] == ["mm2mmm/dann", "2"]
    assert row[2] == "57.0" and row[-1] == "75.0"  # epoch 2: (52 + 62) / 2 %; epoch 20: (70 + 80) / 2 %
    weights = curve_table(tmp_path, weight)
    cells = [c.strip() for c in next(l for l in weights.splitlines() if l.startswith("| mm2mmm/dann")).strip("|").split("|")]
    assert cells[2] == "4.000" and cells[-1] == "40.000"  # not a percentage
    assert curve_table(tmp_path, "train/nope") is None
    assert report_main([str(tmp_path), "--no-tensorboard", "--plots", str(tmp_path / "plots"), "--curves", acc,
                        "--output", str(tmp_path / "report.md")]) == 0
    assert "## Per-epoch train/dann/domain_accuracy" in (tmp_path / "report.md").read_text()
    with pytest.raises(SystemExit, match="since the engine keeps the epoch means"):
        report_main([str(tmp_path), "--no-tensorboard", "--plots", str(tmp_path / "plots"), "--curves", "train/nope"])


def test_multitask_curves_are_grouped_by_dataset(tmp_path):
    """Runs without a domain pair (Sener & Koltun's MultiMNIST) get one plot per data.dataset."""
    left = "test/left/accuracy"
    for seed in (0, 1):
        record = {"seed": seed, "config": {"data": {"dataset": "multimnist", "batch_size": 256}},
                  "metrics": {left: 0.9}, "history": [{"epoch": e, "step": 235 * e, left: 0.8 + e / 100} for e in (1, 2)]}
        run = tmp_path / "multimnist" / "mtl" / "uniform" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "record.json").write_text(json.dumps(record))
    paths = plot_test_curves(tmp_path, tmp_path / "plots", metric=left)
    assert [p.name for p in paths] == ["test_curves_multimnist_test_left_accuracy.png"]


def test_rows_with_a_best_head_metric_get_tllibs_mcd_number_under_the_table(tmp_path):
    """MCD runs record the better of F1 and F2; the table keeps F1 and adds that score at the best epoch on test."""
    best = "test/target/digit/best_head_accuracy"
    for seed, (f1, better) in enumerate((([0.80, 0.90], [0.85, 0.93]), ([0.82, 0.88], [0.82, 0.95]))):
        record = _record(seed, f1, im=[0, 1], snd=[1, 0])
        record["config"]["method"]["name"] = "mcd"
        for entry, value in zip(record["history"], better):
            entry[best] = value
        run = tmp_path / "m2u" / "mcd" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "record.json").write_text(json.dumps(record))
    dann = tmp_path / "m2u" / "dann" / "seed0"
    dann.mkdir(parents=True)
    (dann / "record.json").write_text(json.dumps(_record(0, [0.9, 0.91], im=[0, 1], snd=[0, 1])))
    ref = Reference(value=94.1, source="TLLib digits table", column=T, match={"method.name": "mcd"})
    text = protocol_table(tmp_path, [ref])
    row = next(line for line in text.splitlines() if line.startswith("| m2u/mcd"))
    assert "89.0" in row  # best on test of F1: (90 + 88) / 2
    line = next(line for line in text.splitlines() if line.startswith("- m2u/mcd:"))
    assert line.startswith("- m2u/mcd: 94.0 ± ") and line.endswith("over 2 run(s); published 94.1, -0.1")
    assert not any(line.startswith("- m2u/dann:") for line in text.splitlines())
    assert best in text
