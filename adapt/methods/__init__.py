"""Domain-adaptation methods: each adds named loss terms to the task loss.

``METHODS`` maps the config names (``method.name``) to the classes.  Each
class registers itself (it sets ``name``; see :mod:`.base`) and this package
imports every module in it, so a new method is one new file here: no line
below, and no list anywhere else, needs it.  The imports below only re-export
the existing classes (their order is the order ``mtlda list`` shows).
"""
from .._registry import import_modules
from .base import METHODS, AdaptationMethod, SourceOnly
from .dann import DANN
from .coral import DeepCORAL
from .cdan import CDAN, CDANE
from .dan import DAN
from .jan import JAN
from .mcc import MCC
from .bsp import BSP
from .afn import AFN
from .entropy_min import EntropyMinimization
from .info_max import InformationMaximization
from .bnm import BNM
from .adabn import AdaBN
from .mcd import MCD
from .cdan_per_task import CDANPerTask

import_modules(__name__, __path__)

__all__ = [
    "METHODS",
    "AdaptationMethod",
    "SourceOnly",
    "DANN",
    "DeepCORAL",
    "CDAN",
    "CDANE",
    "DAN",
    "JAN",
    "MCC",
    "BSP",
    "AFN",
    "EntropyMinimization",
    "InformationMaximization",
    "BNM",
    "AdaBN",
    "MCD",
    "CDANPerTask",
]
