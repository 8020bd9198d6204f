"""Domain-adaptation methods: each adds named loss terms to the task loss."""
from .base import AdaptationMethod, SourceOnly
from .coral import DeepCORAL
from .dann import DANN

__all__ = ["AdaptationMethod", "SourceOnly", "DANN", "DeepCORAL"]
