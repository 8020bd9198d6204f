"""The command line: list, the quick-start suite in a reduced mode, resume and refusal."""
import json
import subprocess
import sys

import pytest

from benchmarks.cli import main
from benchmarks.config import ConfigError
from benchmarks.suite import load_suite

REDUCED = ["train.epochs=1", "train.steps_per_epoch=2", "data.batch_size=16"]


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("digits-m", "multidigits", "dann", "coral", "source_only", "uncertainty", "static", "lenet"):
        assert name in out


def test_list_shows_every_method_and_validator_with_its_paper(capsys):
    import re

    from adapt.validators import VALIDATORS
    from benchmarks.registry import METHODS

    for section, registry in (("methods", METHODS), ("validators", VALIDATORS)):
        assert main(["list", section]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == f"{section}:"
        listed = {line.split()[0]: line for line in lines[1:]}
        assert set(listed) == set(registry)
        # every entry but the two baselines (source-only training, source accuracy) cites a paper year
        cited = {name for name, line in listed.items() if re.search(r"\b(19|20)\d\d\b", line)}
        assert set(registry) - cited <= {"source_only", "source_accuracy", "oracle"}
    assert "upper bound" in listed["oracle"] and "computed by default" in listed["source_accuracy"]
    assert "computed by default" not in listed["dev"]  # DEV trains a domain classifier: opt-in


def test_quickstart_suite_runs_reduced_and_prints_a_table(tmp_path, capsys):
    args = ["run", "configs/suites/quickstart.yaml", *REDUCED, "--seeds", "0", "1", "--output", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    names = [e.name for e in load_suite("configs/suites/quickstart.yaml").experiments]
    assert {"da/source_only", "da/dann", "da/coral", "mtl/equal", "mtl/uncertainty"} <= set(names)
    for row in names:
        assert f"| {row} | 2 |" in out
    assert "test/target/moon/accuracy" in out and "test/left/accuracy" in out and "test/sum/mae" in out
    assert "tensorboard --logdir" in out
    records = sorted(tmp_path.glob("quickstart/**/seed*/record.json"))
    assert len(records) == 2 * len(names)
    assert (tmp_path / "quickstart" / "results.md").read_text().startswith("| experiment |")

    # a second invocation finds every record and trains nothing
    stamps = {p: p.stat().st_mtime_ns for p in records}
    assert main(args) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())

    # the same run name with a changed config is refused, not mixed in
    changed = ["run", "configs/suites/quickstart.yaml", "train.epochs=2", *REDUCED[1:], "--seeds", "0", "--output", str(tmp_path), "--no-progress"]
    assert main(changed) == 2
    assert "different configuration" in capsys.readouterr().err


def test_single_config_run_and_module_entry_point(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "configs/experiments/multidigits_mtl.yaml", *REDUCED,
         "--output", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "| multidigits | 1 |" in out
    record = json.loads((tmp_path / "multidigits" / "seed0" / "record.json").read_text())
    assert record["seed"] == 0 and record["config"]["train"]["epochs"] == 1


def test_cli_reports_config_errors_without_a_traceback(tmp_path, capsys):
    assert main(["run", "configs/experiments/digits_da.yaml", "train.epohcs=1", "--output", str(tmp_path)]) == 2
    assert "unknown config key 'train.epohcs'" in capsys.readouterr().err


def test_bad_suite_files_name_the_problem(tmp_path):
    bad = tmp_path / "suite.yaml"
    bad.write_text("name: s\nseeds: [0]\nexperiments:\n  - name: a\n    config: x.yaml\n    overides: []\n")
    with pytest.raises(ConfigError, match="overides"):
        load_suite(bad)
    bad.write_text("name: s\nexperiments:\n  - name: a\n    config: x.yaml\n  - name: a\n    config: y.yaml\n")
    with pytest.raises(ConfigError, match="repeated: a"):
        load_suite(bad)
    bad.write_text("name: s\nexperiments: []\n")
    with pytest.raises(ConfigError, match="no experiments"):
        load_suite(bad)
