"""One DANN training step: this codebase vs a bare hand-written PyTorch loop (vs pytorch-adapt).

All contestants train the same network (the DANN paper's MNIST-M feature
extractor, a linear label head, the same discriminator) with the same batch
(64 source + 64 target, 28×28 RGB), SGD with momentum, on the same device, in
one process.  Timing alternates between contestants in rounds (``--rounds``
× ``--steps`` steps each, after warm-up) and reports the median time per step
and its ratio to the bare loop.  ``ours`` is the full engine step
(:meth:`benchmarks.engine.Trainer._weighted_step`: batch from the
device-resident stream, on-device normalisation, forward over both domains,
named loss terms, weighting backward, NaN guard, optimiser step).

pytorch-adapt (optional, ``pip install .[reference]``) is timed with its
``DANN`` adapter when importable; otherwise its column says so.

    python -m benchmarks.speed.dann_speed --data-root ../shared/data [--rounds 5] [--steps 20]
"""
from __future__ import annotations

import argparse
import statistics
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


def _pytorch_adapt_step(source, target, device, lr, hidden):
    """A step function using pytorch-adapt's DANN adapter, or None when it is not installed."""
    try:
        from pytorch_adapt.adapters import DANN as PADANN
        from pytorch_adapt.containers import Models, Optimizers
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    torch.manual_seed(0)
    backbone = DANNDigitNet(in_channels=3, image_size=28).to(device)
    head = nn.Linear(backbone.out_features, 10).to(device)
    disc = DomainDiscriminator(backbone.out_features, hidden).to(device)
    models = Models({"G": backbone, "C": head, "D": disc})
    adapter = PADANN(models=models, optimizers=Optimizers((torch.optim.SGD, {"lr": lr, "momentum": 0.9})))
    xs, ys = source.images.to(device), source.labels["digit"].to(device)
    xt = target.images.to(device)
    counter = {"i": 0}

    def step():
        gen = torch.Generator().manual_seed(counter["i"])
        counter["i"] += 1
        i = torch.randint(len(xs), (BATCH,), generator=gen).to(device)
        j = torch.randint(len(xt), (BATCH,), generator=gen).to(device)
        batch = {
            "src_imgs": xs[i].float().div(255).expand(-1, 3, -1, -1).sub(0.5).div(0.5),
            "src_labels": ys[i],
            "target_imgs": xt[j].float().div(255).sub(0.5).div(0.5),
            "src_domain": torch.zeros(BATCH, device=device),
            "target_domain": torch.ones(BATCH, device=device),
        }
        adapter.training_step(batch)

    return step


def run(data_root: str, rounds: int, steps: int, device: str) -> dict[str, list[float]]:
    overrides = ["method.name=dann", "train.progress_bar=false", f"train.device={device}", f"data.root={data_root}"]
    cfg = load_experiment(CONFIG, overrides)
    trainer = build_trainer(cfg, "/tmp/mtlda-dann-speed")
    source, target = trainer.problem.source_train, trainer.problem.target_train
    hidden = tuple(cfg.method.args.get("hidden_sizes", (1024, 1024)))
    device_obj = trainer.device
    bare = BareDANN(source, target, device_obj, cfg.optim.lr, hidden)
    contestants = {"bare loop": bare.step, "mtlda": lambda: trainer._weighted_step(0.5)}
    adapt_step = _pytorch_adapt_step(source, target, device_obj, cfg.optim.lr, hidden)
    if adapt_step is not None:
        contestants["pytorch-adapt"] = adapt_step
    trainer.problem.train()

    def sync():
        if device_obj.type == "cuda":
            torch.cuda.synchronize(device_obj)

    for step in contestants.values():  # warm-up
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for r in range(rounds):
        order = list(contestants.items())
        if r % 2:
            order.reverse()
        for name, step in order:
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            times[name].append((time.perf_counter() - start) / steps)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="folder with MNIST/ and mnist_m.tar.gz")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    times = run(args.data_root, args.rounds, args.steps, args.device)
    bare = statistics.median(times["bare loop"])
    print(f"DANN step, MNIST→MNIST-M shapes, batch {BATCH}+{BATCH}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| contestant | median ms/step | ratio to bare loop |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {1000 * median:.1f} | {median / bare:.3f} |")
    if "pytorch-adapt" not in times:
        print("| pytorch-adapt | not installed (pip install .[reference]) | |")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
