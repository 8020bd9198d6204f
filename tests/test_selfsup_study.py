"""The self-supervised / regulariser transfer study's plan and table (the study itself is a
benchmark command, not a test)."""
from pathlib import Path

from benchmarks.selfsup_study import DA_RUNS, FINETUNING, LABELS, STARTS, paired_cell, plan, skipped, table


def test_plan_covers_every_start_target_label_count_fine_tuning_and_seed(tmp_path):
    pretrain, finetune, da = plan(tmp_path, "/data", [1], ["usps", "mnist-m"], labels=["10"])
    assert [r.experiment for r in pretrain] == [
        "pretrain/supervised", "pretrain/rotation/usps", "pretrain/rotation/mnist-m",
        "pretrain/contrastive/usps", "pretrain/contrastive/mnist-m",
    ]
    assert all(r.config.train.save_backbone and r.seed == 0 for r in pretrain)
    assert [list(r.config.data.unlabelled) for r in pretrain] == [[], ["usps-esl"], ["mnist-m"], ["usps-esl"], ["mnist-m"]]
    per_cell = len(STARTS) * len(FINETUNING) - 1  # no L2-SP from scratch
    assert len(finetune) == 2 * per_cell and {r.seed for r in finetune} == {1}  # 2 targets, one label count
    backbone = {r.experiment: str((r.run_dir / "backbone.pt").resolve()) for r in pretrain}
    for run in finetune:
        target, labels, start, finetuning = run.experiment.split("/")
        cfg = run.config
        assert not skipped(start, finetuning)
        assert cfg.data.root == "/data" and cfg.data.dataset == ("usps-esl" if target == "usps" else "mnist-m")
        assert cfg.data.labels_per_class == (None if labels == "all" else int(labels))
        expected = {"scratch": None, "supervised": backbone["pretrain/supervised"]}.get(start, backbone.get(f"pretrain/{start}/{target}"))
        assert cfg.model.weights == expected
        assert [e.name for e in cfg.regularizers] == ([] if finetuning == "plain" else [finetuning])
        assert not cfg.train.phases and cfg.train.epochs == 4 and cfg.train.steps_per_epoch == 100
        assert run.run_dir == Path(tmp_path) / target / labels / start / finetuning / f"seed{run.seed}"
    assert [r.experiment for r in da] == [f"da/mnist_to_mnistm/{v}" for v in DA_RUNS]
    rotation = [r for r in da if r.experiment.endswith("dann_rotation")][0].config
    assert rotation.method.name == "dann" and [e.name for e in rotation.selfsup] == ["rotation"]
    assert rotation.selfsup[0].domains is None  # both domains
    assert rotation.train.epochs * rotation.train.steps_per_epoch == 1000
    smoke_pretrain, smoke_finetune, _ = plan(tmp_path / "smoke", None, [0], ["usps"], smoke=True, labels=["all"])
    assert all(r.config.train.epochs == 1 and r.config.train.steps_per_epoch == 5 for r in smoke_pretrain + smoke_finetune)
    assert len(smoke_finetune) == per_cell and {r.config.data.labels_per_class for r in smoke_finetune} == {None}
    assert set(LABELS) == {"10", "100", "all"}  # the full study: every count of the issue


def _record(name, value, metric="test/digit/accuracy", seed=0, **extra):
    return {"name": name, "seed": seed, "metrics": {metric: value, **extra.pop("metrics", {})}, "steps": 400,
            "config": {"problem": "multitask", "data": {"dataset": "usps-esl", "batch_size": 32}, "selfsup": []},
            "hardware": {"device": "cpu", "cpu_count": 2, "torch_threads": 1}, **extra}


def test_table_states_budgets_and_marks_the_best_of_each_column():
    pretrain = [
        _record("pretrain/supervised", 0.98),
        {**_record("pretrain/rotation/usps", 0.0, metric="test/rotation/accuracy",
                   metrics={"test/probe/digit/accuracy": 0.9}),
         "config": {"problem": "self_supervised", "selfsup": [{"name": "rotation"}],
                    "data": {"dataset": "mnist", "unlabelled": ["usps-esl"], "batch_size": 64}}},
    ]
    finetune = [_record("usps/10/scratch/plain", 0.5), _record("usps/10/scratch/plain", 0.7, seed=1),
                _record("usps/10/rotation/bss", 0.8)]
    da = [_record("da/mnist_to_mnistm/dann", 0.55, metric="test/target/digit/accuracy")]
    text = table(pretrain, finetune, da, ["usps"])
    assert "SMOKE" not in text and "SMOKE" in table(pretrain, finetune, da, ["usps"], smoke=True)
    lines = text.splitlines()
    scratch = next(line for line in lines if line.startswith("| scratch | plain"))
    assert "60.0 ± 14.1 (2)" in scratch and scratch.count("—") == 2
    assert "**80.0 (1)**" in next(line for line in lines if line.startswith("| rotation | bss"))
    assert not any(line.startswith("| scratch | l2_sp") for line in lines)
    assert "mnist + usps-esl (no labels)" in text and "128 images a step" in text and "90.0" in text
    assert "400 steps of batch 32" in text and "| DANN | 55.0 (1) |" in text
    assert "| DANN + rotation prediction on source and target images | — |" in text


def test_paired_cell_is_the_mean_seed_difference_with_its_standard_error_and_t_test():
    row, base = {0: 80.0, 1: 82.0, 2: 90.0}, {0: 78.0, 1: 81.0, 2: 84.0, 3: 50.0}
    # differences 2, 1, 6 over the three shared seeds (seed 3 has no pair): mean 3, sd √7, sem √(7/3)
    from scipy.stats import ttest_rel
    p = ttest_rel([80.0, 82.0, 90.0], [78.0, 81.0, 84.0]).pvalue
    assert paired_cell(row, base) == f"+3.0 ± {(7 / 3) ** 0.5:.1f} (p {p:.2f})"
    assert paired_cell({0: 70.0}, {0: 72.5}) == "-2.5 (n 1)"
    assert paired_cell(row, None) == "—" and paired_cell({5: 1.0}, base) == "—"


def test_table_has_the_paired_differences_of_starts_and_regularisers():
    finetune = [_record("usps/10/scratch/plain", v, seed=s) for s, v in enumerate((0.50, 0.60))]
    finetune += [_record("usps/10/rotation/plain", v, seed=s) for s, v in enumerate((0.55, 0.66))]
    finetune += [_record("usps/10/rotation/l2_sp", v, seed=s) for s, v in enumerate((0.54, 0.66))]
    da = [_record("da/mnist_to_mnistm/dann", 0.5, metric="test/target/digit/accuracy"),
          _record("da/mnist_to_mnistm/dann_rotation", 0.53, metric="test/target/digit/accuracy")]
    lines = table([], finetune, da, ["usps"]).splitlines()
    start = next(line for line in lines if line.startswith("| rotation − scratch (plain)"))
    assert start.split(" | ")[1].startswith("+5.5 ± 0.5 (p ") and start.count("—") == 2
    regulariser = next(line for line in lines if line.startswith("| rotation: l2_sp − plain"))
    assert regulariser.split(" | ")[1].startswith("-0.5 ± 0.5 (p ")
    assert not any(line.startswith("| scratch: l2_sp") for line in lines)
    assert "DANN + rotation prediction − DANN: +3.0 (n 1)." in "\n".join(lines)
