"""Base classes for gradient-level aggregators.

An aggregator maps the Jacobian ``J`` of shape ``(K, d)`` -- row ``k`` is the
gradient of loss term ``k`` with respect to the shared parameters (flattened)
or the shared representation -- to one update direction of shape ``(d,)``.
The direction is a *descent* direction written into ``.grad``: the optimiser
subtracts it, so equal weighting returns ``J.sum(0)``.

Conventions shared by every aggregator in this package
------------------------------------------------------
* ``forward(J)`` validates its input: ``J`` must be a 2-D floating-point
  tensor with at least one row and only finite entries, otherwise a
  ``ValueError`` naming the aggregator and the problem is raised.
* The output has the dtype and device of ``J``.
* ``last_weights`` holds the implied per-row weights ``w`` of the last call
  (``direction = w @ J``) where the method has them, else ``None``.
* ``reset()`` returns the aggregator to the state right after construction
  (EMA statistics, step counters, random generators re-seeded); it is a no-op
  apart from clearing ``last_weights`` for stateless methods.
* State that matters for resuming training (random generator states, running
  statistics) is returned by ``get_extra_state`` and therefore saved and
  restored by ``state_dict()`` / ``load_state_dict()``.
* ``default_target`` is what the method's paper differentiates
  (``"parameters"`` or ``"representation"``); ``supports_representation`` is
  False where the method is only meaningful on parameter gradients (each
  subclass justifies its choice next to the attribute).

Methods whose output is ``wᵀ J`` with ``w`` a function of the Gram matrix
``J Jᵀ`` derive from :class:`WeightedAggregator` and implement
``_weights(gram)``; they can then also be driven by a Gram matrix alone via
:meth:`WeightedAggregator.weights`.  The small ``K × K`` problems are solved
on the CPU in float64 whatever the device and dtype of ``J`` (one ``K × K``
transfer per step; the iterative solvers would otherwise launch one tiny
kernel per iteration).
"""
from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from .._registry import register

TARGETS = ("parameters", "representation")

# dtype and device of every K x K solve
SOLVE_DTYPE = torch.float64
SOLVE_DEVICE = torch.device("cpu")


#: short lower-case name → aggregator class, filled by the classes themselves (those that set ``name``)
AGGREGATORS: dict[str, type["Aggregator"]] = {}


class Aggregator(nn.Module, abc.ABC):
    """Abstract gradient aggregator: ``forward(J: (K, d)) -> direction: (d,)``.

    A subclass that sets :attr:`name` registers itself in :data:`AGGREGATORS` (and so becomes a
    weighting too) when its module is imported; :mod:`mtl.aggregators` imports all of its modules.
    """

    #: the name configs use (``weighting.name``); a class that sets one is registered in :data:`AGGREGATORS`
    name: str = ""

    #: what the paper differentiates: "parameters" or "representation"
    default_target: str = "parameters"
    #: False where the method is only meaningful on parameter gradients
    supports_representation: bool = True
    #: True where the rows' weights are constants (the sum, the mean): the direction is then the
    #: gradient of a fixed combination of the losses, which a loss-level weighting computes without
    #: forming the Jacobian
    fixed_weights: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(AGGREGATORS, cls)

    def __init__(self) -> None:
        super().__init__()
        self.last_weights: Tensor | None = None

    @abc.abstractmethod
    def forward(self, jacobian: Tensor) -> Tensor:
        """Aggregate ``jacobian`` of shape (K, d) into a direction of shape (d,)."""

    def reset(self) -> None:
        """Return to the state right after construction (no-op for stateless methods)."""
        self.last_weights = None

    # ------------------------------------------------------------------ helpers
    @property
    def _name(self) -> str:
        return type(self).__name__

    def _check_jacobian(self, jacobian: Tensor) -> Tensor:
        """Validate the input Jacobian; return it unchanged."""
        if not isinstance(jacobian, Tensor):
            raise TypeError(f"{self._name}: expected a torch.Tensor Jacobian, got {type(jacobian).__name__}")
        if jacobian.ndim != 2:
            raise ValueError(
                f"{self._name}: expected a 2-D Jacobian of shape (K, d), got shape {tuple(jacobian.shape)}"
            )
        if jacobian.shape[0] == 0:
            raise ValueError(f"{self._name}: the Jacobian has no rows (K=0); need at least one loss term")
        if not jacobian.is_floating_point():
            raise ValueError(f"{self._name}: the Jacobian must be floating point, got dtype {jacobian.dtype}")
        finite = torch.isfinite(jacobian)
        if not bool(finite.all()):
            rows = (~finite).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(
                f"{self._name}: the Jacobian contains non-finite values (NaN or inf) in row(s) {rows}"
            )
        return jacobian

    def _check_gram(self, gram: Tensor) -> Tensor:
        """Validate a Gram matrix (K, K); return it unchanged."""
        if not isinstance(gram, Tensor):
            raise TypeError(f"{self._name}: expected a torch.Tensor Gram matrix, got {type(gram).__name__}")
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
            raise ValueError(
                f"{self._name}: expected a square non-empty Gram matrix (K, K), got shape {tuple(gram.shape)}"
            )
        if not gram.is_floating_point():
            raise ValueError(f"{self._name}: the Gram matrix must be floating point, got dtype {gram.dtype}")
        if not bool(torch.isfinite(gram).all()):
            raise ValueError(f"{self._name}: the Gram matrix contains non-finite values (NaN or inf)")
        return gram


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16/bfloat16 Jacobians are multiplied in float32 (the Gram needs the range)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


class WeightedAggregator(Aggregator):
    """Aggregator whose output is ``weightsᵀ J`` with weights computed from ``G = J Jᵀ``.

    Subclasses implement :meth:`_weights`, which receives the symmetrised Gram
    matrix as a float64 CPU tensor and returns float64 CPU weights of shape
    (K,).  :meth:`weights` is the public Gram-only entry point;
    :meth:`forward` forms the Gram matrix, stores the weights in
    ``last_weights`` and returns ``weights @ J``.
    """

    def forward(self, jacobian: Tensor) -> Tensor:
        jacobian = self._check_jacobian(jacobian)
        work = jacobian.to(_compute_dtype(jacobian.dtype))
        weights = self.weights(work @ work.T)
        self.last_weights = weights.detach()
        return (weights @ work).to(jacobian.dtype)

    def weights(self, gram: Tensor) -> Tensor:
        """Per-row weights (K,) from the Gram matrix ``J Jᵀ``, same dtype/device as ``gram``.

        Stateful methods (GradVac, Nash-MTL) advance their state here.
        """
        gram = self._check_gram(gram)
        weights = self._weights(self._solver_gram(gram))
        return weights.to(device=gram.device, dtype=gram.dtype)

    @abc.abstractmethod
    def _weights(self, gram: Tensor) -> Tensor:
        """Weights from a symmetric float64 CPU Gram matrix; float64 CPU result."""

    @staticmethod
    def _solver_gram(gram: Tensor) -> Tensor:
        g = gram.detach().to(device=SOLVE_DEVICE, dtype=SOLVE_DTYPE)
        return 0.5 * (g + g.T)


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator
