"""Minimum Class Confusion (MCC)."""
from __future__ import annotations

from ..losses._precision import at_least_float32
from ..losses.mcc import minimum_class_confusion_loss
from .base import AdaptationMethod


class MCC(AdaptationMethod):
    """Minimum class confusion on target predictions (Jin et al. 2020).

    Jin, Wang, Long & Wang, "Minimum Class Confusion for Versatile Domain
    Adaptation", ECCV 2020.

    Adds the term ``mcc``: ``trade_off ·`` the mean between-class confusion of
    the temperature-scaled, uncertainty-reweighted target predictions.  No
    extra networks.  Paper defaults: temperature T = 2.5 and weight μ = 1,
    constant over training.
    """

    name = "mcc"
    term_names = ("mcc",)

    def __init__(self, trade_off: float = 1.0, temperature: float = 2.5):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"MCC temperature must be positive, got {temperature}")
        self.trade_off = float(trade_off)
        self.temperature = float(temperature)

    def alignment_terms(self, *, target_logits, **_):
        # float32: the row normalisation of the confusion matrix is imprecise in bfloat16
        loss = minimum_class_confusion_loss(at_least_float32(target_logits), temperature=self.temperature)
        return {"mcc": self.trade_off * loss}
