"""Gradient-level aggregators: Jacobian ``J`` (K, d) → update direction (d,).

``direction = aggregator(J)`` is a descent direction to be written into
``.grad`` (equal weighting gives ``J.sum(0)``).  See :mod:`.base` for the
conventions shared by all of them; each module documents its paper, update
rule and solver.

``AGGREGATORS`` maps short lower-case names to classes.
"""
from __future__ import annotations

from .aligned_mtl import AlignedMTL
from .base import TARGETS, Aggregator, WeightedAggregator
from .cagrad import CAGrad
from .graddrop import GradDrop
from .gradvac import GradVac
from .imtl import IMTLG
from .mean import MeanAggregator, SumAggregator
from .mgda import MGDA
from .nash_mtl import NashMTL
from .pcgrad import PCGrad
from .upgrad import UPGrad

AGGREGATORS: dict[str, type[Aggregator]] = {
    "mgda": MGDA,
    "pcgrad": PCGrad,
    "graddrop": GradDrop,
    "gradvac": GradVac,
    "cagrad": CAGrad,
    "imtl_g": IMTLG,
    "nash_mtl": NashMTL,
    "aligned_mtl": AlignedMTL,
    "upgrad": UPGrad,
    "sum": SumAggregator,
    "mean": MeanAggregator,
}

__all__ = [
    "AGGREGATORS",
    "TARGETS",
    "Aggregator",
    "WeightedAggregator",
    "AlignedMTL",
    "CAGrad",
    "GradDrop",
    "GradVac",
    "IMTLG",
    "MeanAggregator",
    "MGDA",
    "NashMTL",
    "PCGrad",
    "SumAggregator",
    "UPGrad",
]
