"""The training engine shared by multi-task learning and domain adaptation.

One loop: a :class:`~benchmarks.problems.Problem` yields named loss terms, a
:class:`~mtl.weighting.Weighting` turns them into gradients, the optimiser
steps.  Around it: learning-rate schedule, mixed precision (bf16 or
loss-scaled fp16 autocast, benchmarks/precision.py), TensorBoard scalars, an
atomic checkpoint every epoch with exact resume, checkpoint selection and
early stopping on a validation metric, and a non-finite-loss guard that stops
with a clear message and keeps the last good checkpoint.  On an accelerator
the guard decides on the device and reports at the next logging step
(benchmarks/step_guard.py), so the loop reads nothing back from the device
between logging steps.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from mtl.diagnostics import gradient_agreement
from mtl.weighting import Weighting
from mtl.weighting.gradient import term_jacobian

from . import distributed
from .devices import rng_state, set_rng_state
from .precision import LossScaler, resolve_amp
from .problems.base import Problem
from .step_guard import DeferredFiniteGuard
from .records import CheckpointReadError, RunFileError, atomic_torch_save, load_weights_only

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the last good checkpoint is left in place."""


def _cpu_copy(state: dict) -> dict:
    """A detached CPU copy of a state dict (the selected epoch's weights, kept while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def lr_factor(schedule: str, progress: float, step: int = 0, gamma: float = 0.001, decay: float = 0.75,
              milestones: tuple[int, ...] = (), step_factor: float = 0.1, steps_per_epoch: int = 1) -> float:
    """Multiplier of the base learning rate at training progress ``p`` ∈ [0, 1] (absolute step ``step``).

    ``inverse`` is ``(1 + gamma·step)^−decay``: it depends on the absolute step, not on the
    run's length, as in Transfer-Learning-Library's ``LambdaLR(lr·(1 + γ·i)^−decay)``.
    ``multistep`` is ``step_factor^k`` with k the number of ``milestones`` (0-based epochs) at or
    before the current epoch ``step // steps_per_epoch``: ``MultiStepLR`` stepped once per epoch.
    """
    if schedule == "multistep":
        epoch = step // steps_per_epoch
        return step_factor ** sum(1 for m in milestones if m <= epoch)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "dann":  # Ganin et al. 2016: μ_p = μ_0 / (1 + α p)^β, α = 10, β = 0.75
        return (1.0 + 10.0 * progress) ** -0.75
    if schedule == "inverse":
        return (1.0 + gamma * step) ** -decay
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


class Trainer:
    """Runs ``epochs × steps_per_epoch`` optimiser steps of ``problem`` under ``weighting``.

    ``run_dir`` receives ``checkpoints/last.pt`` (every epoch), ``checkpoints/best.pt``
    (on improvement of ``selection_metric``) and TensorBoard event files under ``tb/``.

    ``last.pt`` is the only file resuming reads, and it is self-contained: besides
    the training state it holds the weights of the selected (best) epoch, so one
    atomic write commits both and a kill at any moment leaves them consistent.
    ``best.pt`` is an export of those weights for ``mtlda analyze``, written after
    ``last.pt`` and rewritten at the end of a resumed run; the reported test
    metrics never read it.
    ``callbacks`` are called as ``callback(trainer, epoch)`` after each epoch's checkpoint.
    ``sync_free_guard``: check the losses on the device and report at the next logging step
    (:class:`~benchmarks.step_guard.DeferredFiniteGuard`) instead of before every optimiser step;
    default: on any device but the CPU, unless fp16 loss scaling or a method's own update needs the
    per-step host read anyway.
    """

    def __init__(
        self,
        problem: Problem,
        weighting: Weighting,
        optimizer: torch.optim.Optimizer,
        *,
        run_dir: str | Path,
        epochs: int,
        steps_per_epoch: int | None = None,
        lr_schedule: str = "constant",
        lr_gamma: float = 0.001,
        lr_decay: float = 0.75,
        lr_milestones: tuple[int, ...] = (),
        lr_step_factor: float = 0.1,
        selection_metric: str,
        selection_mode: str = "max",
        select: str = "best",
        patience: int | None = None,
        amp: bool | str = False,
        device: torch.device = torch.device("cpu"),
        log_every: int = 20,
        gradient_diagnostics_every: int | None = None,
        test_every_epoch: bool = False,
        progress_bar: bool = True,
        config_hash: str = "",
        callbacks: Sequence[Callable] = (),
        hparams: dict | None = None,
        phase_plan=None,
        sync_free_guard: bool | None = None,
    ):
        if epochs < 1:
            raise ValueError("epochs must be at least 1")
        self.problem = problem
        self.weighting = weighting
        self.optimizer = optimizer
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch or problem.steps_per_epoch()
        self.total_steps = self.epochs * self.steps_per_epoch
        self.lr_schedule = lr_schedule
        self.lr_gamma, self.lr_decay = lr_gamma, lr_decay
        self.lr_milestones, self.lr_step_factor = tuple(lr_milestones), lr_step_factor
        lr_factor(lr_schedule, 0.0)  # validate early
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        #: fine-tuning phases (benchmarks.phases.PhasePlan): trainable blocks and lr multipliers per epoch
        self.phase_plan = phase_plan
        if phase_plan is not None and phase_plan.total_epochs != epochs:
            raise ValueError(f"the phases cover {phase_plan.total_epochs} epochs, not epochs={epochs}")
        self.lr_multipliers = [1.0] * len(optimizer.param_groups)
        self.selection_metric = selection_metric
        if selection_mode not in ("max", "min"):
            raise ValueError("selection_mode must be 'max' or 'min'")
        self.selection_mode = selection_mode
        self.select = select
        self.patience = patience
        self.device = device
        #: autocast dtype and loss scaling (benchmarks/precision.py); amp: false | true | "bf16" | "fp16"
        self.precision = resolve_amp(amp, device, loss_scaling_refused=self._loss_scaling_refused(problem, weighting))
        self.amp = self.precision.dtype is not None
        log.info("precision: %s (%s)", self.precision.name, self.precision.reason)
        self.loss_scaler = LossScaler(device) if self.precision.loss_scaling else None
        if sync_free_guard is None:  # on the CPU a host read waits for nothing
            sync_free_guard = device.type != "cpu" and self.loss_scaler is None and not problem.owns_update
        elif sync_free_guard and (self.loss_scaler is not None or problem.owns_update):
            raise ValueError("the sync-free guard needs neither loss scaling (fp16) nor a method that owns its update")
        #: the device-side non-finite guard (benchmarks/step_guard.py), or None for the immediate check
        self.guard = DeferredFiniteGuard(device, self._raise_deferred_non_finite) if sync_free_guard else None
        self.log_every = max(1, log_every)
        self.gradient_diagnostics_every = gradient_diagnostics_every
        #: evaluate the test split after every epoch, into the history only (learning curves)
        self.test_every_epoch = test_every_epoch
        self._writer: SummaryWriter | None = None
        self.progress_bar = progress_bar
        self.config_hash = config_hash
        self.callbacks = list(callbacks)
        self.hparams = hparams or {}
        self.shared_parameters = problem.shared_parameters()
        self.task_parameters = problem.task_parameters()
        #: the data-parallel group when launched by torchrun (benchmarks/distributed.py), else None
        self.replicas = distributed.attach(self)
        # training state (all of it goes into the checkpoint)
        self.epoch = 0
        self.global_step = 0
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.history: list[dict] = []
        self._epoch_scalars: dict[str, list[float]] = {}  # this epoch's logged scalars: name -> [sum, count]
        self.train_seconds = 0.0
        #: where this run's first epochs were trained, when ``mtlda extend`` continued a shorter run (else None)
        self.extended_from: dict | None = None
        #: the weights (problem state dict, on the CPU) of epoch ``best_epoch``
        self._selected_weights: dict | None = None
        #: the epoch ``best.pt`` is known to hold (None: unknown, e.g. after resuming)
        self._best_file_epoch: int | None = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints and logs (always, unless a non-zero data-parallel rank)."""
        return self.replicas is None or self.replicas.is_main

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "config_hash": self.config_hash,
            "problem": self.problem.state_dict(),
            "weighting": self.weighting.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "batchers": self.problem.batcher_state(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "train_seconds": self.train_seconds,
            **({"extended_from": self.extended_from} if self.extended_from is not None else {}),
            **({"loss_scaler": self.loss_scaler.state_dict()} if self.loss_scaler is not None else {}),
            # None: the selected weights are this checkpoint's own "problem" (this epoch is the best)
            "selected_problem": None if self.best_epoch == self.epoch else self._selected_weights,
        }

    def _load(self, state: dict, path: Path) -> None:
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            version = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise RunFileError(
                f"{path}: checkpoint format {version} is not {CHECKPOINT_VERSION}; delete it to restart the run from scratch"
            )
        if self.config_hash and state.get("config_hash") != self.config_hash:
            raise RunFileError(
                f"{path} was written by a different configuration (hash {state.get('config_hash')} != "
                f"{self.config_hash}); use another run directory or delete it to start over"
            )
        self.problem.load_state_dict(state["problem"])  # strict: a partial load is an error
        self.weighting.load_state_dict(state["weighting"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.problem.load_batcher_state(state["batchers"])
        set_rng_state(state["rng"])
        if self.loss_scaler is not None and state.get("loss_scaler") is not None:
            self.loss_scaler.load_state_dict(state["loss_scaler"])
        for key in ("epoch", "global_step", "best_value", "best_epoch", "bad_epochs", "history", "train_seconds"):
            setattr(self, key, state[key])
        self.extended_from = state.get("extended_from")
        self._selected_weights = self._restore_selected(state)
        self._best_file_epoch = None  # best.pt may be older than last.pt (a kill between the two writes)

    def _restore_selected(self, state: dict) -> dict | None:
        """The selected epoch's weights, from the checkpoint itself (best.pt only for checkpoints written before
        last.pt carried them, and only if it holds that very epoch)."""
        if state["best_epoch"] == state["epoch"]:
            return _cpu_copy(state["problem"])
        if state.get("selected_problem") is not None:
            return _cpu_copy(state["selected_problem"])
        best = self.checkpoint_dir / "best.pt"
        if best.is_file():
            exported = self._read(best)
            if exported.get("epoch") == state["best_epoch"] and exported.get("config_hash") == state.get("config_hash"):
                return _cpu_copy(exported["problem"])
        if self.select != "best":
            log.warning("%s: the weights of epoch %s are gone; best.pt is not refreshed", self.run_dir, state["best_epoch"])
            return None
        raise RunFileError(
            f"{best} does not hold the selected epoch {state['best_epoch']} that {self.checkpoint_dir / 'last.pt'} "
            "names (a checkpoint of an older version, interrupted between its two writes), so its test metrics "
            f"cannot be computed; delete {self.checkpoint_dir} to train this run again"
        )

    def _read(self, path: Path) -> dict:
        try:
            return load_weights_only(path, map_location=self.device)
        except CheckpointReadError as error:
            raise RunFileError(f"{error} (deleting it restarts this run from scratch)") from error

    def _remove_interrupted_writes(self) -> None:
        """Temporaries of atomic writes that a kill interrupted (``.last.pt.*``): never read, so just litter."""
        for name in ("last.pt", "best.pt"):
            for leftover in self.checkpoint_dir.glob(f".{name}.*"):
                leftover.unlink(missing_ok=True)

    def resume_if_possible(self) -> bool:
        if self.is_main:
            self._remove_interrupted_writes()
        path = self.checkpoint_dir / "last.pt"
        if not path.exists():
            return False
        self._load(self._read(path), path)
        log.info("resumed %s at epoch %d (step %d)", self.run_dir, self.epoch, self.global_step)
        return True

    def load_weights(self, which: str) -> None:
        """Load model (and method) weights from ``best.pt`` or ``last.pt`` for evaluation."""
        path = self.checkpoint_dir / f"{which}.pt"
        self.problem.load_state_dict(self._read(path)["problem"])

    # ------------------------------------------------------------------ training
    def _improved(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if self.selection_mode == "max" else value < self.best_value

    def _set_lr(self, progress: float) -> float:
        factor = lr_factor(self.lr_schedule, progress, self.global_step, self.lr_gamma, self.lr_decay,
                           self.lr_milestones, self.lr_step_factor, self.steps_per_epoch)
        for group, base, multiplier in zip(self.optimizer.param_groups, self.base_lrs, self.lr_multipliers):
            group["lr"] = base * factor * multiplier
        return self.optimizer.param_groups[0]["lr"]

    def _autocast(self):
        return self.precision.autocast()

    @staticmethod
    def _loss_scaling_refused(problem, weighting) -> str | None:
        """Why float16 loss scaling would be wrong for this run, or None."""
        if problem.owns_update:
            return "a method that owns its update (MCD) steps the optimiser itself"
        if getattr(weighting, "reads_term_gradients", False):
            return f"weighting {type(weighting).__name__} reads the terms' gradients (a loss scale would change them)"
        return None

    def _raise_deferred_non_finite(self, step: int, bad_terms: list[str]) -> None:
        last = self.checkpoint_dir / "last.pt"
        kept = f"the last good checkpoint (end of epoch {self.epoch}) is kept at {last}" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"loss term(s) {', '.join(bad_terms)} became NaN/inf at step {step} "
            f"(epoch {(step - 1) // self.steps_per_epoch + 1}), found at step {self.global_step} (the check after it); "
            f"the updates of steps {step}-{self.global_step} were undone on the device, so the weights are those "
            f"before step {step}; {kept}. Lower optim.lr, check the data normalisation, or enable gradient "
            "clipping; the run stopped instead of training on garbage."
        )

    def _raise_non_finite(self, bad_terms: list[str]) -> None:
        last = self.checkpoint_dir / "last.pt"
        kept = f"the last good checkpoint (end of epoch {self.epoch}) is kept at {last}" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"loss term(s) {', '.join(bad_terms)} became NaN/inf at step {self.global_step + 1} "
            f"(epoch {self.epoch + 1}), before the optimiser step; {kept}. Lower optim.lr, check the data normalisation, or enable gradient "
            "clipping; the run stopped instead of training on garbage."
        )

    def fit(self) -> dict:
        """Train to the end (resuming from ``last.pt`` if present); return final metrics."""
        self.resume_if_possible()
        if self.is_main:
            writer = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=self.global_step or None)
        else:  # only rank 0 writes TensorBoard events
            writer = distributed.NullWriter()
        self._writer = writer
        bar = tqdm(total=self.total_steps, initial=self.global_step, disable=not self.progress_bar, desc=self.run_dir.name, leave=False)
        try:
            while self.epoch < self.epochs and not self._stopped_early():
                self._train_epoch(writer, bar)
        finally:
            bar.close()
            writer.flush()
        metrics = self._final_metrics(writer)
        writer.close()
        return metrics

    def _stopped_early(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def _enter_phase(self, writer: SummaryWriter) -> None:
        """Apply the phase plan for the epoch about to run (idempotent, so resuming is exact)."""
        trainable = self.phase_plan.apply(self.epoch)
        self.lr_multipliers = self.phase_plan.lr_multipliers(self.epoch, self.optimizer.param_groups)
        index, _, _ = self.phase_plan.locate(self.epoch)
        writer.add_scalar("phase/index", index, self.global_step)
        writer.add_scalar("phase/trainable_blocks", trainable, self.global_step)

    def _train_epoch(self, writer: SummaryWriter, bar) -> None:
        if self.phase_plan is not None:
            self._enter_phase(writer)
        self.problem.train()
        started = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        weight_sums: dict[str, float] = {}
        count = 0
        self._epoch_scalars = {}
        for _ in range(self.steps_per_epoch):
            progress = self.global_step / self.total_steps
            lr = self._set_lr(progress)
            step = self._method_step if self.problem.owns_update else self._weighted_step
            terms, weights, values = step(progress)
            self.global_step += 1
            for name, value in zip(terms, values):
                sums[name] = sums.get(name, 0.0) + value
            for name, w in weights.items():
                weight_sums[name] = weight_sums.get(name, 0.0) + w
            count += 1
            bar.update(1)
            if self.global_step % self.log_every == 0:
                self._check_guard()  # before logging: a NaN is never logged
                self._log_interval(writer, sums, weight_sums, count, lr)
                sums, weight_sums, count = {}, {}, 0
        self._check_guard()  # before the epoch's validation and checkpoint
        if count:
            self._log_interval(writer, sums, weight_sums, count, lr)
        self.train_seconds += time.perf_counter() - started
        self.epoch += 1
        self._end_epoch(writer)

    def _weighted_step(self, progress: float):
        """Forward, weighting backward, NaN guard, optimiser step."""
        with self._autocast():
            terms, representation = self.problem.training_terms(progress, step=self.global_step)
        self.optimizer.zero_grad(set_to_none=True)
        every = self.gradient_diagnostics_every
        if every and len(terms) > 1 and self.global_step % every == 0 and self._writer is not None:
            self._log_gradient_agreement(terms)
        weights = self.weighting.backward(
            # fp16: the gradient into the networks is scaled, the values the weighting sees are not
            terms if self.loss_scaler is None else self.loss_scaler.scale_terms(terms),
            shared_parameters=self.shared_parameters,
            task_parameters=self.task_parameters,
            representation=representation,
        )
        values = torch.stack([v.detach().float() for v in terms.values()])
        if self.replicas is not None:  # average gradients and loss values over the ranks (before the guard: all ranks agree)
            values = self.replicas.synchronise(values, [p for g in self.optimizer.param_groups for p in g["params"]])
        if self.guard is not None:  # decided on the device, reported at the next check (no host read here)
            self.guard.step(self.optimizer, values, list(terms), self.global_step + 1)
        elif self.loss_scaler is not None:
            self._scaled_step(terms, values)
        else:
            finite = torch.isfinite(values)
            if not bool(finite.all()):
                self._raise_non_finite([n for n, ok in zip(terms, finite.tolist()) if not ok])
            self.optimizer.step()
        self.weighting.update(terms)
        return terms, weights, values

    def _scaled_step(self, terms, values) -> None:
        """fp16: unscale, then one host read (as torch.amp.GradScaler's) decides: a non-finite loss stops the
        run, an overflowed gradient skips the step and lowers the scale."""
        overflow = self.loss_scaler.unscale_(self.problem.parameters())
        flags = torch.cat([~torch.isfinite(values), overflow.bool()]).tolist()
        if any(flags[:-1]):
            self._raise_non_finite([n for n, bad in zip(terms, flags) if bad])
        if not flags[-1]:
            self.optimizer.step()
        self.loss_scaler.update(overflow)

    def _check_guard(self) -> None:
        if self.guard is not None:
            self.guard.check()

    def _log_gradient_agreement(self, terms) -> None:
        """Pairwise cosine and norm ratios of the terms' gradients on the shared parameters (extra backward)."""
        shared = [p for p in self.shared_parameters if p.requires_grad]
        names = list(terms)
        jacobian = term_jacobian([terms[n] for n in names], shared)
        for key, value in gradient_agreement(jacobian, names).items():
            self._writer.add_scalar(f"gradients/{key}", value, self.global_step)

    def _method_step(self, progress: float):
        """A method that owns its update (MCD): the guard runs after, on the parameters too."""
        with self._autocast():
            terms = self.problem.update_step(progress, self.optimizer)
        values = torch.stack([v.detach().float() for v in terms.values()])
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            self._raise_non_finite([n for n, ok in zip(terms, finite.tolist()) if not ok])
        return terms, {}, values

    def _log_interval(self, writer, sums, weight_sums, count, lr) -> None:
        """Write the interval's mean loss terms and weights, the lr and the method's diagnostics to
        TensorBoard, and add them to the epoch's means that go into the history as ``train/<name>``."""
        scalars = {
            **{f"loss/{name}": float(total) / count for name, total in sums.items()},
            **{f"weight/{name}": float(total) / count for name, total in weight_sums.items()},
            **{name: float(value) for name, value in self.problem.diagnostics().items()},
        }
        writer.add_scalar("lr", lr, self.global_step)
        for name, value in scalars.items():
            writer.add_scalar(name, value, self.global_step)
            total = self._epoch_scalars.setdefault(name, [0.0, 0])
            total[0] += value
            total[1] += 1

    def _end_epoch(self, writer: SummaryWriter) -> None:
        if self.replicas is not None:  # replicas checked identical; rank 0's BatchNorm statistics everywhere
            self.replicas.before_evaluation([self.problem, self.weighting])
        val = self.problem.evaluate("val")
        for name, value in val.items():
            writer.add_scalar(name, value, self.global_step)
        if self.selection_metric not in val:
            raise KeyError(
                f"selection metric {self.selection_metric!r} is not among the validation metrics: {', '.join(sorted(val))}"
            )
        value = val[self.selection_metric]
        improved = self._improved(value)
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, self.epoch, 0
            self._selected_weights = _cpu_copy(self.problem.state_dict())
        else:
            self.bad_epochs += 1
        # the epoch's training scalars: the mean of the values logged every log_every steps (loss terms
        # and weights are interval means; diagnostics such as dann/domain_accuracy are the logging step's)
        train = {f"train/{name}": total / n for name, (total, n) in sorted(self._epoch_scalars.items()) if n}
        entry = {"epoch": self.epoch, "step": self.global_step, **val, **train}
        if self.test_every_epoch:
            # learning curves only: selection above has already read the validation metrics
            test = self.problem.evaluate("test")
            for name, value in test.items():
                writer.add_scalar(f"curve/{name}", value, self.global_step)
            entry.update(test)
        self.history.append(entry)
        state = self._state()
        if self.is_main:
            atomic_torch_save(self.checkpoint_dir / "last.pt", state)  # commits the epoch and its selection at once
            if improved:
                self._export_selected(state["problem"])
        if self.replicas is not None:
            self.replicas.barrier()  # every rank leaves the epoch with rank 0's checkpoint written
        for callback in self.callbacks:
            callback(self, self.epoch)

    def _export_selected(self, weights: dict) -> None:
        """Write ``best.pt``: the selected epoch's weights (for ``mtlda analyze``; resuming never reads it)."""
        export = {"version": CHECKPOINT_VERSION, "config_hash": self.config_hash, "epoch": self.best_epoch, "problem": weights}
        atomic_torch_save(self.checkpoint_dir / "best.pt", export)
        self._best_file_epoch = self.best_epoch

    def _final_metrics(self, writer: SummaryWriter) -> dict:
        if self.is_main and self._selected_weights is not None and self._best_file_epoch != self.best_epoch:
            self._export_selected(self._selected_weights)  # resumed: best.pt may predate last.pt
        if self.select == "best":
            # the weights last.pt names as selected (in memory), never a best.pt a kill may have left behind
            self.problem.load_state_dict(self._selected_weights)
        test = self.problem.evaluate("test")
        selected_epoch = self.best_epoch if self.select == "best" else self.epoch
        selected_val = next(h for h in self.history if h["epoch"] == selected_epoch)
        metrics = {**{k: v for k, v in selected_val.items() if k.startswith("val/")}, **test}
        for name, value in test.items():
            writer.add_scalar(name, value, self.global_step)
        hparam_metrics = {f"hparam/{k}": v for k, v in metrics.items()}
        writer.add_hparams(self.hparams, hparam_metrics, run_name=".")
        return {
            "metrics": metrics,
            "selected_epoch": selected_epoch,
            "epochs_run": self.epoch,
            "stopped_early": self._stopped_early() and self.epoch < self.epochs,
            "history": self.history,
            "train_seconds": self.train_seconds,
            "steps": self.global_step,
            **({"extended_from": self.extended_from} if self.extended_from is not None else {}),
        }
