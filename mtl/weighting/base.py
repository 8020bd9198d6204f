"""The one interface between objectives and the optimiser.

Every objective in this codebase is a *named loss term*: each task's loss, a
domain-alignment loss, a regulariser.  A :class:`Weighting` turns the terms of
one step into gradients on the parameters.  Two families share it:

* loss-level weightings (:class:`LossWeighting`) combine the terms into one
  scalar and back-propagate it once;
* gradient-level methods (:class:`mtl.weighting.gradient.GradientAggregation`)
  take one gradient per term with respect to the shared parameters or the
  shared representation and aggregate them (MGDA, PCGrad, Nash-MTL, ...).

The engine calls, every step::

    optimizer.zero_grad()
    weights = weighting.backward(terms, shared_parameters=..., task_parameters=..., representation=...)
    optimizer.step()
    weighting.update(terms)

so a plain PyTorch loop can do the same.  State protocol (after TorchJD):
trained state lives in ``nn.Parameter`` (add ``weighting.parameters()`` to
the optimiser), everything else in buffers or plain attributes restored by
``state_dict``; ``update()`` runs after the optimiser step and ``reset()``
returns to the initial state.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


class Weighting(nn.Module):
    """Base class for every strategy that turns named loss terms into gradients."""

    #: whether :meth:`backward` reads the gradients of the terms (Jacobians, gradient norms), not only
    #: their values; such a method is not invariant to a loss scale applied to the terms' gradients
    #: (float16 loss scaling then refuses it)
    reads_term_gradients: bool = False

    def backward(
        self,
        losses: Mapping[str, Tensor],
        *,
        shared_parameters: Sequence[Tensor] = (),
        task_parameters: Sequence[Tensor] = (),
        representation: Tensor | None = None,
    ) -> dict[str, float]:
        """Populate ``.grad`` of the parameters; return the weight given to each term.

        A weight is a float, or a 0-d tensor where reading it on the host would wait for the device.
        """
        raise NotImplementedError

    def update(self, losses: Mapping[str, Tensor]) -> None:
        """Called once after each optimiser step (stateful methods override it)."""

    def reset(self) -> None:
        """Return to the state right after construction."""


def check_terms(losses: Mapping[str, Tensor], owner: str) -> list[str]:
    if not losses:
        raise ValueError(f"{owner}: got no loss terms; a step needs at least one named loss")
    for name, value in losses.items():
        if value.dim() != 0:
            raise ValueError(f"{owner}: loss term '{name}' has shape {tuple(value.shape)}; reduce it to a scalar")
    return list(losses.keys())


class LossWeighting(Weighting):
    """Weighting that forms ``combine(losses)`` and back-propagates it once.

    Subclasses implement :meth:`combine`, returning the scalar to minimise and
    the effective weight of each term (for logging).
    """

    def combine(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def backward(self, losses, *, shared_parameters=(), task_parameters=(), representation=None):
        check_terms(losses, type(self).__name__)
        total, weights = self.combine(losses)
        total.backward()
        return weights


class EqualWeighting(LossWeighting):
    """Sum of the terms, each with weight 1 (the "EW" baseline of LibMTL and most MTL papers)."""

    def combine(self, losses):
        return torch.stack(list(losses.values())).sum(), {name: 1.0 for name in losses}


class StaticWeighting(LossWeighting):
    """Fixed weights per term: ``Σ_k w_k L_k``.

    Every term must have a weight; a missing or unknown name is an error, so a
    typo in a config cannot silently fall back to weight 1.
    """

    def __init__(self, weights: Mapping[str, float]):
        super().__init__()
        if not weights:
            raise ValueError("StaticWeighting needs a weight per loss term, e.g. {'digit': 1.0, 'domain': 0.1}")
        self.weights = {str(k): float(v) for k, v in weights.items()}

    def combine(self, losses):
        missing = sorted(set(losses) - set(self.weights))
        unknown = sorted(set(self.weights) - set(losses))
        if missing or unknown:
            raise ValueError(
                f"StaticWeighting: weights do not match the loss terms. Terms: {sorted(losses)}; "
                f"missing weights: {missing}; weights for unknown terms: {unknown}"
            )
        total = sum(self.weights[name] * value for name, value in losses.items())
        return total, dict((name, self.weights[name]) for name in losses)
