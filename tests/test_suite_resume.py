"""Suite safety: per-run locks (two runners never train a run twice) and kill -9 followed by a rerun."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.suite import RunLock, execute, plan_suite

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.epochs=2", "train.steps_per_epoch=2", "data.batch_size=16", "train.threads=1", "train.progress_bar=false"]

RUNNER = """
import os, signal, sys, json
from pathlib import Path
from benchmarks.suite import plan_suite, execute
suite, output, kill_dir = sys.argv[1], sys.argv[2], sys.argv[3]
overrides = json.loads(sys.argv[4])
def killer(trainer, epoch):
    # a real kill -9 of this runner in the middle of the suite, after the first epoch of one run
    if kill_dir != "-" and Path(trainer.run_dir) == Path(kill_dir) and trainer.epoch == 1:
        os.kill(os.getpid(), signal.SIGKILL)
_, runs = plan_suite(suite, output, overrides=overrides)
records = execute(runs, progress=False, poll_seconds=0.2, callbacks=[killer])
print("RECORDS", sum(r is not None for r in records))
"""


def suite_file(tmp_path, experiments=2, seeds="[0, 1]"):
    config = ROOT / "configs/experiments/digits_da.yaml"
    lines = [f"name: s\nseeds: {seeds}\nexperiments:"]
    methods = ["source_only", "dann", "coral"][:experiments]
    for m in methods:
        lines.append(f"  - name: {m}\n    config: {config}\n    overrides: [method.name={m}]")
    path = tmp_path / "suite.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_runner(suite, output, kill_dir="-"):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(suite), str(output), str(kill_dir), json.dumps(TINY)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def log_events(output):
    lines = (Path(output) / "s" / "runs.log").read_text().splitlines()
    return [line.split()[1:4] for line in lines]  # event, experiment, seed


def test_a_held_lock_is_skipped_and_picked_up_later(tmp_path):
    _, runs = plan_suite(suite_file(tmp_path, 1, "[0]"), tmp_path / "out", overrides=TINY)
    run = runs[0]
    held = RunLock(run.run_dir)
    assert held.acquire()
    assert not RunLock(run.run_dir).acquire()  # a second holder is refused at once (non-blocking)
    assert execute(runs, progress=False, wait=False) == [None]  # skipped while locked
    held.release()
    (record,) = execute(runs, progress=False, poll_seconds=0.1)
    assert record["seed"] == 0 and (run.run_dir / "record.json").exists()


def test_two_concurrent_runners_train_each_run_exactly_once(tmp_path):
    suite = suite_file(tmp_path, 2, "[0, 1]")
    output = tmp_path / "out"
    first, second = start_runner(suite, output), start_runner(suite, output)
    outs = [p.communicate(timeout=500) for p in (first, second)]
    for p, (out, err) in zip((first, second), outs):
        assert p.returncode == 0, err
        assert "RECORDS 4" in out  # each runner ends with every record, its own or the other's
    events = log_events(output)
    starts = [tuple(e[1:]) for e in events if e[0] in ("start", "resume")]
    assert sorted(starts) == sorted({("source_only", "seed0"), ("source_only", "seed1"), ("dann", "seed0"), ("dann", "seed1")})
    assert len([e for e in events if e[0] == "finish"]) == 4
    stamps = {json.loads(p.read_text())["started"] for p in output.glob("s/*/seed*/record.json")}
    assert len(stamps) == 4


def test_kill_minus_9_mid_suite_then_rerun_matches_an_uninterrupted_suite(tmp_path):
    suite = suite_file(tmp_path, 1, "[0, 1]")
    # reference: the same suite, uninterrupted (in this process, also one thread)
    _, reference_runs = plan_suite(suite, tmp_path / "reference", overrides=TINY)
    reference = {r["seed"]: r for r in execute(reference_runs, progress=False)}

    output = tmp_path / "out"
    victim = output / "s" / "source_only" / "seed1"
    killed = start_runner(suite, output, kill_dir=victim)
    killed.communicate(timeout=500)
    assert killed.returncode == -9
    assert (victim / "checkpoints" / "last.pt").exists() and not (victim / "record.json").exists()
    assert (output / "s" / "source_only" / "seed0" / "record.json").exists()

    rerun = start_runner(suite, output)
    out, err = rerun.communicate(timeout=500)
    assert rerun.returncode == 0, err
    assert "RECORDS 2" in out
    events = log_events(output)
    assert ["resume", "source_only", "seed1"] in events  # resumed from last.pt, not restarted
    assert [e for e in events if e[1:] == ["source_only", "seed0"] and e[0] != "finish"] == [["start", "source_only", "seed0"]]
    for seed in (0, 1):
        record = json.loads((output / "s" / "source_only" / f"seed{seed}" / "record.json").read_text())
        assert record["config_hash"] == reference[seed]["config_hash"]
        assert record["metrics"] == pytest.approx(reference[seed]["metrics"], abs=1e-6)
        assert [h["val/source/digit/accuracy"] for h in record["history"]] == pytest.approx(
            [h["val/source/digit/accuracy"] for h in reference[seed]["history"]], abs=1e-6
        )
