"""Data-parallel training (benchmarks/distributed.py) on CPU with gloo and two processes launched by torchrun.

One torchrun launch (module fixture) runs every collective check and writes
what each rank saw; the tests assert on it:

* with equal weighting, one step on two half-batches (gradients averaged) is
  the single-process step on the full batch;
* every gradient aggregator, for every target it supports, matches the
  single-process aggregation of the full batch's Jacobian;
* the replicas of a harness-built trainer draw different batches from the
  same initial weights, and a divergence of the replicas is detected.

A second launch trains a real (tiny) run through ``-m benchmarks run``.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks.distributed import DistributedUnsupportedError, check_supported
from mtl.aggregators import AGGREGATORS
from mtl.weighting import DWA, EqualWeighting, GradientAggregation, UncertaintyWeighting

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.epochs=2", "train.steps_per_epoch=3", "train.progress_bar=false", "train.log_every=2", "data.batch_size=16"]
AGGREGATOR_NAMES = [n for n, cls in AGGREGATORS.items() if not cls.fixed_weights]  # those offered as weightings

WORKER = r"""
import copy, json, sys
from pathlib import Path
import torch
from torch import nn
import torch.nn.functional as F
from benchmarks import distributed
from benchmarks.config import load_experiment
from benchmarks.experiment import build_trainer
from mtl.aggregators import AGGREGATORS
from mtl.weighting import EqualWeighting, GradientAggregation

out = Path(sys.argv[1])
tiny = json.loads(sys.argv[2])
torch.set_num_threads(1)
replicas = distributed.init_from_env("cpu")
rank, world = replicas.rank, replicas.world_size
result = {"rank": rank}

torch.manual_seed(0)
shared = nn.Sequential(nn.Linear(5, 6), nn.Tanh())
heads = nn.ModuleList([nn.Linear(6, 1), nn.Linear(6, 1)])
x, y = torch.randn(8, 5), torch.randn(8, 2)      # the same global batch on every rank (same seed)
initial = copy.deepcopy((shared, heads))

def step(weighting, xb, yb, sync):
    shared_, heads_ = copy.deepcopy(initial)
    params = [*shared_.parameters(), *heads_.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.5)
    rep = shared_(xb)
    losses = {f"t{k}": F.mse_loss(head(rep).squeeze(1), yb[:, k]) for k, head in enumerate(heads_)}
    torch.manual_seed(123)  # aggregators that draw random numbers (GradDrop) draw the same ones
    weighting.backward(losses, shared_parameters=list(shared_.parameters()),
                       task_parameters=list(heads_.parameters()), representation=rep)
    values = torch.stack([v.detach() for v in losses.values()])
    if sync:
        values = replicas.synchronise(values, params)
    optimizer.step()
    return torch.cat([p.detach().reshape(-1) for p in params]), values

half = slice(rank * 4, (rank + 1) * 4)

def compare(make_weighting):
    weighting = make_weighting()
    if isinstance(weighting, GradientAggregation):
        weighting.replicas = replicas
    ddp, ddp_values = step(weighting, x[half], y[half], sync=True)
    full, full_values = step(make_weighting(), x, y, sync=False)
    return {"diff": float((ddp - full).abs().max()), "scale": float(full.abs().max()),
            "loss_diff": float((ddp_values - full_values).abs().max()), "params": ddp.tolist()}

result["equal"] = compare(EqualWeighting)
# the local half-batch step alone really differs from the full-batch step (the test is not vacuous)
local, _ = step(EqualWeighting(), x[half], y[half], sync=False)
full, _ = step(EqualWeighting(), x, y, sync=False)
result["equal_local_diff"] = float((local - full).abs().max())

result["aggregators"] = {}
for name, cls in AGGREGATORS.items():
    if cls.fixed_weights:  # not offered as weightings
        continue
    targets = ["parameters"] + (["representation"] if getattr(cls, "supports_representation", True) else [])
    for target in targets:
        result["aggregators"][f"{name}/{target}"] = compare(lambda: GradientAggregation(cls(), target=target))

# a harness-built trainer: identical initial weights, rank-dependent batches
cfg = load_experiment("configs/experiments/digits_da.yaml", ["method.name=dann", *tiny, "train.device=cpu"])
trainer = build_trainer(cfg, out / f"unused{rank}")
params = torch.cat([p.detach().reshape(-1) for p in trainer.problem.parameters()])
images, _ = trainer.problem.source_batches.next()
result["initial_params_sum"] = float(params.double().sum())
result["first_batch_sum"] = int(images.long().sum())
result["seed"] = trainer.problem.source_batches.seed

# divergence is detected on every rank
try:
    with torch.no_grad():
        next(trainer.problem.parameters()).add_(float(rank))
    replicas.check_identical([trainer.problem])
    result["divergence"] = "not detected"
except RuntimeError as error:
    result["divergence"] = str(error)

