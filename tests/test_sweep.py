"""Sweeps in suite files: grid / random / ablation expansion, names, reproducibility, errors, selection."""
import pytest

from benchmarks.config import ConfigError
from benchmarks.suite import load_sweeps, plan_suite, summarise
from benchmarks.selection import select_configuration
from benchmarks.sweep import hash_seed, sample_trial

CONFIG = "/work/main/configs/experiments/digits_da.yaml"


def write(tmp_path, text, name="suite.yaml"):
    path = tmp_path / name
    path.write_text(text.replace("CONFIG", str(__import__("pathlib").Path(__file__).resolve().parents[1] / "configs/experiments/digits_da.yaml")))
    return path


SUITE = """\
name: s
seeds: [0, 1]
sweep_seed: 7
experiments:
  - name: so
    config: CONFIG
    overrides: [method.name=source_only]
sweeps:
  - config: CONFIG
    overrides: [method.name=dann]
    grid:
      optim.lr: [0.01, 0.001]
      method.args.trade_off: [0.1, 1.0]
    selection: {metric: val/source/digit/accuracy, mode: max}
  - config: CONFIG
    overrides: [method.name=dann]
    seeds: [3]
    random:
      n: 4
      params:
        optim.lr: {loguniform: [1.0e-4, 1.0e-1]}
        method.args.trade_off: {uniform: [0.1, 1.0]}
        data.batch_size: {int: [16, 64]}
        method.args.hidden_sizes: {choice: [[1024, 1024], [100]]}
  - config: CONFIG
    overrides: [method.name=dann]
    ablation:
      no_grl_schedule: [method.args.schedule=constant]
      small_discriminator: ["method.args.hidden_sizes=[100]"]
"""


def test_plan_expands_every_kind_with_readable_names(tmp_path):
    name, runs = plan_suite(write(tmp_path, SUITE), tmp_path / "out")
    assert name == "s"
    names = list(dict.fromkeys(r.experiment for r in runs))
    assert names == [
        "so",
        "grid/lr=0.01,trade_off=0.1", "grid/lr=0.01,trade_off=1", "grid/lr=0.001,trade_off=0.1", "grid/lr=0.001,trade_off=1",
        "random/trial00", "random/trial01", "random/trial02", "random/trial03",
        "ablation/base", "ablation/no_grl_schedule", "ablation/small_discriminator",
    ]
    assert len(runs) == 2 + 4 * 2 + 4 * 1 + 3 * 2  # the random block has its own seeds
    by = {(r.experiment, r.seed): r for r in runs}
    grid = by[("grid/lr=0.001,trade_off=0.1", 1)]
    assert grid.config.optim.lr == 0.001 and grid.config.method.args.trade_off == 0.1 and grid.config.method.name == "dann"
    assert grid.run_dir == tmp_path / "out" / "s" / "grid/lr=0.001,trade_off=0.1" / "seed1"
    assert grid.selection == {"metric": "val/source/digit/accuracy", "mode": "max", "oracle": False}
    assert by[("ablation/no_grl_schedule", 0)].config.method.args.schedule == "constant"
    assert list(by[("ablation/small_discriminator", 0)].config.method.args.hidden_sizes) == [100]
    assert "schedule" not in by[("ablation/base", 0)].config.method.args
    trial = by[("random/trial02", 3)]
    assert 1e-4 <= trial.config.optim.lr <= 1e-1 and 16 <= trial.config.data.batch_size <= 64
    assert list(trial.config.method.args.hidden_sizes) in ([1024, 1024], [100])
    # --only accepts globs
    _, only = plan_suite(write(tmp_path, SUITE), tmp_path / "out", only=["ablation/*"])
    assert {r.experiment for r in only} == {"ablation/base", "ablation/no_grl_schedule", "ablation/small_discriminator"}


def test_random_search_is_reproducible_per_seed_trial_and_key(tmp_path):
    params = {"a": {"uniform": [0.0, 1.0]}, "b": {"loguniform": [1e-4, 1.0]}, "c": {"int": [1, 3]}, "d": {"choice": ["x", "y"]}}
    first = [sample_trial(7, t, params) for t in range(20)]
    assert first == [sample_trial(7, t, params) for t in range(20)]
    # a key's value depends only on (seed, trial, key): adding a key changes nothing already drawn
    with_more = [sample_trial(7, t, {**params, "e": {"uniform": [0, 1]}}) for t in range(20)]
    assert all({k: v for k, v in w.items() if k != "e"} == f for w, f in zip(with_more, first))
    assert [sample_trial(8, t, params) for t in range(20)] != first
    assert {f["c"] for f in first} == {1, 2, 3} and {f["d"] for f in first} == {"x", "y"}
    assert hash_seed(7, 0, "a") == hash_seed(7, 0, "a") != hash_seed(7, 1, "a")
    # the same suite planned twice gives the same trials; another sweep_seed gives others
    blocks = load_sweeps(write(tmp_path, SUITE))
    again = load_sweeps(write(tmp_path, SUITE, "again.yaml"))
    assert [g.params for g in blocks[1].experiments] == [g.params for g in again[1].experiments]
    other = load_sweeps(write(tmp_path, SUITE.replace("sweep_seed: 7", "sweep_seed: 8"), "other.yaml"))
    assert [g.params for g in blocks[1].experiments] != [g.params for g in other[1].experiments]


