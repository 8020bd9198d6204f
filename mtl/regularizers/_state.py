"""A frozen copy of named tensors (a starting point), kept as buffers so it moves and checkpoints with its module."""
from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn


class NamedBuffers(nn.Module):
    """``{name: tensor}`` stored as buffers ``t0, t1, …`` (dotted names cannot be buffer names);
    :meth:`items` gives the names back in the original order."""

    def __init__(self, tensors: Mapping[str, Tensor]):
        super().__init__()
        self.names = list(tensors)
        for i, value in enumerate(tensors.values()):
            self.register_buffer(f"t{i}", value.detach().clone())

    def items(self) -> list[tuple[str, Tensor]]:
        return [(name, getattr(self, f"t{i}")) for i, name in enumerate(self.names)]

    def as_dict(self) -> dict[str, Tensor]:
        return dict(self.items())


def check_same_names(given: Mapping[str, Tensor], expected: list[str], what: str) -> None:
    missing = [n for n in expected if n not in given]
    unexpected = [n for n in given if n not in set(expected)]
    if missing or unexpected:
        raise ValueError(
            f"{what}: the parameters do not match the starting point; missing: {missing or 'none'}, "
            f"not in the starting point: {unexpected or 'none'}"
        )


def half_squared_norm(parameters) -> Tensor | float:
    """``½ Σ ||p||²`` over ``parameters`` (0.0 when there are none)."""
    total: Tensor | float = 0.0
    for p in parameters:
        total = total + 0.5 * p.pow(2).sum()
    return total
