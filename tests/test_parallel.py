"""Local parallel suites (benchmarks/parallel.py): worker processes over the per-run locks."""
import json
from pathlib import Path

import pytest

from benchmarks.cli import build_parser, main
from benchmarks.parallel import RunFailedError, execute_parallel, threads_per_worker, worker_device
from benchmarks.suite import RunLock, plan_suite

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.epochs=1", "train.steps_per_epoch=2", "data.batch_size=16", "train.progress_bar=false"]


def suite_file(tmp_path, experiments):
    lines = ["name: s", "seeds: [0]", "experiments:"]
    for name, config, overrides in experiments:
        lines += [f"  - name: {name}", f"    config: {ROOT / config}", f"    overrides: {json.dumps(overrides)}"]
    path = tmp_path / "suite.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def starts(output):
    return [line.split()[2] for line in (Path(output) / "s" / "runs.log").read_text().splitlines() if line.split()[1] == "start"]


def test_threads_are_divided_between_workers():
    assert threads_per_worker(1, cores=2) == 2
    assert threads_per_worker(2, cores=2) == 1
    assert threads_per_worker(3, cores=2) == 1  # never zero
    assert threads_per_worker(4, cores=16) == 4
    with pytest.raises(ValueError, match="at least 1"):
        threads_per_worker(0, cores=2)


def test_gpus_are_assigned_round_robin_only_when_there_are_several():
    assert [worker_device("auto", k, 3) for k in range(4)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert worker_device("cuda", 1, 2) == "cuda:1"
    assert worker_device("cpu", 1, 2) == "cpu"  # a forced device is kept
    assert worker_device("cuda:1", 0, 2) == "cuda:1"
    assert worker_device("auto", 1, 1) == "auto"  # one GPU (or none): today's behaviour


def test_two_workers_run_each_run_once_and_a_rerun_skips_them(tmp_path):
    suite = suite_file(tmp_path, [
        ("plain", "configs/experiments/digits_da.yaml", ["method.name=source_only"]),
        ("dann", "configs/experiments/digits_da.yaml", ["method.name=dann"]),
        ("mtl", "configs/experiments/multidigits_mtl.yaml", []),
    ])
    _, runs = plan_suite(suite, tmp_path / "out", overrides=TINY)
    records = execute_parallel(runs, workers=2, progress=False, poll_seconds=0.2)
    assert [r["name"] for r in records] == ["plain", "dann", "mtl"]
    assert all((run.run_dir / "record.json").exists() for run in runs)
    assert sorted(starts(tmp_path / "out")) == ["dann", "mtl", "plain"]  # each trained exactly once
    assert {r["hardware"]["torch_threads"] for r in records} == {threads_per_worker(2)}
    again = execute_parallel(runs, workers=2, progress=False, poll_seconds=0.2)
    assert [r["finished"] for r in again] == [r["finished"] for r in records]  # read back, not retrained
    assert len(starts(tmp_path / "out")) == 3


def test_a_run_held_by_another_runner_is_waited_for(tmp_path):
    suite = suite_file(tmp_path, [
        ("a", "configs/experiments/digits_da.yaml", ["method.name=source_only"]),
        ("b", "configs/experiments/digits_da.yaml", ["method.name=coral"]),
    ])
    _, runs = plan_suite(suite, tmp_path / "out", overrides=TINY)
    held = RunLock(runs[1].run_dir)
    assert held.acquire()  # another runner "trains" b; it dies without a record: the pool must finish b itself
    import threading

    threading.Timer(3.0, held.release).start()
    records = execute_parallel(runs, workers=2, progress=False, poll_seconds=0.3)
    assert [r["name"] for r in records] == ["a", "b"]
    assert sorted(starts(tmp_path / "out")) == ["a", "b"]


def test_a_failing_run_is_reported_by_name(tmp_path):
    suite = suite_file(tmp_path, [
        ("broken", "configs/experiments/digits/mnist_to_usps.yaml", [f"data.root={tmp_path / 'no-data'}"]),
    ])
    _, runs = plan_suite(suite, tmp_path / "out", overrides=TINY)
    with pytest.raises(RunFailedError, match=r"run 'broken' seed 0 \(.*broken/seed0\) failed in worker \d: \w*NotFoundError: data root") as caught:
        execute_parallel(runs, workers=2, progress=False, poll_seconds=0.2)
    assert "rerun the same command to resume" in str(caught.value)
    assert caught.value.user_error  # a missing data root: the message says what to fix, no traceback shown
    assert "Traceback" in caught.value.details and "Traceback" not in str(caught.value)
    assert not (runs[0].run_dir / "record.json").exists()


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_cli_reports_a_user_error_in_a_worker_as_one_line_and_exit_code_2(tmp_path, capsys, command):
    """As in a sequential run: a missing or damaged file is one ``error:`` line, exit code 2, no traceback."""
    suite = suite_file(tmp_path, [
        ("broken", "configs/experiments/digits/mnist_to_usps.yaml", [f"data.root={tmp_path / 'no-data'}"]),
    ])
    code = main([command, str(suite), *TINY, "--output", str(tmp_path / "out"), "--workers", "2", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: run 'broken' seed 0") and "data root" in err[0]


def test_an_unexpected_worker_failure_keeps_its_traceback(tmp_path):
    """Anything else (a bug, not a bad input) shows the worker's traceback and is not a user error."""
    from types import SimpleNamespace

    run = SimpleNamespace(experiment="x", seed=0, run_dir=tmp_path / "x" / "seed0")
    error = RunFailedError(run, "RuntimeError: boom", "worker 0", "Traceback (most recent call last): ...")
    assert not error.user_error
    assert "--- traceback from the worker ---" in str(error) and "The other runs were stopped" in str(error)


def test_workers_and_ray_are_exclusive_options(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "x.yaml", "--workers", "2", "--ray"])
    assert "not allowed with argument" in capsys.readouterr().err
    args = build_parser().parse_args(["sweep", "x.yaml", "--ray"])
    assert args.ray == "" and args.workers == 1  # --ray alone: a local Ray
    assert build_parser().parse_args(["run", "x.yaml", "--ray", "auto"]).ray == "auto"
