"""GradNorm: gradient normalisation for adaptive loss balancing.

Reference
    Zhao Chen, Vijay Badrinarayanan, Chen-Yu Lee and Andrew Rabinovich.
    "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep
    Multitask Networks". International Conference on Machine Learning
    (ICML), 2018.

Update rule
    Learnable weights ``w_k`` (initially 1) scale the terms; the network
    minimises ``Σ_k w_k L_k``.  With ``W`` the weights of the last shared
    layer::

        G_k      = ‖∇_W (w_k L_k)‖₂ = w_k ‖∇_W L_k‖₂
        Ḡ        = mean_k G_k
        L̃_k      = L_k(t) / L_k(0)               (loss ratio: inverse training rate)
        r_k      = L̃_k / mean_j L̃_j              (relative inverse training rate)
        L_grad   = Σ_k | G_k − Ḡ · r_k^α |        (Ḡ · r_k^α held constant)

    The ``w_k`` receive ``∂L_grad/∂w_k`` only (the network does not see
    ``L_grad``, and ``Σ w_k L_k`` does not move the ``w_k``); after each
    optimiser step they are renormalised so that ``Σ_k w_k = K``.  Tasks
    that train more slowly (large ``r_k``) are pushed towards larger
    gradient norms; ``α`` (paper default 1.5) sets the strength of that
    restoring force.  ``L_k(0)`` is the loss of the first step.

Choices this implementation makes
    * ``W`` is the last shared parameter tensor with at least two dimensions
      (the weight matrix or kernel of the last shared layer), or the last
      shared parameter when none has two: the trailing tensor of a backbone
      is usually the last layer's *bias*, which the paper does not mean by
      "the last shared layer of weights".
    * ``‖∇_W L_k‖`` comes from one batched backward through the heads to
      ``W`` (``term_jacobian``; one backward per term if an operation has no
      batching rule).  Because ``G_k = w_k ‖∇_W L_k‖`` exactly, no
      second-order graph is needed.
    * Renormalisation (in :meth:`update`) first floors every weight at
      ``1e-8`` so a weight driven below zero cannot flip the sign of its
      task's gradient, then rescales to ``Σ w = K``.

State protocol
    The weights are ``nn.Parameter``s that the model optimiser must update:
    add ``weighting.parameters()`` to it and call
    ``ensure_terms(names, device)`` *before* building it (the weights are
    otherwise created lazily on the first step, too late to be optimised).
    ``L_k(0)`` and the term names are saved with ``state_dict()``;
    ``reset()`` sets every weight back to 1 and forgets ``L(0)``.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from .base import Weighting, check_terms
from .gradient import term_jacobian

log = logging.getLogger(__name__)

_FLOOR = 1e-8


def last_shared_layer(shared_parameters) -> torch.Tensor:
    """The last trainable shared tensor with ≥ 2 dimensions (else the last trainable one)."""
    params = [p for p in shared_parameters if p.requires_grad]
    if not params:
        raise ValueError("GradNorm needs the shared parameters (the last shared layer is its W); none were given")
    for p in reversed(params):
        if p.dim() >= 2:
            return p
    return params[-1]


class GradNorm(Weighting):
    """GradNorm: learned weights equalising the gradient norms of the last shared layer (Chen et al. 2018).

    GradNorm (Chen et al., ICML 2018).

    Args:
        alpha: strength ``α`` of the restoring force towards equal relative
            training rates (paper default 1.5).
    """

    name = "gradnorm"
    reads_term_gradients = True  # the gradient norms of the weighted terms

    def __init__(self, alpha: float = 1.5):
        super().__init__()
        if alpha < 0:
            raise ValueError(f"GradNorm: alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.loss_weights = nn.ParameterDict()
        self.initial_losses: torch.Tensor | None = None  # L(0) in term order, float64 CPU
        self.jacobian_mode = "auto"
        self.last_grad_loss: float | None = None  # L_grad of the last step, for diagnostics

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    # ------------------------------------------------------------------ state
    def ensure_terms(self, names, device=None) -> None:
        """Create the weights (1 each) before the optimiser is built."""
        for name in names:
            if name not in self.loss_weights:
                self.loss_weights[name] = nn.Parameter(torch.ones((), device=device))

    def reset(self) -> None:
        with torch.no_grad():
            for p in self.loss_weights.values():
                p.fill_(1.0)
        self.initial_losses = None

    def get_extra_state(self) -> dict:
        return {"initial_losses": self.initial_losses}

    def set_extra_state(self, state: dict) -> None:
        initial = state["initial_losses"]
        self.initial_losses = None if initial is None else initial.to("cpu", torch.float64)

    def weights(self) -> dict[str, float]:
        return {n: float(p.detach()) for n, p in self.loss_weights.items()}

    # ------------------------------------------------------------------ rule
    def _norms(self, values, w_layer) -> torch.Tensor:
        if self.jacobian_mode != "loop":
            try:
                return term_jacobian(values, [w_layer], batched=True).norm(dim=1)
            except RuntimeError as error:
                log.warning("GradNorm: batched Jacobian unavailable (%s); using one backward pass per term", error)
                self.jacobian_mode = "loop"
        return term_jacobian(values, [w_layer], batched=False).norm(dim=1)

    def backward(self, losses, *, shared_parameters=(), task_parameters=(), representation=None):
        names = check_terms(losses, "GradNorm")
        unknown = [n for n in names if n not in self.loss_weights]
        if unknown and len(self.loss_weights) > 0:
            raise ValueError(
                f"GradNorm: new loss terms {unknown} after the weights were created "
                f"(known: {list(self.loss_weights)}); call ensure_terms() with every term name first"
            )
        values = [losses[n] for n in names]
        self.ensure_terms(names, device=values[0].device)
        names = list(self.loss_weights)
        if set(names) != set(losses):
            raise ValueError(f"GradNorm: loss terms {sorted(losses)} differ from the weighted terms {sorted(names)}")
        values = [losses[n] for n in names]
        layer = last_shared_layer(shared_parameters)
        params = [self.loss_weights[n] for n in names]

        now = torch.stack([v.detach() for v in values]).cpu().to(torch.float64)
        if self.initial_losses is None:
            self.initial_losses = now.clone()
        ratio = torch.where(self.initial_losses > 0, now / torch.where(self.initial_losses > 0, self.initial_losses, 1.0), 1.0)
        relative = ratio / ratio.mean()

        norms = self._norms(values, layer).detach()
        with torch.enable_grad():
            w = torch.stack(params)
            g = w * norms.to(w.dtype)
            target = (g.mean() * relative.to(device=g.device, dtype=g.dtype) ** self.alpha).detach()
            grad_loss = (g - target).abs().sum()
            weight_grads = torch.autograd.grad(grad_loss, params)
        for p, grad in zip(params, weight_grads):
            p.grad = grad if p.grad is None else p.grad + grad

        used = w.detach()
        total = (used.to(values[0].dtype) * torch.stack(values)).sum()
        total.backward()
        self.last_grad_loss = float(grad_loss.detach())
        return {n: float(x) for n, x in zip(names, used.tolist())}

    def update(self, losses) -> None:
        """Renormalise the weights to sum to K after the optimiser step."""
        if not self.loss_weights:
            return
        with torch.no_grad():
            params = list(self.loss_weights.values())
            w = torch.stack([p.detach() for p in params]).clamp_min(_FLOOR)
            w = w * (len(params) / w.sum())
            for p, value in zip(params, w):
                p.copy_(value)
