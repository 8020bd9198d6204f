"""Distributed data-parallel training of one run, launched with ``torchrun``.

::

    torchrun --nproc_per_node=2 -m benchmarks run configs/experiments/digits_da.yaml method.name=dann

Every rank builds the same model from the same seed; rank 0's parameters and
buffers are broadcast once so the replicas start identical.  Each rank then
draws its own batches (the batchers' sampling seeds are offset by the rank; the
stream position stays common to all ranks, so rank 0's checkpoint resumes
every rank exactly) and, after the weighting's backward, the gradients are
averaged across ranks before the optimiser step: one step on W local batches
of size B is one step on a global batch of W·B, as with
``torch.nn.parallel.DistributedDataParallel``.  Only rank 0 writes
checkpoints, TensorBoard events and the record; every epoch the replicas are
checked to be identical (a divergence is an error, never a silent result).

What averages correctly (the support matrix):

* loss-level weightings whose weights do not depend on the batch
  (``batch_independent_weights``): ``equal``, ``static``, ``uncertainty``
  (its log-variances are parameters, their gradients average like any
  other);
* gradient-level aggregators (``GradientAggregation``: MGDA, PCGrad, CAGrad,
  …): these are nonlinear in the per-term gradients, so averaging their
  per-rank outputs would be wrong.  Instead the per-term Jacobian of the
  global batch is formed first (all-reduced mean for ``target='parameters'``;
  gathered for ``target='representation'``, whose columns belong to samples),
  every rank aggregates the same matrix, and rank 0's direction is broadcast.
  This equals the single-process aggregation of the full batch's Jacobian;
* every DA method whose loss terms go through the weighting.

Refused, with an error saying why: weightings whose weights are computed from
this rank's loss values or gradient norms (``dwa``, ``rlw``, ``gradnorm``,
``famo``, ``gls``, ``db_mtl``: the ranks would compute different weights and
drift apart), and methods that own their update (``mcd``: three optimiser
steps inside the method, with no place to average between them).

BatchNorm running statistics are rank 0's (broadcast before every
evaluation), as with DDP's default ``broadcast_buffers=True``.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from mtl.weighting import GradientAggregation

from .batching import DeviceBatcher
from .datasets.image_folder import LoaderBatcher
from .devices import select_device

#: added to a batcher's sampling seed per rank (far from the +7919 the DA target stream uses)
RANK_SEED_STRIDE = 100_003


class DistributedUnsupportedError(RuntimeError):
    """A configuration that cannot be trained data-parallel without changing what it computes."""


@dataclass
class Replicas:
    """This process's place in the data-parallel group, and the collectives the engine calls."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes checkpoints, TensorBoard events, records and tables."""
        return self.rank == 0

    def describe(self) -> dict:
        """What goes into the record under ``distributed``."""
        return {"world_size": self.world_size, "backend": self.backend, "global_batch_factor": self.world_size}

    # ------------------------------------------------------------------ collectives used by the engine
    def barrier(self) -> None:
        dist.barrier()

    def broadcast_module_state(self, modules) -> None:
        """Copy rank 0's parameters and buffers into every rank (in place)."""
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def synchronise(self, values: Tensor, parameters) -> Tensor:
        """Average this step's gradients and loss values over the ranks; return the averaged values.

        ``parameters``: every parameter the optimiser updates.  Parameters with
        no gradient are skipped; all ranks must agree on which those are (they
        do for one model and one code path; a disagreement is an error rather
        than a silent misalignment of the flattened buffer).
        """
        present = [p for p in parameters if p.grad is not None]
        header = torch.cat([values.detach().float().reshape(-1), torch.tensor([float(len(present))], device=values.device)])
        dist.all_reduce(header)
        if int(header[-1].item()) != self.world_size * len(present):
            raise RuntimeError(
                f"rank {self.rank}: the ranks produced gradients for different sets of parameters "
                f"({len(present)} here, {header[-1].item() / self.world_size:.1f} on average); data-parallel averaging "
                "needs the same computation graph on every rank"
            )
        if present:
            flat = torch.cat([p.grad.reshape(-1) for p in present])
            dist.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for p in present:
                n = p.grad.numel()
                p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
                offset += n
        return header[:-1] / self.world_size

    def before_evaluation(self, modules) -> None:
        """Check the replicas still agree, then give every rank rank 0's buffers (BatchNorm statistics)."""
        self.check_identical(modules)
        for module in modules:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def check_identical(self, modules) -> None:
        """Raise if the replicas' parameters differ (compares a min/max of a per-rank checksum)."""
        total = torch.zeros(1, dtype=torch.float64, device=self.device)
        weighted = torch.zeros(1, dtype=torch.float64, device=self.device)
        for module in modules:
            for i, p in enumerate(module.parameters()):
                data = p.detach().double().reshape(-1)
                total += data.sum()
                weighted += (data * (1.0 + (torch.arange(data.numel(), device=data.device) % 7) + i)).sum()
        checksum = torch.cat([total, weighted])
        low, high = checksum.clone(), checksum.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise RuntimeError(
                f"rank {self.rank}: the data-parallel replicas diverged (parameter checksums {low.tolist()} vs "
                f"{high.tolist()}); a weighting or method computed something rank-specific"
            )

    # ------------------------------------------------------------------ gradient aggregation on the global batch
    def global_jacobian(self, jacobian: Tensor, losses: Tensor, target: str) -> tuple[Tensor, Tensor]:
        """The global batch's per-term Jacobian (K×d) and loss values, from this rank's.

        ``target='parameters'``: every rank's loss is a mean over an equal
        share of the batch, so the global Jacobian is the mean of the ranks'.
        ``target='representation'``: the columns are this rank's samples; the
        global Jacobian puts the ranks' blocks side by side, each scaled by 1/W
        (the global loss averages W local means).
        """
        losses = losses.detach().clone()
        dist.all_reduce(losses)
        losses /= self.world_size
        if target == "parameters":
            jacobian = jacobian.contiguous().clone()
            dist.all_reduce(jacobian)
            return jacobian / self.world_size, losses
        blocks = [torch.empty_like(jacobian) for _ in range(self.world_size)]
        dist.all_gather(blocks, jacobian.contiguous())
        return torch.cat(blocks, dim=1) / self.world_size, losses

    def local_direction(self, direction: Tensor, target: str) -> Tensor:
        """This rank's part of the aggregated direction, such that averaging over ranks gives the global one.

        Rank 0's direction is broadcast first, so aggregators that draw random
        numbers (GradDrop) or round differently still agree.
        """
        direction = direction.contiguous().clone()
        dist.broadcast(direction, src=0)
        if target == "parameters":
            return direction  # the same on every rank; the gradient average leaves it unchanged
        size = direction.numel() // self.world_size
        # the engine averages gradients over ranks; this rank's samples carry 1/W of the global direction
        return direction[self.rank * size : (self.rank + 1) * size] * self.world_size


