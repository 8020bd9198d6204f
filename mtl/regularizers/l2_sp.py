"""L2-SP: an L2 penalty towards the starting point of fine-tuning.

Xuhong Li, Yves Grandvalet, Franck Davoine. "Explicit Inductive Bias for
Transfer Learning with Convolutional Networks". ICML 2018.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor

from ._state import NamedBuffers, check_same_names, half_squared_norm
from .base import Regularizer

__all__ = ["L2SP", "l2_sp_penalty"]


def l2_sp_penalty(parameters: Mapping[str, Tensor], starting_point: Mapping[str, Tensor]) -> Tensor:
    """``½ Σ ||w − w⁰||²`` over the named parameters (the names must match exactly)."""
    check_same_names(parameters, list(starting_point), "l2_sp_penalty")
    total = None
    for name, reference in starting_point.items():
        value = parameters[name]
        diff = value - reference.to(dtype=value.dtype, device=value.device)
        term = 0.5 * diff.pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("l2_sp_penalty: no parameters")
    return total


class L2SP(Regularizer):
    """L2 penalty towards the pretrained weights, weight decay on the heads (Li et al. 2018).

    ``Ω(w) = α/2 ||w_S − w⁰_S||² + β/2 ||w_S̄||²`` (Li et al. 2018, "L2-SP").

    ``w_S`` are the parameters that have a pretrained value ``w⁰_S`` (the
    backbone), ``w_S̄`` the new ones (task heads), which get a plain weight
    decay.  The gradient is ``α (w − w⁰)`` on the pretrained parameters and
    ``β w`` on the new ones; ``Ω`` is 0 at the starting point when there are no
    new parameters.  (Written without the ½, ``α′ ||w − w⁰||²`` with ``α′ = α/2``
    has gradient ``2α′ (w − w⁰)``: the same penalty.)

    Defaults ``α = β = 0.01``: the values of the DELTA authors' reference
    implementation (github.com/lixingjian/DELTA, ``train.py``,
    ``--reg_type l2_sp``), who compare with L2-SP; the L2-SP paper chooses α and
    β per target task by cross-validation.  As in that implementation, plain
    weight decay on the backbone should be off (``optim.weight_decay=0``): L2-SP
    replaces it.

    The starting point is copied into buffers when the module is built, so it
    moves with ``.to()`` and is saved in checkpoints.  Call it with the current
    values of the same named parameters (``dict(backbone.named_parameters())``)
    and the new parameters.
    """

    name = "l2_sp"
    derived_arguments = ("starting_point",)
    reads = ("pretrained_parameters", "new_parameters")

    def __init__(self, starting_point: Mapping[str, Tensor], alpha: float = 0.01, beta: float = 0.01):
        super().__init__()
        if not starting_point:
            raise ValueError("L2SP needs the pretrained parameters' starting values")
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be non-negative, not {alpha} and {beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.starting_point = NamedBuffers(starting_point)

    def forward(self, pretrained_parameters: Mapping[str, Tensor], new_parameters: Iterable[Tensor] = ()) -> Tensor:
        penalty = self.alpha * l2_sp_penalty(pretrained_parameters, self.starting_point.as_dict())
        new = list(new_parameters)
        if new and self.beta:
            penalty = penalty + self.beta * half_squared_norm(new)
        return penalty

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, parameters={len(self.starting_point.names)}"
