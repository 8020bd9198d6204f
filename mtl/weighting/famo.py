"""Fast Adaptive Multitask Optimization (FAMO).

Reference
    Bo Liu, Yihao Feng, Peter Stone and Qiang Liu. "FAMO: Fast Adaptive
    Multitask Optimization". Advances in Neural Information Processing
    Systems (NeurIPS), 2023.

Update rule (Algorithm 1 of the paper)
    FAMO keeps task logits ``ξ ∈ R^K`` (initially 0) and ``z = softmax(ξ)``.

    1. Model step on the losses ``ℓ_t = ℓ(θ_t)``: minimise
       ``Σ_k c_t z_k log(ℓ_k + ε)`` with ``c_t = (Σ_k z_k / (ℓ_k + ε))⁻¹``
       held constant, i.e. the gradient is ``Σ_k w_k ∇ℓ_k`` with the
       effective weights ``w_k = c_t z_k / (ℓ_k + ε)`` (they sum to 1; these
       are the weights :meth:`combine` reports).  Every task's loss then
       decreases at the same *relative* rate to first order, with the
       trade-off set by ``z``.
    2. Logit step from the change of the log-losses produced by that model
       step, ``δ_k = log(ℓ_k(θ_t) + ε) − log(ℓ_k(θ_{t+1}) + ε)``::

           g = (∂z/∂ξ)ᵀ δ = z ⊙ (δ − zᵀδ)
           ξ ← AdamStep(ξ, g + γ ξ; lr)

       so tasks whose loss fell by less than the others gain weight.  The
       paper writes the logit step as plain gradient descent with decay
       ``γ``; the authors' implementation (and this one) applies Adam
       (β₁ = 0.9, β₂ = 0.999, eps 1e-8) to ``g`` with L2 weight decay ``γ``,
       exactly as ``torch.optim.Adam(weight_decay=γ)`` does.  Defaults:
       ``lr = 0.025``, ``γ = 1e-3``, ``ε = 1e-8`` (the authors' run scripts
       set ``γ`` per benchmark: 1e-3 for QM9, 1e-2 for CelebA).  Losses must
       be non-negative (the authors' lower bound ``ℓ*_k = 0``).  The authors'
       training loop also clips the model gradient norm; that belongs to the
       optimiser set-up, not to the weighting, and is not done here.

How the engine's call order maps onto the algorithm
    The paper evaluates ``ℓ(θ_{t+1})`` on the *same* mini-batch as ``ℓ(θ_t)``,
    i.e. one extra forward pass per step.  The engine does one forward per
    step and calls, in order, ``backward(ℓ_t)`` (step 1 above),
    ``optimizer.step()``, ``update(ℓ_t)`` with the *same* pre-step losses.
    So:

    * ``update(losses)`` with the values passed to the preceding
      ``backward`` (the engine's case): the logit step cannot be taken yet;
      it is deferred to the start of the next ``backward(ℓ_{t+1})`` and uses
      ``δ = log ℓ_t(batch t) − log ℓ_{t+1}(batch t+1)``, the losses of the
      next step on the next batch.  The logits that weight step ``t+1`` then
      include the change produced by step ``t``, as in the paper; the only
      difference is that ``δ`` compares two mini-batches (extra noise, no
      extra forward pass).
    * ``update(losses)`` with *different* values, namely the losses
      re-evaluated after the optimiser step on the same batch (the authors'
      training loop does this with a second, no-grad forward pass): the
      logit step is taken at once with those losses, which is Algorithm 1
      exactly.

    The two cases are told apart by comparing the values with those of the
    last ``backward``; a model step that leaves every loss bit-for-bit
    unchanged (``lr = 0``) is therefore treated as the deferred case.

State
    ``ξ``, Adam's moments and step count, the pre-step losses of the last
    ``backward`` and whether a deferred logit step is pending are float64 CPU
    tensors saved with ``state_dict()`` (``get_extra_state``): a resumed run
    continues with identical weights.  ``ξ`` is not an ``nn.Parameter``
    (the model optimiser must not touch it), so ``weighting.parameters()`` is
    empty and no ``ensure_terms`` call is needed.
"""
from __future__ import annotations

import math

import torch

from .base import LossWeighting, check_terms

_CPU = torch.device("cpu")
_F64 = torch.float64


class FAMO(LossWeighting):
    """FAMO: logits balancing the log-loss decrease rates (Liu et al. 2023).

    Fast adaptive multitask optimization (Liu, Feng, Stone & Liu, NeurIPS 2023).

    Args:
        lr: step size of the task-logit update (paper: 0.025).
        gamma: weight decay ``γ`` of the logits (paper: 1e-3).
        betas: Adam coefficients of the logit optimiser.
        adam_eps: Adam's ``eps``.
        epsilon: ``ε`` added to each loss before the logarithm.
    """

    name = "famo"

    def __init__(
        self,
        lr: float = 0.025,
        gamma: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        epsilon: float = 1e-8,
    ):
        super().__init__()
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"FAMO: betas must be two numbers in [0, 1), got {betas}")
        if lr < 0 or gamma < 0 or adam_eps <= 0 or epsilon < 0:
            raise ValueError("FAMO: lr and gamma must be >= 0, adam_eps > 0 and epsilon >= 0")
        self.lr = float(lr)
        self.gamma = float(gamma)
        self.betas = betas
        self.adam_eps = float(adam_eps)
        self.epsilon = float(epsilon)
        self.reset()

    def extra_repr(self) -> str:
        return f"lr={self.lr}, gamma={self.gamma}, betas={self.betas}, epsilon={self.epsilon}"

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        self.names: list[str] | None = None
        self.logits: torch.Tensor | None = None  # ξ
        self._m: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self.logit_steps = 0
        self._before: torch.Tensor | None = None  # ℓ_t of the last backward
        self._pending = False  # a deferred logit step waits for the next backward

    def get_extra_state(self) -> dict:
        return {
            "names": None if self.names is None else list(self.names),
            "logits": self.logits,
            "m": self._m,
            "v": self._v,
            "logit_steps": self.logit_steps,
            "before": self._before,
            "pending": self._pending,
        }

    def set_extra_state(self, state: dict) -> None:
        def cpu(t):
            return None if t is None else t.to(_CPU, _F64)

        self.names = None if state["names"] is None else list(state["names"])
        self.logits, self._m, self._v = cpu(state["logits"]), cpu(state["m"]), cpu(state["v"])
        self.logit_steps = int(state["logit_steps"])
        self._before = cpu(state["before"])
        self._pending = bool(state["pending"])

    # ------------------------------------------------------------------ rule
    def _ordered(self, losses) -> list[str]:
        names = check_terms(losses, "FAMO")
        if self.names is None:
            k = len(names)
            self.names = names
            self.logits = torch.zeros(k, dtype=_F64)
            self._m = torch.zeros(k, dtype=_F64)
            self._v = torch.zeros(k, dtype=_F64)
        elif set(names) != set(self.names):
            raise ValueError(f"FAMO: loss terms {sorted(names)} differ from the terms seen before {sorted(self.names)}")
        return self.names

    def _values(self, losses, names) -> torch.Tensor:
        return torch.stack([losses[n].detach() for n in names]).cpu().to(_F64)

    def task_weights(self) -> torch.Tensor:
        """``z = softmax(ξ)`` (float64, CPU, in term order)."""
        return torch.softmax(self.logits, dim=0)

    def _logit_step(self, before: torch.Tensor, after: torch.Tensor) -> None:
        delta = torch.log(before + self.epsilon) - torch.log(after + self.epsilon)
        z = self.task_weights()
        grad = z * (delta - (z * delta).sum()) + self.gamma * self.logits
        beta1, beta2 = self.betas
        self.logit_steps += 1
        self._m = beta1 * self._m + (1.0 - beta1) * grad
        self._v = beta2 * self._v + (1.0 - beta2) * grad * grad
        correction1 = 1.0 - beta1**self.logit_steps
        correction2 = 1.0 - beta2**self.logit_steps
        denominator = self._v.sqrt() / math.sqrt(correction2) + self.adam_eps
        self.logits = self.logits - (self.lr / correction1) * self._m / denominator

    def combine(self, losses):
        names = self._ordered(losses)
        values = torch.stack([losses[n] for n in names])
        now = self._values(losses, names)
        negative = [n for n, bad in zip(names, (now < 0).tolist()) if bad]
        if negative:
            raise ValueError(f"FAMO: term(s) {', '.join(negative)} are negative; FAMO needs losses >= 0")
        if self._pending:  # deferred logit step: δ from the previous step's and this step's losses
            self._logit_step(self._before, now)
            self._pending = False
        self._before = now
        z = self.task_weights()
        shifted = now + self.epsilon
        c = 1.0 / (z / shifted).sum()
        effective = c * z / shifted
        scale = (c * z).to(device=values.device, dtype=values.dtype)
        total = (scale * torch.log(values + self.epsilon)).sum()
        return total, {n: float(w) for n, w in zip(names, effective.tolist())}

    def update(self, losses) -> None:
        names = self._ordered(losses)
        if self._before is None:
            raise RuntimeError("FAMO.update() called before backward(): it needs the losses of the step first")
        after = self._values(losses, names)
        if torch.equal(after, self._before):
            self._pending = True  # the engine's case: wait for the next step's losses
        else:
            self._logit_step(self._before, after)  # losses after the step, same batch: Algorithm 1
            self._before = after
            self._pending = False
