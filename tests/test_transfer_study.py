"""The transfer study's plan and table (the full study is a benchmark command, not a test)."""
from pathlib import Path

from benchmarks.transfer_study import LABELS, STRATEGIES, plan, table


def test_plan_covers_every_target_label_count_strategy_and_seed(tmp_path):
    pretrain, runs = plan(tmp_path, "/data", [0, 1], ["usps", "mnist-m"])
    assert len(pretrain) == 1 and pretrain[0].config.train.save_backbone
    assert len(runs) == 2 * len(LABELS) * len(STRATEGIES) * 2
    backbone = str((pretrain[0].run_dir / "backbone.pt").resolve())
    for run in runs:
        target, labels, strategy = run.experiment.split("/")
        cfg = run.config
        assert cfg.data.root == "/data"
        assert cfg.data.dataset == ("usps-esl" if target == "usps" else "mnist-m")
        assert cfg.data.labels_per_class == (None if labels == "all" else int(labels))
        assert cfg.model.weights == (None if strategy == "scratch" else backbone)
        assert sum(p.epochs for p in cfg.train.phases) in (0, cfg.train.epochs)
        assert run.run_dir == Path(tmp_path) / target / labels / strategy / f"seed{run.seed}"
    frozen = next(r for r in runs if r.experiment.endswith("feature_extraction")).config.train.phases
    assert [p.train_blocks for p in frozen] == [0]


def test_table_reports_mean_std_and_n_per_cell():
    def record(name, acc, seed):
        return {"name": name, "seed": seed, "metrics": {"test/digit/accuracy": acc},
                "hardware": {"device": "cpu", "cpu_count": 2, "torch_threads": 1}}

    records = [record("usps/10/scratch", 0.5, 0), record("usps/10/scratch", 0.7, 1), record("usps/all/fine_tune", 0.9, 0)]
    pretrain = {"steps": 10, "metrics": {"test/digit/accuracy": 0.98}}
    text = table(records, ["usps"], pretrain)
    scratch = next(line for line in text.splitlines() if line.startswith("| scratch"))
    assert "60.0 ± 14.1 (2)" in scratch and scratch.count("—") == 2
    assert "90.0 (1)" in next(line for line in text.splitlines() if line.startswith("| fine_tune"))
    assert "98.0%" in text and "2 CPU cores" in text
