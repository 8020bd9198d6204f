"""Gradient-level weighting: one gradient per loss term, aggregated into one update."""
from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Weighting, check_terms

log = logging.getLogger(__name__)

TARGETS = ("parameters", "representation")


def term_jacobian(losses: Sequence[Tensor], inputs: Sequence[Tensor], batched: bool = True) -> Tensor:
    """Rows = gradient of each loss w.r.t. ``inputs``, flattened and concatenated: shape (K, d).

    With ``batched=True`` all K gradients come from one vectorised backward
    (``torch.autograd.grad(..., is_grads_batched=True)``), not K passes.
    Inputs a loss does not reach get zero gradient.
    """
    stacked = torch.stack(list(losses))
    k = stacked.shape[0]
    if batched:
        eye = torch.eye(k, device=stacked.device, dtype=stacked.dtype)
        grads = torch.autograd.grad(
            stacked, list(inputs), grad_outputs=eye, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
        rows = [
            (g if g is not None else torch.zeros((k, *p.shape), device=p.device, dtype=p.dtype)).reshape(k, -1)
            for g, p in zip(grads, inputs)
        ]
        return torch.cat(rows, dim=1)
    per_term = []
    for loss in losses:
        grads = torch.autograd.grad(loss, list(inputs), retain_graph=True, allow_unused=True)
        per_term.append(
            torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, inputs)])
        )
    return torch.stack(per_term)


class GradientAggregation(Weighting):
    """Wraps a gradient aggregator (``J (K×d) → direction (d,)``) as a Weighting.

    ``target`` chooses what the per-term gradients are taken with respect to:
    ``"parameters"`` (the shared parameters) or ``"representation"`` (the
    shared features, as MGDA-UB does: cheaper, an upper bound).  ``None`` uses
    the aggregator's own default from its paper.  Task-specific parameters
    always receive the plain gradient of the sum of the terms.
    ``jacobian="auto"`` tries one batched backward and falls back to one
    backward per term if an operation has no batching rule (recorded in
    ``jacobian_mode`` and logged); ``"batched"`` or ``"loop"`` force one.
    """

    reads_term_gradients = True
    combines_term_gradients = True

    def __init__(self, aggregator, target: str | None = None, jacobian: str = "auto"):
        super().__init__()
        self.aggregator = aggregator
        target = target or getattr(aggregator, "default_target", "parameters")
        if target not in TARGETS:
            raise ValueError(f"gradient target must be one of {TARGETS}, got {target!r}")
        if target == "representation" and not getattr(aggregator, "supports_representation", True):
            raise ValueError(
                f"{type(aggregator).__name__} is defined on parameter gradients only; use target='parameters'"
            )
        if jacobian not in ("auto", "batched", "loop"):
            raise ValueError(f"jacobian must be 'auto', 'batched' or 'loop', got {jacobian!r}")
        self.target = target
        self.jacobian_mode = jacobian
        # some aggregators (MGDA's loss-based normalisations) also read the loss values
        self.passes_losses = "losses" in inspect.signature(aggregator.forward).parameters
        #: set by a data-parallel harness (``benchmarks.distributed.Replicas``): maps this rank's Jacobian to
        #: the global batch's before aggregating, since aggregators are nonlinear in the per-term gradients
        self.replicas = None

    def _jacobian(self, losses, inputs):
        if self.jacobian_mode == "loop":
            return term_jacobian(losses, inputs, batched=False)
        try:
            return term_jacobian(losses, inputs, batched=True)
        except RuntimeError as error:
            if self.jacobian_mode == "batched":
                raise
            log.warning("batched Jacobian unavailable (%s); using one backward pass per term", error)
            self.jacobian_mode = "loop"
            return term_jacobian(losses, inputs, batched=False)

    def backward(self, losses, *, shared_parameters=(), task_parameters=(), representation=None):
        names = check_terms(losses, type(self.aggregator).__name__)
        values = [losses[n] for n in names]
        if self.target == "representation":
            if representation is None:
                raise ValueError("target='representation' needs the shared representation from the forward pass")
            inputs = [representation]
        else:
            inputs = [p for p in shared_parameters if p.requires_grad]
            if not inputs:
                raise ValueError("gradient aggregation needs the shared parameters; none were given")
        jacobian = self._jacobian(values, inputs)
        loss_values = torch.stack([v.detach() for v in values])
        if self.replicas is not None:
            jacobian, loss_values = self.replicas.global_jacobian(jacobian, loss_values, self.target)
        if self.passes_losses:
            direction = self.aggregator(jacobian, losses=loss_values)
        else:
            direction = self.aggregator(jacobian)
        if self.replicas is not None:
            direction = self.replicas.local_direction(direction, self.target)
        task_parameters = [p for p in task_parameters if p.requires_grad]
        total = torch.stack(values).sum()
        if task_parameters:
            grads = torch.autograd.grad(total, task_parameters, retain_graph=True, allow_unused=True)
            for p, g in zip(task_parameters, grads):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
        if self.target == "representation":
            representation.backward(direction.reshape_as(representation))
        else:
            offset = 0
            for p in inputs:
                g = direction[offset : offset + p.numel()].reshape_as(p)
                offset += p.numel()
                p.grad = g.clone() if p.grad is None else p.grad + g
        weights = getattr(self.aggregator, "last_weights", None)
        if weights is None:
            return {}
        return {n: float(w) for n, w in zip(names, weights)}

    def reset(self) -> None:
        if hasattr(self.aggregator, "reset"):
            self.aggregator.reset()
