"""Weighting strategies: every one turns named loss terms into gradients.

``WEIGHTINGS`` maps the config names (``weighting.name``) to the classes.
Each class registers itself (it sets ``name``; see :mod:`.base`) and this
package imports every module in it, so a new weighting is one new file here:
no line below, and no list anywhere else, needs it.  The imports below only
re-export the existing classes (their order is the order ``mtlda list``
shows).  The gradient aggregators of :mod:`mtl.aggregators` become weightings
through :class:`GradientAggregation`.
"""
from .._registry import import_modules
from .base import WEIGHTINGS, EqualWeighting, LossWeighting, StaticWeighting, Weighting
from .uncertainty import UncertaintyWeighting
from .dwa import DWA
from .rlw import RLW
from .gradnorm import GradNorm
from .famo import FAMO
from .gls import GeometricLoss
from .db_mtl import DBMTL
from .gradient import GradientAggregation, term_jacobian

import_modules(__name__, __path__)

__all__ = [
    "WEIGHTINGS",
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