@pytest.mark.parametrize(
    "old, new, anchor, words",
    [
        ("optim.lr: [0.01, 0.001]", "optim.lr: 0.01", "optim.lr: 0.01", ["optim.lr", "non-empty list"]),
        ("      n: 4", "      n: 0", "n: 0", ["random.n"]),
        ("{loguniform: [1.0e-4, 1.0e-1]}", "{logunifrom: [1.0e-4, 1.0e-1]}", "logunifrom", ["optim.lr", "exactly one distribution"]),
        ("{uniform: [0.1, 1.0]}", "{uniform: [1e-4, 1.0]}", "1e-4", ["trade_off", "1.0e-4"]),
        ("mode: max", "mode: maximum", "maximum", ["mode"]),
        ("metric: val/source/digit/accuracy", "metric: test/target/digit/accuracy", "test/target", ["oracle"]),
        ("    ablation:", "    ablaton:", "ablaton", ["ablaton", "valid keys"]),
        ("optim.lr: [0.01, 0.001]", "optim.lrr: [0.01, 0.001]", "    grid:", ["unknown config key 'optim.lrr'"]),
        ("      no_grl_schedule: [method.args.schedule=constant]", "      no_grl_schedule: []", "no_grl", ["changes nothing"]),
        ("  - name: so\n", "  - name: so\n    confg: x.yaml\n", "confg", ["confg"]),
    ],
)
def test_bad_sweeps_name_the_line_and_key(tmp_path, old, new, anchor, words):
    assert old in SUITE
    text = SUITE.replace(old, new, 1)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if anchor in ln)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        plan_suite(path, tmp_path / "out")
    message = str(info.value)
    assert f"{path}:{line}:" in message, message
    for word in words:
        assert word in message, message


def test_oracle_selection_needs_oracle_true(tmp_path):
    text = SUITE.replace("{metric: val/source/digit/accuracy, mode: max}", "{metric: test/target/digit/accuracy, oracle: true}")
    blocks = load_sweeps(write(tmp_path, text))
    assert blocks[0].selection == {"metric": "test/target/digit/accuracy", "mode": "max", "oracle": True}
    bad = SUITE.replace("metric: val/source/digit/accuracy", "metric: val/oracle/target/digit/accuracy")
    with pytest.raises(ConfigError, match="oracle"):
        load_sweeps(write(tmp_path, bad, "bad.yaml"))


def _record(name, seed, val, test):
    return {
        "name": name, "seed": seed, "config": {"report": ["test/target/digit/accuracy"]},
        "metrics": {"val/source/digit/accuracy": val, "test/target/digit/accuracy": test},
    }


def test_selection_uses_the_validation_mean_over_seeds_and_reports_the_oracle():
    records = [
        # a: best single validation seed but worse mean; b: best validation mean; c: best test (the oracle)
        _record("g/a", 0, 0.99, 0.50), _record("g/a", 1, 0.50, 0.52),
        _record("g/b", 0, 0.80, 0.60), _record("g/b", 1, 0.80, 0.62),
        _record("g/c", 0, 0.60, 0.90), _record("g/c", 1, 0.60, 0.92),
        _record("other", 0, 1.0, 1.0),
    ]
    result = select_configuration(records, {"metric": "val/source/digit/accuracy", "mode": "max"}, experiments=["g/a", "g/b", "g/c"])
    assert result["chosen"] == "g/b" and result["configurations"] == 3
    assert result["selection_value"] == pytest.approx(0.80)
    assert result["metrics"]["test/target/digit/accuracy"] == pytest.approx(0.61)
    assert result["oracle"]["test/target/digit/accuracy"] == {"experiment": "g/c", "value": pytest.approx(0.91)}
    low = select_configuration(records, {"metric": "val/source/digit/accuracy", "mode": "min"}, experiments=["g/a", "g/b", "g/c"])
    assert low["chosen"] == "g/c"
    with pytest.raises(ConfigError, match="in no record"):
        select_configuration(records, {"metric": "val/nope", "mode": "max"})


def test_summarise_adds_the_selection_of_each_sweep(tmp_path):
    _, runs = plan_suite(write(tmp_path, SUITE), tmp_path / "out", only=["grid/*"])
    records = [_record(r.experiment, r.seed, 0.5 + 0.1 * (r.experiment.endswith("trade_off=1")), 0.4) for r in runs]
    for record, run in zip(records, runs):
        record["config"]["report"] = ["test/target/digit/accuracy"]
    text = summarise(records, runs)
    assert "Sweep 'grid' selection" in text and "**grid/lr=0.001,trade_off=1**" in text
    assert "oracle (upper bound)" in text
