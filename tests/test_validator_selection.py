"""Per-validator checkpoint picks against the oracle, from run histories."""
import json

from benchmarks.validator_selection import oracle_accuracy, picked_accuracy, validator_table


def _history(oracle, **scores):
    return [
        {"epoch": i + 1, "val/oracle/target_accuracy": o, **{f"val/validator/{k}": v[i] for k, v in scores.items()}}
        for i, o in enumerate(oracle)
    ]


def test_each_validator_picks_its_best_epoch_and_the_oracle_is_the_maximum():
    history = _history([0.5, 0.9, 0.7], entropy=[-3.0, -2.0, -1.0], snd=[4.0, 5.0, 1.0])
    assert picked_accuracy(history, "entropy") == 70.0  # entropy is stored negated: -1.0 is best
    assert picked_accuracy(history, "snd") == 90.0
    assert oracle_accuracy(history) == 90.0
    assert picked_accuracy(history, "bnm") is None
    # a validator can never beat the oracle
    assert all(picked_accuracy(history, v) <= oracle_accuracy(history) for v in ("entropy", "snd"))


def test_table_aggregates_seeds_per_experiment(tmp_path):
    for seed, oracle in enumerate(([0.5, 0.8], [0.6, 0.7])):
        run = tmp_path / "dann" / f"seed{seed}"
        run.mkdir(parents=True)
        record = {"seed": seed, "metrics": {}, "config": {}, "history": _history(oracle, im=[1.0, 0.0])}
        (run / "record.json").write_text(json.dumps(record))
    text = validator_table(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| dann"))
    # im picks epoch 1 in both seeds: 50 and 60 → 55 ± 7.1; the oracle: 80 and 70 → 75 ± 7.1
    assert row == "| dann | 2 | 55.0 ± 7.1 | 75.0 ± 7.1 |"


def test_folders_without_validator_histories_say_so(tmp_path):
    run = tmp_path / "mtl" / "seed0"
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps({"seed": 0, "metrics": {}, "history": [{"epoch": 1}]}))
    assert "No domain-adaptation records" in validator_table(tmp_path)


def test_report_cli_appends_the_validator_table(tmp_path, capsys):
    from benchmarks.cli import main

    run = tmp_path / "dann" / "seed0"
    run.mkdir(parents=True)
    record = {"seed": 0, "metrics": {"test/target/digit/accuracy": 0.5}, "config": {"report": ["test/target/digit/accuracy"]},
              "history": _history([0.4, 0.6], snd=[2.0, 1.0])}
    (run / "record.json").write_text(json.dumps(record))
    assert main(["report", str(tmp_path), "--validators", "--no-tensorboard", "--no-references"]) == 0
    out = capsys.readouterr().out
    assert "## Checkpoint selection by each validator" in out
    assert "| dann | 1 | 40.0 | 60.0 |" in out
