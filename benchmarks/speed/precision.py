"""Training-step speed of the backbones under each precision setting, side by side in one run.

For each backbone (the digits networks ``lenet``, ``dann_digits`` and ``multilenet``
and one torchvision network, ``resnet18`` on small images) a supervised step —
forward through the backbone and a linear head, cross-entropy, backward, SGD
with momentum — is timed under each setting:

* ``fp32``: float32, NCHW;
* ``amp``: the autocast dtype ``train.amp=true`` picks on this device (bf16
  where native; loss-scaled fp16 on a CUDA GPU without bf16), NCHW;
* ``channels_last``: float32, weights and inputs in NHWC;
* ``amp+channels_last``: both;
* ``compiled``: ``torch.compile`` of the float32 NCHW model;
* ``compiled+amp+channels_last``: all three.

Every setting trains its own copy of the same initial network on the same
batch (fixed random images on the device).  Timing alternates between the
settings of a backbone in rounds (``--rounds`` × ``--steps`` steps each, after
warm-up, which includes compilation) and reports the median ms/step, images/s
and the speed-up over ``fp32`` (fp32 ms / setting ms) — ratios measured in one
process, so they compare like with like on whatever machine runs it.  A setting
the device cannot run (no native bf16, compilation failing) is reported with
the reason.  This is the command behind the README's speed table:

    python -m benchmarks.speed.precision [--backbones lenet dann_digits multilenet resnet18]
        [--settings fp32 amp ...] [--rounds 5] [--steps 10] [--device auto] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from datetime import date

import torch
import torch.nn.functional as F
from torch import nn

from mtl.pretrained import pretrained_backbone

from ..devices import select_device
from ..precision import resolve_amp
from .options import add_timing_options, apply_threads

#: backbone → (channels, image size, batch size, constructor arguments)
BACKBONES = {
    "lenet": (1, 28, 256, {"in_channels": 1, "image_size": 28}),
    "dann_digits": (3, 28, 128, {"in_channels": 3, "image_size": 28}),
    "multilenet": (1, 36, 256, {"in_channels": 1, "image_size": 36}),
    "resnet18": (3, 64, 64, {}),
}
#: setting → (autocast, channels_last, compiled)
SETTINGS = {
    "fp32": (False, False, False),
    "amp": (True, False, False),
    "channels_last": (False, True, False),
    "amp+channels_last": (True, True, False),
    "compiled": (False, False, True),
    "compiled+amp+channels_last": (True, True, True),
}
CLASSES = 10


class Contestant:
    """One setting's copy of the network, its optimiser and its batch."""

    def __init__(self, model: nn.Module, batch: torch.Tensor, labels: torch.Tensor, setting: str, device: torch.device):
        amp, channels_last, compiled = SETTINGS[setting]
        self.precision = resolve_amp(True if amp else False, device)
        if amp and self.precision.dtype is None:
            raise RuntimeError(f"no mixed precision on this device ({self.precision.reason})")
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = copy.deepcopy(model).to(device=device, memory_format=memory_format)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.forward = torch.compile(self.model) if compiled else self.model
        self.batch = batch.contiguous(memory_format=memory_format)
        self.labels = labels
        self.scaler = torch.amp.GradScaler(device.type) if self.precision.loss_scaling else None

    def step(self) -> None:
        with self.precision.autocast():
            loss = F.cross_entropy(self.forward(self.batch), self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()


def build_model(name: str) -> nn.Module:
    channels, _, _, kwargs = BACKBONES[name]
    torch.manual_seed(0)
    backbone = pretrained_backbone(name, **kwargs)
    return nn.Sequential(backbone, nn.Linear(backbone.out_features, CLASSES))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_backbone(name: str, settings, rounds: int, steps: int, warmup: int, device: torch.device) -> dict:
    """``{setting: [seconds per step, one per round] or the reason it could not run}``."""
    channels, size, batch_size, _ = BACKBONES[name]
    model = build_model(name)
    generator = torch.Generator().manual_seed(1)
    batch = torch.randn(batch_size, channels, size, size, generator=generator).to(device)
    labels = torch.randint(0, CLASSES, (batch_size,), generator=generator).to(device)
    results: dict = {}
    contestants = {}
    for setting in settings:
        try:
            contestant = Contestant(model, batch, labels, setting, device)
            for _ in range(warmup):  # includes compilation
                contestant.step()
            _sync(device)
        except Exception as error:  # noqa: BLE001 - any failure is reported in the table, not fatal
            results[setting] = f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"
            continue
        contestants[setting] = contestant
        results[setting] = []
    for r in range(rounds):
        order = list(contestants.items())
        if r % 2:
            order.reverse()  # alternate, so a slow drift of the machine does not favour one setting
        for setting, contestant in order:
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                contestant.step()
            _sync(device)
            results[setting].append((time.perf_counter() - start) / steps)
    return results


def run(backbones=tuple(BACKBONES), settings=tuple(SETTINGS), rounds: int = 5, steps: int = 10, warmup: int = 3,
        device: str | torch.device = "auto") -> dict:
    """``{backbone: {setting: [seconds per step per round] or reason}}`` for this device."""
    device = device if isinstance(device, torch.device) else select_device(device)
    return {name: time_backbone(name, settings, rounds, steps, warmup, device) for name in backbones}


def machine_line(device: torch.device) -> str:
    amp = resolve_amp(True, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU"
    return (
        f"{where} ({device}), {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, amp = {amp.name} ({amp.reason}), {date.today().isoformat()}"
    )


def format_table(results: dict, device: torch.device) -> str:
    """Markdown: one row per (backbone, setting) with ms/step, images/s and the speed-up over fp32."""
    lines = [
        f"Machine: {machine_line(device)}",
        "",
        "| backbone | input (batch) | setting | median ms/step | images/s | speed-up over fp32 |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, by_setting in results.items():
        channels, size, batch_size, _ = BACKBONES[name]
        fp32 = by_setting.get("fp32")
        fp32_ms = 1000 * statistics.median(fp32) if isinstance(fp32, list) and fp32 else None
        for setting, times in by_setting.items():
            shape = f"{channels}×{size}×{size} ({batch_size})"
            if isinstance(times, str):
                lines.append(f"| {name} | {shape} | {setting} | not measured: {times} | | |")
                continue
            ms = 1000 * statistics.median(times)
            ratio = f"{fp32_ms / ms:.2f}×" if fp32_ms else ""
            lines.append(f"| {name} | {shape} | {setting} | {ms:.1f} | {batch_size / ms * 1000:.0f} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    add_timing_options(parser, steps=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    apply_threads(args)
    device = select_device(args.device)
    results = run(args.backbones, args.settings, args.rounds, args.steps, args.warmup, device)
    print(format_table(results, device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
