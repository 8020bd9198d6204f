"""How long does training wait for data?  MNIST→MNIST-M DANN, device-resident pipeline.

Measures, for one DANN epoch (or ``--steps`` steps) with the real
``mnist_to_mnistm`` config, the time spent producing batches (index the
device-resident uint8 tensors, then normalise and replicate channels on the
device) against the total step time, and prints the fraction.  On CUDA the
clock is synchronised around each phase so asynchronous kernels are counted
where they run.

    python -m benchmarks.speed.data_wait --data-root ../shared/data [--steps 200] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import torch

from ..batching import DeviceBatcher
from ..config import load_experiment
from ..experiment import build_trainer

CONFIG = "configs/experiments/digits/mnist_to_mnistm.yaml"


class PhaseClock:
    def __init__(self, device: torch.device):
        self.device = device
        self.data_seconds = 0.0

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def wrap(self, function):
        def timed(*args, **kwargs):
            self.sync()
            start = time.perf_counter()
            result = function(*args, **kwargs)
            self.sync()
            self.data_seconds += time.perf_counter() - start
            return result

        return timed


def measure(data_root: str, steps: int | None, device: str, run_dir: str) -> dict:
    overrides = [f"data.root={data_root}", "method.name=dann", "train.progress_bar=false", f"train.device={device}"]
    cfg = load_experiment(CONFIG, overrides)
    trainer = build_trainer(cfg, run_dir)
    problem = trainer.problem
    clock = PhaseClock(trainer.device)
    # time every batch fetch and every preprocessing call of the training stream
    for batcher in (problem.source_batches, problem.target_batches):
        batcher.next = clock.wrap(DeviceBatcher.next.__get__(batcher))
    problem.preprocess = clock.wrap(problem.preprocess)
    n_steps = steps or problem.steps_per_epoch()
    problem.train()
    for _ in range(3):  # warm-up, not timed
        trainer._weighted_step(0.0)
    clock.data_seconds = 0.0
    clock.sync()
    start = time.perf_counter()
    for i in range(n_steps):
        trainer._weighted_step(i / n_steps)
    clock.sync()
    total = time.perf_counter() - start
    return {"steps": n_steps, "total_s": total, "data_s": clock.data_seconds, "device": str(trainer.device)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="folder with MNIST/ and mnist_m.tar.gz")
    parser.add_argument("--steps", type=int, help="steps to time (default: one epoch over the source train split)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--run-dir", default="/tmp/mtlda-data-wait")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args.data_root, args.steps, args.device, args.run_dir)
    share = result["data_s"] / result["total_s"]
    print(
        f"MNIST→MNIST-M DANN, {result['steps']} steps on {result['device']} (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads): total {result['total_s']:.2f} s, "
        f"{1000 * result['total_s'] / result['steps']:.1f} ms/step; waiting for data {result['data_s']:.3f} s "
        f"= {100 * share:.2f}% of the epoch"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
