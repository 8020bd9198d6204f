"""Domain adaptation: gradient reversal, discriminators, alignment losses and methods.

Plain PyTorch pieces with no knowledge of the benchmark harness.
"""
from .discriminator import DomainDiscriminator
from .grl import GradientReversal, reverse_gradient
from .losses.adversarial import DomainAdversarialLoss
from .losses.coral import coral_loss
from .methods import DANN, AdaptationMethod, DeepCORAL, SourceOnly
from .schedules import SCHEDULES, dann_ramp, linear_ramp

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
    "SCHEDULES",
    "dann_ramp",
    "linear_ramp",
]
