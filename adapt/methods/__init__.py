"""Domain-adaptation methods: each adds named loss terms to the task loss."""
from .adabn import AdaBN
from .afn import AFN
from .base import AdaptationMethod, SourceOnly
from .bnm import BNM
from .bsp import BSP
from .cdan import CDAN, CDANE
from .coral import DeepCORAL
from .dan import DAN
from .dann import DANN
from .entropy_min import EntropyMinimization
from .info_max import InformationMaximization
from .jan import JAN
from .mcc import MCC
from .mcd import MCD

__all__ = [
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
]
