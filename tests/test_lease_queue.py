"""The borrowed-GPU queue: its planning arithmetic, its partial curves, and the commit a copy without .git records."""
import json
import subprocess

import pytest
import torch

from benchmarks import lease_queue, records
from benchmarks.lease_queue import QueuedRun, parse_run, plan_queue, slowdown_at


def test_parse_run_reads_name_and_seed_and_refuses_anything_else():
    assert parse_run("m2u/dann:2") == ("m2u/dann", 2)
    for bad in ("m2u/dann", "m2u/dann:x", ":1"):
        with pytest.raises(ValueError, match="NAME:SEED"):
            parse_run(bad)


def test_slowdown_is_linear_in_parallelism_through_one_and_the_measured_point():
    assert slowdown_at(1, 8, 4.5) == 1.0
    assert slowdown_at(8, 8, 4.5) == pytest.approx(4.5)
    assert slowdown_at(15, 8, 4.5) == pytest.approx(8.0)
    assert slowdown_at(5, 8, 0.9) == 1.0  # faster together than alone is read as no slowdown


def test_without_contention_the_plan_runs_everything_at_once():
    runs = [QueuedRun(f"r{i}", 0, 1000) for i in range(6)]
    # 0.1 s/step alone and with 8 at once: each run takes ~1.15 * (25 + 100) s
    parallel, chosen = plan_queue(runs, {f"r{i}": 0.1 for i in range(6)}, 8, 1.0, 200.0, 14)
    assert chosen == runs
    assert parallel == 6


def test_a_serialising_gpu_makes_the_plan_run_few_at_a_time_and_drop_what_cannot_finish():
    runs = [QueuedRun(f"r{i}", 0, 1000) for i in range(6)]
    # measured with 8 at once, 8 times slower than alone: the GPU runs one process at a time
    costs = {f"r{i}": 0.8 for i in range(6)}  # 0.1 s/step alone
    parallel, chosen = plan_queue(runs, costs, 8, 8.0, 300.0, 14)
    assert len(chosen) < len(runs)
    assert chosen == runs[: len(chosen)]  # queue order is priority order
    assert 1 <= parallel <= 2
    # every chosen run fits: with P at once each step costs 0.1 * slowdown(P)
    per_run = lease_queue.SAFETY * (lease_queue.STARTUP_SECONDS + 1000 * 0.1 * slowdown_at(parallel, 8, 8.0))
    assert -(-len(chosen) // parallel) * per_run <= 300.0


def test_runs_without_a_calibration_are_never_planned():
    runs = [QueuedRun("measured", 0, 10), QueuedRun("failed", 0, 10)]
    _, chosen = plan_queue(runs, {"measured": 0.01}, 1, 1.0, 1000.0, 4)
    assert [r.name for r in chosen] == ["measured"]


def test_partial_history_keeps_the_completed_epochs_of_a_stopped_run(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    history = [{"epoch": 1, "test/target/digit/accuracy": 0.5}, {"epoch": 2, "test/target/digit/accuracy": 0.6}]
    torch.save({"epoch": 2, "global_step": 5000, "history": history}, tmp_path / "checkpoints" / "last.pt")
    assert not lease_queue._partial_history(tmp_path / "never_checkpointed")
    assert lease_queue._partial_history(tmp_path)
    saved = json.loads((tmp_path / "partial_history.json").read_text())
    assert saved["epoch"] == 2 and saved["global_step"] == 5000 and saved["history"] == history
    assert not (tmp_path / "record.json").exists()


def test_a_commit_named_in_the_environment_wins_over_a_copy_s_own_git(tmp_path, monkeypatch):
    calls = []

    def git(*args, **kwargs):
        calls.append(args)
        raise OSError("git is not installed")

    monkeypatch.setattr(subprocess, "run", git)
    monkeypatch.delenv("MTLDA_SOURCE_COMMIT", raising=False)
    assert records.git_commit(tmp_path) == {"commit": None, "dirty": None}
    assert calls
    calls.clear()
    monkeypatch.setenv("MTLDA_SOURCE_COMMIT", "0d37d1e")
    assert records.git_commit(tmp_path) == {"commit": "0d37d1e", "dirty": None, "commit_from": "MTLDA_SOURCE_COMMIT"}
    assert not calls  # git is not asked: a stale .git in a copied tree cannot override the caller


def test_runs_of_one_method_on_other_tasks_share_its_calibration():
    assert lease_queue.method_of("u2m_libsvm/dann") == "dann"
    runs = [QueuedRun("m2u/dann", 1, 10), QueuedRun("u2m/dann", 1, 10), QueuedRun("u2m/mcc", 1, 10)]
    _, chosen = plan_queue(runs, {"dann": 0.01}, 1, 1.0, 1000.0, 4)
    assert [r.name for r in chosen] == ["m2u/dann", "u2m/dann"]


def test_bad_queue_entries_are_one_error_line_before_anything_starts(tmp_path, capsys):
    suite = "configs/suites/digits_tllib.yaml"
    common = ["--window", "60", "--output", str(tmp_path), "--data-root", str(tmp_path), "--device", "cpu"]
    assert lease_queue.main([suite, *common, "--runs", "m2u/dann"]) == 2
    assert "NAME:SEED" in capsys.readouterr().err
    assert lease_queue.main([suite, *common, "--runs", "m2u/no_such_method:0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_method" in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing was started or written
