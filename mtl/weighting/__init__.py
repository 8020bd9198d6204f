"""Weighting strategies: every one turns named loss terms into gradients."""
from .base import EqualWeighting, LossWeighting, StaticWeighting, Weighting
from .db_mtl import DBMTL
from .dwa import DWA
from .famo import FAMO
from .gls import GeometricLoss
from .gradient import GradientAggregation, term_jacobian
from .gradnorm import GradNorm
from .rlw import RLW
from .uncertainty import UncertaintyWeighting

__all__ = [
    "Weighting",
    "LossWeighting",
    "EqualWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "DWA",
    "RLW",
    "GeometricLoss",
    "FAMO",
    "GradNorm",
    "DBMTL",
    "GradientAggregation",
    "term_jacobian",
]
