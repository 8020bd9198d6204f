"""Gradient-level aggregators: Jacobian ``J`` (K, d) → update direction (d,).

``direction = aggregator(J)`` is a descent direction to be written into
``.grad`` (equal weighting gives ``J.sum(0)``).  See :mod:`.base` for the
conventions shared by all of them; each module documents its paper, update
rule and solver.

``AGGREGATORS`` maps short lower-case names to classes.  Each class registers
itself (it sets ``name``; see :mod:`.base`) and this package imports every
module in it, so a new aggregator is one new file here.
"""
from __future__ import annotations

from .._registry import import_modules
from .base import AGGREGATORS, TARGETS, Aggregator, WeightedAggregator

# re-exports, in the order the registry lists them
from .mgda import MGDA
from .pcgrad import PCGrad
from .graddrop import GradDrop
from .gradvac import GradVac
from .cagrad import CAGrad
from .imtl import IMTLG
from .nash_mtl import NashMTL
from .aligned_mtl import AlignedMTL
from .upgrad import UPGrad
from .mean import MeanAggregator, SumAggregator

import_modules(__name__, __path__)

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
