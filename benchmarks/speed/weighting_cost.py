"""What does each weighting cost per step, relative to equal weighting?

For K = 2, 10 and 40 tasks (alternately 10-class classification and scalar
regression, each with its own linear head on one shared backbone), times one
training step exactly as the engine runs it (forward, ``weighting.backward``,
``optimizer.step()``, ``weighting.update``) for every weighting registered in
``benchmarks.registry.WEIGHTINGS``, loss-level and gradient-level.  All
weightings are measured side by side in one process: every weighting gets its
own copy of the same initial model and an Adam optimiser, a few untimed
warm-up steps, and then ``--repeats`` rounds in which each weighting, in a
freshly shuffled order every round, runs one untimed step (to re-warm caches
after the previous weighting) and ``--steps`` timed steps with Python's
garbage collector paused.  The cell is the
median seconds per step of a weighting divided by that of equal weighting
measured in the same rounds; on CUDA the clock is synchronised around each
timed block.

    python -m benchmarks.speed.weighting_cost [--tasks 2 10 40] [--repeats 7] [--steps 5]
        [--backbone mlp|multilenet] [--device auto|cpu|cuda] [--threads N]
        [--only NAME ...] [--output benchmarks/results/weighting_cost.md]

Prints a Markdown table (rows: weighting, columns: K) and, with
``--output``, writes it atomically with a header naming the hardware, the
torch version, the date and the exact command.
"""
from __future__ import annotations

import argparse
import copy
import gc
import random
import shlex
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone

import torch
import torch.nn.functional as F
from torch import nn

from mtl.backbones import MultiLeNet
from mtl.model import MultiTaskModel
from mtl.weighting import LossWeighting

from ..devices import select_device
from ..records import atomic_write_bytes, hardware
from ..registry import WEIGHTINGS, build

NUM_CLASSES = 10


class SharedMLP(nn.Module):
    """64 → 256 → 256 with ReLUs: a small shared trunk whose cost is dominated by the heads' count at large K."""

    def __init__(self, in_features: int = 64, hidden: int = 256):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.out_features = hidden

    def forward(self, x):
        return self.body(x.flatten(1))


def task_names(k: int) -> list[str]:
    return [f"task{i:02d}" for i in range(k)]


def is_classification(index: int) -> bool:
    return index % 2 == 0