_ACTIVE: Replicas | None = None


def launched_by_torchrun() -> bool:
    """True when ``torchrun`` (or another launcher with its environment) started this process."""
    return "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def active() -> Replicas | None:
    """The initialised data-parallel group of this process, or None for ordinary single-process runs."""
    return _ACTIVE


def world_size() -> int:
    """How many replicas train each run in this process: the active group's size, or 1."""
    return 1 if _ACTIVE is None else _ACTIVE.world_size


def init_from_env(device_request: str = "auto", timeout_minutes: float = 30.0) -> Replicas:
    """Join the process group described by torchrun's environment (gloo on CPU, nccl on CUDA).

    On CUDA each rank uses ``cuda:LOCAL_RANK``.  Returns the :class:`Replicas`
    that the engine picks up for every trainer built afterwards.
    """
    global _ACTIVE

    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"distributed launch without {', '.join(missing)} in the environment; start it with torchrun")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = select_device(device_request)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise DistributedUnsupportedError(f"data-parallel training runs on CPU (gloo) or CUDA (nccl), not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    _ACTIVE = Replicas(rank, world_size, local_rank, backend, device)
    return _ACTIVE


def shutdown() -> None:
    """Leave the process group (idempotent)."""
    global _ACTIVE
    _ACTIVE = None
    if dist.is_initialized():
        dist.destroy_process_group()


def check_supported(weighting, problem) -> None:
    """Raise :class:`DistributedUnsupportedError` for what gradient averaging would compute wrongly."""
    if getattr(problem, "owns_update", False):
        raise DistributedUnsupportedError(
            f"{type(problem.method).__name__ if hasattr(problem, 'method') else 'this method'} performs its own "
            "multi-step update (several optimiser steps per batch inside the method), so there is no single gradient "
            "to average across ranks; run it without torchrun (one process), or use --workers to run seeds in parallel"
        )
    # batch-independent weights: averaging the gradients is exact; a gradient aggregator's Jacobian is all-reduced
    if isinstance(weighting, GradientAggregation) or weighting.batch_independent_weights:
        return
    raise DistributedUnsupportedError(
        f"weighting {type(weighting).__name__} computes its term weights from this rank's loss values or gradient "
        "norms, so under data parallelism each rank would weight differently and averaging their gradients is not "
        "the full-batch update; use equal, static, uncertainty or a gradient aggregator (its per-term Jacobian is "
        "all-reduced before aggregating), or run without torchrun"
    )


def _batchers(problem):
    for value in vars(problem).values():
        if isinstance(value, (DeviceBatcher, LoaderBatcher)):
            yield value


def attach(trainer) -> Replicas | None:
    """Prepare a freshly built trainer for data parallelism, or return None when no group is active.

    Checks the support matrix, offsets the batchers' sampling seeds by the
    rank, broadcasts rank 0's weights, hooks gradient aggregators to the
    global Jacobian and silences the progress bar on ranks other than 0.
    """
    replicas = _ACTIVE
    if replicas is None:
        return None
    check_supported(trainer.weighting, trainer.problem)
    for batcher in _batchers(trainer.problem):
        batcher.seed = batcher.seed + RANK_SEED_STRIDE * replicas.rank
        if hasattr(batcher, "load_state_dict"):
            batcher.load_state_dict(batcher.state_dict())  # redraw the current order with the rank's seed
    replicas.broadcast_module_state([trainer.problem, trainer.weighting])
    if isinstance(trainer.weighting, GradientAggregation):
        trainer.weighting.replicas = replicas
    if not replicas.is_main:
        trainer.progress_bar = False
    return replicas


class NullWriter:
    """Stands in for ``SummaryWriter`` on ranks other than 0: accepts every call, writes nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None
