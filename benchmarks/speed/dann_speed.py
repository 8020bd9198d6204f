"""Training-step speed at equal work: this codebase vs pytorch-adapt (and, for DANN, a bare loop).

Every contestant trains the same network (the DANN paper's MNIST-M feature
extractor, a linear label head, and each method's own extra networks: DANN's and
CDAN's 1024-1024 discriminator with BN, CDAN's randomized multilinear map, MCD's
second classifier) on the same batches (64 source + 64 target, 28×28 RGB, drawn from
the device-resident streams), with SGD and momentum, on the same device, in one
process.  ``mtlda`` is the full engine step (:meth:`benchmarks.engine.Trainer._weighted_step`,
or ``_method_step`` for MCD's three-step update: batch, on-device normalisation,
forward, named loss terms, weighting backward, NaN guard, optimiser step(s)).
``pytorch-adapt`` is its adapter driving a second trainer's identical modules
(:class:`benchmarks.pytorch_adapt_steps.ReferenceStep`: ``DANN``; ``DANN`` with
CDAN's conditioning hooks; ``Classifier`` + ``MCCHook``; ``MCD``), optimising the
same objective.  For DANN a hand-written loop (``bare loop``) is timed as well.

Each method is measured under several precision settings (``--settings``):
``fp32``; ``channels_last`` (``train.channels_last=true``: the weights, and so the
convolutions, in NHWC; pytorch-adapt gets the same modules); ``bf16``
(``channels_last`` plus ``train.amp=bf16``: bfloat16 autocast, the same context
around pytorch-adapt's step), measured only where the engine enables it on this
device (native bf16), otherwise reported as unavailable.  Timing alternates between
the contestants of a (method, setting) in rounds (``--rounds`` × ``--steps`` steps
each, after warm-up) and reports the median ms/step and the ratio
pytorch-adapt / mtlda, all methods side by side in one run.

pytorch-adapt is installed by ``make install`` (extra ``reference``); without it its
columns say so.

    python -m benchmarks.speed.dann_speed --data-root ../shared/data [--methods dann cdan mcc mcd]
        [--settings fp32 channels_last bf16] [--rounds 5] [--steps 20] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from adapt.discriminator import DomainDiscriminator
from adapt.grl import reverse_gradient
from adapt.schedules import dann_ramp
from mtl.backbones import DANNDigitNet

from ..config import load_experiment
from ..datasets.base import ImageSplit
from ..experiment import build_trainer
from ..pytorch_adapt_steps import ReferenceStep, import_error
from .options import add_timing_options, apply_threads

CONFIG = "configs/experiments/digits/mnist_to_mnistm.yaml"
BATCH = 64


class BareDANN:
    """The loop a careful user would write by hand, with no framework."""

    def __init__(self, source: ImageSplit, target: ImageSplit, device, lr: float, hidden):
        torch.manual_seed(0)
        self.backbone = DANNDigitNet(in_channels=3, image_size=28).to(device)
        self.head = nn.Linear(self.backbone.out_features, 10).to(device)
        self.disc = DomainDiscriminator(self.backbone.out_features, hidden).to(device)
        params = [*self.backbone.parameters(), *self.head.parameters(), *self.disc.parameters()]
        self.opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
        self.xs, self.ys = source.images.to(device), source.labels["digit"].to(device)
        self.xt = target.images.to(device)
        self.device = device
        self.step_index = 0

    def step(self):
        gen = torch.Generator().manual_seed(self.step_index)
        self.step_index += 1
        i = torch.randint(len(self.xs), (BATCH,), generator=gen).to(self.device)
        j = torch.randint(len(self.xt), (BATCH,), generator=gen).to(self.device)
        xs = self.xs[i].float().div(255).expand(-1, 3, -1, -1).sub(0.5).div(0.5)
        xt = self.xt[j].float().div(255).sub(0.5).div(0.5)
        features = self.backbone(torch.cat([xs, xt]))
        cls = F.cross_entropy(self.head(features[:BATCH]), self.ys[i])
        logits = self.disc(reverse_gradient(features, dann_ramp(0.5)))
        domain = F.binary_cross_entropy_with_logits(logits, torch.cat([torch.ones(BATCH), torch.zeros(BATCH)]).to(self.device))
        self.opt.zero_grad(set_to_none=True)
        (cls + domain).backward()
        self.opt.step()


METHODS = ("dann", "cdan", "mcc", "mcd")
#: precision settings: name → config overrides
SETTINGS = {
    "fp32": [],
    "channels_last": ["train.channels_last=true"],
    "bf16": ["train.channels_last=true", "train.amp=bf16"],
}


def _config(method: str, setting: str, data_root: str | None, device: str, config: str = CONFIG, extra=()):
    overrides = [f"method.name={method}", "train.progress_bar=false", f"train.device={device}", *extra]
    if data_root:
        overrides.append(f"data.root={data_root}")
    return load_experiment(config, [*overrides, *SETTINGS[setting]])


def contestants(method: str, setting: str, data_root: str | None, device: str, run_dir: str, config: str = CONFIG, extra=()):
    """``(step functions, device, None)`` of one (method, setting), or ``({}, None, reason)`` when unavailable here."""
    try:
        cfg = _config(method, setting, data_root, device, config, extra)
        ours = build_trainer(cfg, f"{run_dir}/{method}-{setting}-ours")
    except Exception as error:  # noqa: BLE001 - e.g. a train.amp value this engine does not know yet
        return {}, None, f"{type(error).__name__}: {error}"
    if setting == "bf16" and not getattr(ours, "amp", False):
        return {}, None, "bf16 autocast is not enabled by the engine on this device"
    step_of = ours._method_step if ours.problem.owns_update else ours._weighted_step
    ours.problem.train()
    steps = {"mtlda": lambda: step_of(0.5)}
    if method == "dann" and setting == "fp32":
        source, target = ours.problem.source_train, ours.problem.target_train
        hidden = tuple(cfg.method.args.get("hidden_sizes", (1024, 1024)))
        steps["bare loop"] = BareDANN(source, target, ours.device, cfg.optim.lr, hidden).step
    if import_error() is None:
        theirs = build_trainer(cfg, f"{run_dir}/{method}-{setting}-theirs")
        reference = ReferenceStep(theirs, method)
        theirs.problem.train()
        steps["pytorch-adapt"] = lambda: reference.step(0.5)
    return steps, ours.device, None


def time_steps(steps: dict, rounds: int, count: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per step of each contestant, one value per round, rounds alternating in order."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for step in steps.values():  # warm-up
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(rounds):
        order = list(steps.items())
        if r % 2:
            order.reverse()
        for name, step in order:
            sync()
            start = time.perf_counter()
            for _ in range(count):
                step()
            sync()
            times[name].append((time.perf_counter() - start) / count)
    return times


def run(data_root: str | None, rounds: int, steps: int, device: str, methods=METHODS, settings=tuple(SETTINGS), config: str = CONFIG, extra=()) -> dict:
    """``{(method, setting): {contestant: [seconds per step per round]} or reason-string}``.

    ``config`` and ``extra`` overrides exist for the tests (a small network on the embedded data).
    """
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="mtlda-speed-") as run_dir:
        for method in methods:
            for setting in settings:
                group, device_obj, reason = contestants(method, setting, data_root, device, run_dir, config, extra)
                results[(method, setting)] = reason if reason is not None else time_steps(group, rounds, steps, device_obj)
    return results


def format_table(results: dict) -> str:
    """Markdown: one row per (method, setting), ms/step side by side and the ratio pytorch-adapt / mtlda."""
    lines = [
        "| method | setting | mtlda ms/step | pytorch-adapt ms/step | pytorch-adapt / mtlda | bare loop ms/step |",
        "|---|---|---:|---:|---:|---:|",
    ]
    fp32 = {}
    for (method, setting), times in results.items():
        if isinstance(times, str):
            lines.append(f"| {method} | {setting} | not measured: {times} | | | |")
            continue
        ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
        if setting == "fp32":
            fp32[method] = ms["mtlda"]
        theirs = ms.get("pytorch-adapt")
        ratio = f"{theirs / ms['mtlda']:.2f}" if theirs else ""
        bare = f"{ms['bare loop']:.1f}" if "bare loop" in ms else ""
        lines.append(
            f"| {method} | {setting} | {ms['mtlda']:.1f} | {f'{theirs:.1f}' if theirs else 'not installed'} | {ratio} | {bare} |"
        )
    speedups = []
    for (method, setting), times in results.items():
        if not isinstance(times, str) and setting != "fp32" and method in fp32:
            speedups.append(f"{method} {setting}: {fp32[method] / (1000 * statistics.median(times['mtlda'])):.2f}×")
    text = "\n".join(lines) + "\n"
    if speedups:
        text += "\nmtlda speed-up over its own fp32 step: " + ", ".join(speedups) + "\n"
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="folder with MNIST/ and mnist_m.tar.gz")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    add_timing_options(parser, steps=20)
    args = parser.parse_args(argv)
    apply_threads(args)
    results = run(args.data_root, args.rounds, args.steps, args.device, args.methods, args.settings)
    print(
        f"Training step at equal work, MNIST→MNIST-M network, batch {BATCH}+{BATCH}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds × {args.steps} steps, median"
    )
    missing = import_error()
    if missing:
        print(f"pytorch-adapt: {missing}")
    print(format_table(results), end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