def make_problem(k: int, backbone: str, batch_size: int, device: torch.device, seed: int = 0):
    """Model with K linear heads, one fixed batch, and a function mapping outputs to named terms."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if backbone == "mlp":
        trunk = SharedMLP()
        x = torch.randn(batch_size, 64, generator=generator)
    elif backbone == "multilenet":
        trunk = MultiLeNet(in_channels=1, image_size=28)
        x = torch.randn(batch_size, 1, 28, 28, generator=generator)
    else:
        raise ValueError(f"unknown backbone {backbone!r}; use mlp or multilenet")
    names = task_names(k)
    heads = {
        name: nn.Linear(trunk.out_features, NUM_CLASSES if is_classification(i) else 1) for i, name in enumerate(names)
    }
    model = MultiTaskModel(trunk, heads).to(device)
    targets = {}
    for i, name in enumerate(names):
        if is_classification(i):
            targets[name] = torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator).to(device)
        else:
            targets[name] = torch.randn(batch_size, 1, generator=generator).to(device)

    def terms(outputs):
        return {
            name: F.cross_entropy(outputs[name], targets[name]) if is_classification(i) else F.mse_loss(outputs[name], targets[name])
            for i, name in enumerate(names)
        }

    return model, x.to(device), terms


def make_weighting(name: str, names: list[str], device: torch.device):
    args = {"weights": {n: 1.0 for n in names}} if name == "static" else {}
    weighting = build(WEIGHTINGS, "weighting", name, args).to(device)
    weighting.ensure_terms(names, device=device)
    return weighting


class Runner:
    """One weighting on its own copy of the model, stepping exactly like the engine."""

    def __init__(self, name, base_model, x, terms, names, device):
        self.name = name
        self.model = copy.deepcopy(base_model)
        self.x = x
        self.terms = terms
        self.weighting = make_weighting(name, names, device)
        params = [*self.model.parameters(), *self.weighting.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=1e-3)
        self.shared = list(self.model.shared_parameters())
        self.task = list(self.model.task_specific_parameters())
        self.kind = "loss" if isinstance(self.weighting, LossWeighting) else "gradient"
        self.times: list[float] = []
        self.error: str | None = None

    def step(self) -> None:
        outputs, features = self.model(self.x, return_features=True)
        terms = self.terms(outputs)
        self.optimizer.zero_grad(set_to_none=True)
        self.weighting.backward(
            terms, shared_parameters=self.shared, task_parameters=self.task, representation=features
        )
        self.optimizer.step()
        self.weighting.update(terms)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(k, weightings, backbone, batch_size, repeats, steps, warmup, device) -> dict[str, dict]:
    """``{weighting: {"median": seconds per step, "kind": ..., "error": ...}}`` for K tasks."""
    base_model, x, terms = make_problem(k, backbone, batch_size, device)
    names = task_names(k)
    runners = []
    for name in weightings:
        try:
            runners.append(Runner(name, base_model, x, terms, names, device))
        except Exception as error:  # noqa: BLE001 - e.g. a weighting that needs config arguments
            failed = Runner.__new__(Runner)
            failed.name, failed.kind, failed.times = name, "?", []
            failed.error = f"{type(error).__name__}: {error}"
            runners.append(failed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a solver's convergence warning on random data
        for runner in runners:
            if runner.error:
                continue
            try:
                for _ in range(warmup):
                    runner.step()
            except Exception as error:  # noqa: BLE001 - reported in the table, the others still run
                runner.error = f"{type(error).__name__}: {error}"
        order = random.Random(k)
        for _ in range(repeats):
            for runner in order.sample(runners, len(runners)):
                if runner.error:
                    continue
                try:
                    runner.step()  # untimed: re-warm caches after the previous weighting
                    _sync(device)
                    gc.collect()
                    gc.disable()
                    try:
                        start = time.perf_counter()
                        for _ in range(steps):
                            runner.step()
                        _sync(device)
                        runner.times.append((time.perf_counter() - start) / steps)
                    finally:
                        gc.enable()
                except Exception as error:  # noqa: BLE001
                    runner.error = f"{type(error).__name__}: {error}"
    return {
        r.name: {"median": statistics.median(r.times) if r.times and not r.error else None, "kind": r.kind, "error": r.error}
        for r in runners
    }


def table(results: dict[int, dict[str, dict]], weightings: list[str]) -> str:
    ks = sorted(results)
    lines = [
        "| weighting | kind | " + " | ".join(f"K={k}" for k in ks) + " |",
        "|---|---|" + "---:|" * len(ks),
    ]
    for name in weightings:
        kind = next(results[k][name]["kind"] for k in ks)
        cells = []
        for k in ks:
            row, equal = results[k][name], results[k]["equal"]["median"]
            if row["error"]:
                cells.append("error")
            elif row["median"] is None or not equal:
                cells.append("n/a")
            else:
                cells.append(f"{row['median'] / equal:.2f}×")
        lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    absolute = ", ".join(
        f"K={k}: {1000 * results[k]['equal']['median']:.2f} ms" if results[k]["equal"]["median"] else f"K={k}: n/a"
        for k in ks
    )
    lines += ["", f"Equal weighting, median time per step: {absolute}."]
    errors = [(k, n, results[k][n]["error"]) for k in ks for n in weightings if results[k][n]["error"]]
    lines += [f"- error for {n} at K={k}: {e}" for k, n, e in errors]
    return "\n".join(lines) + "\n"


def cpu_model() -> str | None:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def header(command: str, device: torch.device, args) -> str:
    info = hardware(device)
    if cpu_model():
        info["cpu_model"] = cpu_model()
    hw = ", ".join(f"{key} {value}" for key, value in info.items())
    return (
        "# Per-step cost of each weighting relative to equal weighting\n\n"
        f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
        f"- command: `{command}`\n"
        f"- hardware: {hw}\n"
        f"- torch: {torch.__version__}\n"
        f"- setup: backbone {args.backbone}, batch {args.batch_size}, K linear heads (even tasks 10-class "
        f"cross-entropy, odd tasks scalar MSE), Adam; {args.warmup} warm-up steps, then {args.repeats} interleaved "
        f"rounds (shuffled order) of 1 untimed + {args.steps} timed steps per weighting; "
        f"cell = median s/step ÷ equal weighting's\n\n"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 10, 40], help="numbers of tasks K")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (the median is over them)")
    parser.add_argument("--steps", type=int, default=5, help="steps per weighting per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per weighting first")
    parser.add_argument("--backbone", choices=["mlp", "multilenet"], default="mlp")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="measure only these weightings (equal is always added)")
    parser.add_argument("--output", help="also write the table with its header to this file (atomically)")
    args = parser.parse_args(argv)
    raw = sys.argv[1:] if argv is None else list(argv)
    command = "python -m benchmarks.speed.weighting_cost" + (" " + shlex.join(raw) if raw else "")
    if min(args.tasks) < 1 or args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--tasks, --repeats and --steps must be positive and --warmup non-negative")
    if args.threads:
        torch.set_num_threads(args.threads)
    weightings = list(WEIGHTINGS)
    if args.only:
        unknown = sorted(set(args.only) - set(WEIGHTINGS))
        if unknown:
            parser.error(f"unknown weighting(s) {', '.join(unknown)}; available: {', '.join(sorted(WEIGHTINGS))}")
        weightings = ["equal", *[n for n in weightings if n in args.only and n != "equal"]]
    device = select_device(args.device)
    results = {}
    for k in args.tasks:
        print(f"K={k}: timing {len(weightings)} weightings ...", file=sys.stderr, flush=True)
        results[k] = measure(k, weightings, args.backbone, args.batch_size, args.repeats, args.steps, args.warmup, device)
    text = table(results, weightings)
    print(text, end="")
    if args.output:
        atomic_write_bytes(args.output, (header(command, device, args) + text).encode())
        print(f"written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
