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
returns to the initial state.  A weighting with a parameter per term
creates it in :meth:`Weighting.ensure_terms`, which a caller runs before
building the optimiser.

Every subclass that sets :attr:`Weighting.name` registers itself in
:data:`WEIGHTINGS` when its module is imported (and :mod:`mtl.weighting`
imports all of its modules), so a new weighting is one new file in
``mtl/weighting/``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .._registry import register

#: config name (``weighting.name``) → weighting class, filled by the classes themselves (the
#: gradient aggregators of :mod:`mtl.aggregators` are offered through :class:`GradientAggregation`)
WEIGHTINGS: dict[str, type["Weighting"]] = {}


class Weighting(nn.Module):
    """Base class for every strategy that turns named loss terms into gradients.

    A subclass's docstring starts with one line naming the method and its
    paper (``mtlda list`` shows it), then documents its defaults.
    """

    #: the name configs use (``weighting.name``); a class that sets one is registered in :data:`WEIGHTINGS`
    name: str = ""
    #: constructor arguments that follow from the model, not hyperparameters (whoever builds the
    #: weighting passes them; a config cannot set them); none of the weightings here has any
    derived_arguments: tuple[str, ...] = ()
    #: True where :meth:`backward` combines one gradient per term (a Jacobian each step) rather than
    #: back-propagating one weighted sum of the terms
    combines_term_gradients: bool = False
    #: True where the update is the gradient of ``Σ_k w_k L_k`` with weights that do not depend on the
    #: batch (constants, or parameters trained like the model's): the gradient over a batch is then the
    #: mean of the gradients over equal parts of it, so data-parallel replicas may average theirs
    batch_independent_weights: bool = False
    #: True only for the unweighted sum of the terms, the weighting that changes nothing (a method that
    #: performs its own multi-step update leaves its terms to it)
    is_plain_sum: bool = False
    #: whether :meth:`backward` reads the gradients of the terms (Jacobians, gradient norms), not only
    #: their values; such a method is not invariant to a loss scale applied to the terms' gradients
    #: (float16 loss scaling then refuses it)
    reads_term_gradients: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(WEIGHTINGS, cls)

    def __init__(self) -> None:
        """A weighting without hyperparameters takes no arguments (a config that gives it some is told so)."""
        super().__init__()

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

    def ensure_terms(self, names: Iterable[str], device: torch.device | str | None = None) -> None:
        """Create whatever the weighting keeps per term name, before the optimiser is built.

        Weightings with a trained parameter per term (uncertainty's log-variances, GradNorm's
        weights) create it here, so that it is in ``parameters()`` when the optimiser is built;
        otherwise it would appear on the first step, too late to be optimised.  The others need
        nothing (the default does nothing).
        """

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

    name = "equal"
    batch_independent_weights = True
    is_plain_sum = True

    def combine(self, losses):
        return torch.stack(list(losses.values())).sum(), {name: 1.0 for name in losses}


class StaticWeighting(LossWeighting):
    """Fixed weight per term: ``Σ_k w_k L_k`` (the hand-tuned baseline).

    Every term must have a weight; a missing or unknown name is an error, so a
    typo in a config cannot silently fall back to weight 1.  No default: the
    weights are the experiment's choice.
    """

    name = "static"
    batch_independent_weights = True

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
