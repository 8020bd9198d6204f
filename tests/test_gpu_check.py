"""The device check command (benchmarks/gpu_check.py) in its reduced CPU mode, and its exit status."""
from __future__ import annotations

import re


from benchmarks import gpu_check


def test_reduced_cpu_mode_passes_every_check(capsys):
    status = gpu_check.main(["--device", "cpu"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if re.match(r"^(PASS|FAIL|SKIP) ", line)]
    assert status == 0, out
    names = [line.split()[1] for line in lines]
    for kind, chosen in gpu_check.REDUCED.items():
        assert {f"{kind}/{name}" for name in chosen} <= set(names)
    # both precisions ran among the reduced components
    assert any("amp=on" in line for line in lines) and any("amp=off" in line for line in lines)
    assert {"resume", "sync-free", "ddp/nccl", "throughput"} <= set(names)
    assert all(line.startswith("PASS") for line in lines if not line.split()[1] == "ddp/nccl")
    assert re.search(r"SKIP\s+ddp/nccl\s+\(nccl data parallelism needs 2 or more CUDA GPUs; 0 here", out)
    assert re.search(r"\| lenet \| 1×28×28 \(256\) \| fp32 \| [\d.]+ \| \d+ \| 1\.00× \|", out)


def test_a_failed_check_is_reported_and_sets_the_exit_status(monkeypatch, capsys):
    def one_failing(report, *args):
        with report.check("method/broken amp=off"):
            raise RuntimeError("boom")
        with report.check("method/fine amp=off") as outcome:
            outcome["detail"] = "ok"

    monkeypatch.setattr(gpu_check, "check_components", one_failing)
    for name in ("check_resume", "check_sync_free", "check_ddp"):
        monkeypatch.setattr(gpu_check, name, lambda *args: None)
    assert gpu_check.main(["--device", "cpu", "--skip-throughput"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^FAIL\s+method/broken amp=off\s+\(RuntimeError: boom", out, re.M)
    assert re.search(r"^PASS\s+method/fine amp=off\s+\(ok, ", out, re.M)
    assert "2 checks: 1 failed, 0 skipped" in out
