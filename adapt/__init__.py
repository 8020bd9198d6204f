"""Domain adaptation: gradient reversal, discriminators, alignment losses and methods.

Plain PyTorch pieces with no knowledge of the benchmark harness.
"""
from .discriminator import DomainDiscriminator
from .grl import GradientReversal, reverse_gradient
from .losses.adversarial import DomainAdversarialLoss
from .losses.coral import coral_loss
from .adabn import adapt_batchnorm_statistics
from .methods import (
    AFN,
    BNM,
    BSP,
    CDAN,
    CDANE,
    DAN,
    DANN,
    JAN,
    MCC,
    MCD,
    AdaBN,
    AdaptationMethod,
    DeepCORAL,
    EntropyMinimization,
    InformationMaximization,
    SourceOnly,
)
from .schedules import SCHEDULES, dann_ramp, linear_ramp
from .validators import DEV, SND, VALIDATORS, BNMScore, Entropy, InfoMax, SourceAccuracy, TargetOracle, Validator

__all__ = [
    "GradientReversal",
    "reverse_gradient",
    "DomainDiscriminator",
    "DomainAdversarialLoss",
    "coral_loss",
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
    "adapt_batchnorm_statistics",
    "SCHEDULES",
    "dann_ramp",
    "linear_ramp",
    "Validator",
    "VALIDATORS",
    "SourceAccuracy",
    "Entropy",
    "InfoMax",
    "SND",
    "BNMScore",
    "DEV",
    "TargetOracle",
]