(out / f"rank{rank}.json").write_text(json.dumps(result))
distributed.shutdown()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args, cwd=ROOT, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    script = out / "worker.py"
    script.write_text(WORKER)
    done = torchrun([str(script), str(out), json.dumps(TINY)])
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_equal_weighting_ddp_step_equals_full_batch_step(ranks):
    for result in ranks:
        assert result["equal"]["diff"] < 1e-6 * max(1.0, result["equal"]["scale"])
        assert result["equal"]["loss_diff"] < 1e-6  # averaged loss values = full-batch loss values
        assert result["equal_local_diff"] > 1e-3  # without averaging, a half-batch step is different
    assert ranks[0]["equal"]["params"] == ranks[1]["equal"]["params"]  # bitwise identical replicas


@pytest.mark.parametrize("name", AGGREGATOR_NAMES)
def test_gradient_aggregators_match_full_batch_aggregation(ranks, name):
    keys = [k for k in ranks[0]["aggregators"] if k.split("/")[0] == name]
    assert keys, f"{name} was not exercised"
    for key in keys:
        for result in ranks:
            got = result["aggregators"][key]
            assert got["diff"] < 1e-5 * max(1.0, got["scale"]), (key, got["diff"])
        assert ranks[0]["aggregators"][key]["params"] == ranks[1]["aggregators"][key]["params"], key


def test_representation_target_is_exercised_where_supported(ranks):
    keys = set(ranks[0]["aggregators"])
    assert {"mgda/representation", "imtl_g/representation", "graddrop/representation"} <= keys
    assert "pcgrad/representation" not in keys


def test_replicas_start_identical_and_draw_different_batches(ranks):
    assert ranks[0]["initial_params_sum"] == ranks[1]["initial_params_sum"]
    assert ranks[0]["seed"] != ranks[1]["seed"]
    assert ranks[0]["first_batch_sum"] != ranks[1]["first_batch_sum"]


def test_divergence_is_detected_on_every_rank(ranks):
    for result in ranks:
        assert "replicas diverged" in result["divergence"]


# --------------------------------------------------------------------------- the support matrix (no process group)


def test_methods_that_own_their_update_are_refused():
    problem = SimpleNamespace(owns_update=True, method=SimpleNamespace())
    with pytest.raises(DistributedUnsupportedError, match="own multi-step update"):
        check_supported(EqualWeighting(), problem)


def test_batch_dependent_loss_weightings_are_refused():
    with pytest.raises(DistributedUnsupportedError, match="this rank's loss values"):
        check_supported(DWA(), SimpleNamespace(owns_update=False))


@pytest.mark.parametrize("weighting", [EqualWeighting(), UncertaintyWeighting(), GradientAggregation(AGGREGATORS["mgda"]())])
def test_supported_weightings_pass(weighting):
    check_supported(weighting, SimpleNamespace(owns_update=False))


# --------------------------------------------------------------------------- end to end through the CLI


@pytest.mark.slow
def test_torchrun_run_trains_once_and_only_rank0_writes(tmp_path):
    done = torchrun(
        ["-m", "benchmarks", "run", "configs/experiments/digits_da.yaml", "method.name=dann", *TINY,
         "--device", "cpu", "--output", str(tmp_path)]
    )
    assert done.returncode == 0, done.stderr[-4000:]
    run_dir = tmp_path / "digits_to_digits-m" / "seed0"
    record = json.loads((run_dir / "record.json").read_text())
    assert record["distributed"] == {"world_size": 2, "backend": "gloo", "global_batch_factor": 2}
    assert record["steps"] == 6 and record["epochs_run"] == 2  # the replicas were checked identical every epoch
    events = list((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert events and len({p.name.rsplit(".", 2)[1] for p in events}) == 1  # one writer process (pid): rank 0
    assert done.stdout.count("| digits_to_digits-m |") == 1  # the table is printed once
    log = (tmp_path / "runs.log").read_text().split()
    assert log.count("start") == 1 and log.count("finish") == 1
    # a rerun under torchrun skips the complete run
    again = torchrun(
        ["-m", "benchmarks", "run", "configs/experiments/digits_da.yaml", "method.name=dann", *TINY,
         "--device", "cpu", "--output", str(tmp_path)]
    )
    assert again.returncode == 0, again.stderr[-4000:]
    assert (tmp_path / "runs.log").read_text().split().count("start") == 1
    # a single-process run of the same config trains with half the global batch: its results must not mix
    single = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "configs/experiments/digits_da.yaml", "method.name=dann", *TINY,
         "--device", "cpu", "--output", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert single.returncode == 2 and "different configuration" in single.stderr
    assert json.loads((run_dir / "record.json").read_text()) == record


@pytest.mark.slow
def test_torchrun_refuses_mcd_with_a_reason(tmp_path):
    done = torchrun(
        ["-m", "benchmarks", "run", "configs/experiments/digits_da.yaml", "method.name=mcd", *TINY,
         "--device", "cpu", "--output", str(tmp_path)]
    )
    assert done.returncode != 0  # each rank exits 2; torchrun reports the failed workers
    assert "error (rank 0)" in done.stderr and "own multi-step update" in done.stderr
    assert not (tmp_path / "digits_to_digits-m" / "seed0" / "record.json").exists()
