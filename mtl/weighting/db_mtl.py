"""Dual-Balancing Multi-Task Learning (DB-MTL).

Reference
    Baijiong Lin, Weisen Jiang, Feiyang Ye, Yu Zhang, Pengguang Chen,
    Ying-Cong Chen, Shu Liu and James T. Kwok. "Dual-Balancing for Multi-Task
    Learning". arXiv:2308.12029, 2023.

Update rule
    *Loss-scale balancing*: every term is replaced by its logarithm,
    ``log(L_k + ε)``, whose gradient ``∇L_k / (L_k + ε)`` no longer depends
    on the scale of ``L_k``.

    *Gradient-magnitude balancing*: with ``g_k`` the gradient of
    ``log(L_k + ε)`` with respect to the shared parameters, an exponential
    moving average ``ĝ_k`` (zero before the first step) is kept with a
    decaying coefficient::

        β_t  = β / t^β_σ                      (t = 1, 2, ... counts the steps)
        ĝ_k ← β_t ĝ_k + (1 − β_t) g_k
        d    = Σ_k (max_j ‖ĝ_j‖ / ‖ĝ_k‖) · ĝ_k

    so every scaled gradient has the norm of the largest one.  The shared
    parameters receive ``d``; task-specific parameters receive the plain
    gradient of ``Σ_k log(L_k + ε)``.  Defaults from the paper: ``β = 0.9``,
    ``β_σ = 0.5``, ``ε = 1e-8``.  A term whose averaged gradient is zero
    gets scale 0.

    The reported weight of term ``k`` is its scale ``α_k = max_j ‖ĝ_j‖ /
    ‖ĝ_k‖`` on the averaged gradient of its log-loss (so relative to the raw
    loss the current step's gradient of term ``k`` enters with
    ``α_k (1 − β_t) / (L_k + ε)``).

Target and cost
    Gradients with respect to the shared parameters, as in the paper (the
    rule is stated for parameter gradients; there is no representation
    variant).  It needs the ``K × d`` Jacobian of the log-losses each step
    (one batched backward, or one backward per term when an operation has
    no batching rule), and keeps the ``K × d`` average as state.

State
    The step count, the term names and ``ĝ`` (on the device of the
    gradients) are saved with ``state_dict()``; ``reset()`` clears them.
"""
from __future__ import annotations

import logging

import torch

from .base import Weighting, check_terms
from .gradient import term_jacobian

log = logging.getLogger(__name__)


class DBMTL(Weighting):
    """Dual balancing: log-losses, EMA gradients scaled to the max norm (Lin et al. 2023).

    DB-MTL (Lin et al., 2023): log-losses and max-norm gradient balancing.

    Args:
        beta: EMA coefficient ``β`` (paper: 0.9).
        beta_sigma: decay exponent ``β_σ`` of the EMA coefficient (paper: 0.5).
        epsilon: ``ε`` inside the logarithm.
        jacobian: ``"auto"`` (batched, falling back to a loop), ``"batched"``
            or ``"loop"``.
    """

    name = "db_mtl"
    reads_term_gradients = True  # balances the terms' gradient norms
    combines_term_gradients = True  # a direction from the terms' scaled gradients

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.5, epsilon: float = 1e-8, jacobian: str = "auto"):
        super().__init__()
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"DBMTL: beta must be in [0, 1), got {beta}")
        if beta_sigma < 0:
            raise ValueError(f"DBMTL: beta_sigma must be >= 0, got {beta_sigma}")
        if jacobian not in ("auto", "batched", "loop"):
            raise ValueError(f"jacobian must be 'auto', 'batched' or 'loop', got {jacobian!r}")
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.epsilon = float(epsilon)
        self.jacobian_mode = jacobian
        self.reset()

    def extra_repr(self) -> str:
        return f"beta={self.beta}, beta_sigma={self.beta_sigma}, epsilon={self.epsilon}"

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        self.names: list[str] | None = None
        self.steps = 0
        self.grad_buffer: torch.Tensor | None = None  # ĝ, shape (K, d)
        self.last_weights: torch.Tensor | None = None

    def get_extra_state(self) -> dict:
        return {
            "names": None if self.names is None else list(self.names),
            "steps": self.steps,
            "grad_buffer": self.grad_buffer,
        }

    def set_extra_state(self, state: dict) -> None:
        self.names = None if state["names"] is None else list(state["names"])
        self.steps = int(state["steps"])
        self.grad_buffer = state["grad_buffer"]
        self.last_weights = None

    # ------------------------------------------------------------------ rule
    def _jacobian(self, values, inputs) -> torch.Tensor:
        if self.jacobian_mode == "loop":
            return term_jacobian(values, inputs, batched=False)
        try:
            return term_jacobian(values, inputs, batched=True)
        except RuntimeError as error:
            if self.jacobian_mode == "batched":
                raise
            log.warning("DBMTL: batched Jacobian unavailable (%s); using one backward pass per term", error)
            self.jacobian_mode = "loop"
            return term_jacobian(values, inputs, batched=False)

    def backward(self, losses, *, shared_parameters=(), task_parameters=(), representation=None):
        names = check_terms(losses, "DBMTL")
        if self.names is None:
            self.names = names
        elif set(names) != set(self.names):
            raise ValueError(f"DBMTL: loss terms {sorted(names)} differ from the terms seen before {sorted(self.names)}")
        names = self.names
        inputs = [p for p in shared_parameters if p.requires_grad]
        if not inputs:
            raise ValueError("DBMTL needs the shared parameters; none were given")
        logs = [torch.log(losses[n] + self.epsilon) for n in names]
        jacobian = self._jacobian(logs, inputs)

        self.steps += 1
        beta_t = self.beta / self.steps**self.beta_sigma
        if self.grad_buffer is None:
            self.grad_buffer = torch.zeros_like(jacobian)
        elif self.grad_buffer.shape != jacobian.shape:
            raise ValueError(
                f"DBMTL: the gradient average has shape {tuple(self.grad_buffer.shape)} but this step's Jacobian "
                f"has {tuple(jacobian.shape)}; the shared parameters changed"
            )
        buffer = self.grad_buffer.to(device=jacobian.device, dtype=jacobian.dtype)
        self.grad_buffer = beta_t * buffer + (1.0 - beta_t) * jacobian
        norms = self.grad_buffer.norm(dim=1)
        largest = norms.max()
        scale = torch.where(norms > 0, largest / torch.where(norms > 0, norms, 1.0), torch.zeros_like(norms))
        direction = scale @ self.grad_buffer
        self.last_weights = scale.detach()

        task_parameters = [p for p in task_parameters if p.requires_grad]
        if task_parameters:
            grads = torch.autograd.grad(torch.stack(logs).sum(), task_parameters, allow_unused=True)
            for p, g in zip(task_parameters, grads):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
        offset = 0
        for p in inputs:
            g = direction[offset : offset + p.numel()].reshape_as(p)
            offset += p.numel()
            p.grad = g.clone() if p.grad is None else p.grad + g
        return {n: float(s) for n, s in zip(names, scale.tolist())}
