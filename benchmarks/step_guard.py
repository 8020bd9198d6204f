"""A non-finite-loss guard that never waits for the device.

Reading "is every loss finite?" on the host before each optimiser step makes the
host wait for the device to finish the step, every step: on a GPU the next
step's kernels can then not be queued while this one runs.  This guard decides
on the device and tells the host later:

* **On the device, every step.**  The step's loss values are checked with
  ``isfinite``; the first non-finite step's number and its bad terms are kept
  in device tensors (``torch.where``, no host read).  The optimiser step runs,
  then every parameter it may have changed is set back to its value from
  before the step wherever the guard is tripped: ``p ← where(ok, p_new, p_old)``
  with ``ok`` false from the first non-finite step on (sticky).  So no update
  computed from a non-finite loss — nor any later one — reaches the weights:
  the weights stay those from before the first bad step.
* **On the host, at the next check.**  :meth:`check` reads the record (one
  host read) at logging steps and before the end-of-epoch validation and
  checkpoint; the trainer raises there, naming the first bad step and its
  terms.  Nothing is written between the bad step and the check (checkpoints
  are written after the end-of-epoch check; loss logging happens after the
  logging-step check), so ``last.pt``/``best.pt`` stay the last good epoch's.

What it does not keep: the optimiser's own state (momentum, Adam moments,
step counters) and BatchNorm running statistics may take up the bad values;
the run stops at the check and that state is never saved, so the last
checkpoint is what resuming or reporting reads.  The cost is one copy of the
parameters that have gradients and one ``torch.where`` per parameter per step.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


class DeferredFiniteGuard:
    """Device-side skip of optimiser updates after a non-finite loss, reported at the next :meth:`check`.

    ``on_failure(step, bad_terms)`` is called by :meth:`check` when a step was non-finite (it
    should raise); ``step`` is the 1-based number that :meth:`step` was given.
    """

    def __init__(self, device: torch.device, on_failure: Callable[[int, list[str]], None]):
        self.device = device
        self.on_failure = on_failure
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_terms: Tensor | None = None
        self._names: tuple[str, ...] | None = None
        #: term names of the steps since the last check (host-side, no device read)
        self._names_by_step: dict[int, tuple[str, ...]] = {}

    def step(self, optimizer: torch.optim.Optimizer, values: Tensor, names: Sequence[str], step: int) -> None:
        """Record whether ``values`` (this step's loss terms) are finite, then step ``optimizer`` unless the guard is tripped."""
        names = tuple(names)
        if names != self._names:  # another set of terms: settle the record of the previous ones first
            if self._names is not None:
                self.check()
            self._names = names
            self.bad_terms = torch.zeros(len(names), dtype=torch.bool, device=values.device)
        self._names_by_step[step] = names
        non_finite = ~torch.isfinite(values)
        newly = non_finite.any() & (self.first_bad < 0)
        self.first_bad = torch.where(newly, step, self.first_bad)
        self.bad_terms = torch.where(newly, non_finite, self.bad_terms)
        ok = self.first_bad < 0
        parameters = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        before = [p.detach().clone() for p in parameters]
        optimizer.step()
        with torch.no_grad():
            for p, old in zip(parameters, before):
                p.copy_(torch.where(ok, p, old))

    def check(self) -> None:
        """Read the record on the host (a synchronisation); call ``on_failure`` if a step was non-finite."""
        step = int(self.first_bad)
        if step < 0:
            self._names_by_step.clear()
            return
        names = self._names_by_step[step]
        bad = [n for n, is_bad in zip(names, self.bad_terms.tolist()) if is_bad]
        self.on_failure(step, bad)
