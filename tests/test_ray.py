"""``--ray``: each run of a suite as one Ray task, writing its record exactly as local execution does.

Skipped when Ray is not installed (it is an optional extra: ``pip install .[ray]``).
"""
import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from benchmarks.parallel import RunFailedError, execute_ray  # noqa: E402
from benchmarks.suite import execute, plan_suite  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.epochs=1", "train.steps_per_epoch=2", "data.batch_size=16", "train.progress_bar=false", "train.threads=1"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def suite_file(tmp_path, experiments):
    lines = ["name: s", "seeds: [0]", "experiments:"]
    for name, overrides in experiments:
        lines += [f"  - name: {name}", f"    config: {ROOT / 'configs/experiments/digits_da.yaml'}",
                  f"    overrides: {json.dumps(overrides)}"]
    path = tmp_path / "suite.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ray_tasks_write_the_records_local_execution_reads(local_ray, tmp_path):
    suite = suite_file(tmp_path, [("plain", ["method.name=source_only"]), ("dann", ["method.name=dann"])])
    _, runs = plan_suite(suite, tmp_path / "out", overrides=TINY)
    records = execute_ray(runs, progress=False, poll_seconds=0.2)
    assert [r["name"] for r in records] == ["plain", "dann"]
    for run in runs:  # same run folders, record, checkpoint and log as a local runner
        assert (run.run_dir / "record.json").exists() and (run.run_dir / "checkpoints" / "last.pt").exists()
    log = (tmp_path / "out" / "s" / "runs.log").read_text().split()
    assert log.count("start") == 2 and log.count("finish") == 2
    # a local rerun finds them complete (same config hash), and so does a Ray rerun
    assert [r["finished"] for r in execute(runs, progress=False)] == [r["finished"] for r in records]
    assert [r["finished"] for r in execute_ray(runs, progress=False)] == [r["finished"] for r in records]
    assert log.count("start") == 2


def test_a_failing_ray_task_is_reported_by_name(local_ray, tmp_path):
    suite = suite_file(tmp_path, [("broken", ["method.name=source_only", "data.source=mnist",
                                              f"data.root={tmp_path / 'no-data'}"])])
    _, runs = plan_suite(suite, tmp_path / "out", overrides=TINY)
    with pytest.raises(RunFailedError, match=r"run 'broken' seed 0 .* failed in a Ray task: \w*NotFoundError"):
        execute_ray(runs, progress=False)
