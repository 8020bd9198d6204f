"""Weighting strategies: every one turns named loss terms into gradients."""
from .base import EqualWeighting, LossWeighting, StaticWeighting, Weighting
from .gradient import GradientAggregation, term_jacobian
from .uncertainty import UncertaintyWeighting

__all__ = [
    "Weighting",
    "LossWeighting",
    "EqualWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "GradientAggregation",
    "term_jacobian",
]
