"""Deep CORAL."""
from __future__ import annotations

from ..losses.coral import coral_loss
from .base import AdaptationMethod


class DeepCORAL(AdaptationMethod):
    """Deep CORAL: align the second-order statistics of the two domains (Sun & Saenko 2016).

    Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain
    Adaptation", ECCV 2016 workshops.

    Adds the term ``coral``: ``trade_off · ‖C_S − C_T‖²_F / (4d²)``.  The paper
    aligns the last layer (the logits, ``layer="logits"``) and picks the
    trade-off so that classification and CORAL losses are of the same order at
    the end of training; ``layer="features"`` aligns the backbone output
    instead (as Transfer-Learning-Library does).  Defaults:
    ``layer="logits"`` (the paper's) and ``trade_off=1``.
    """

    name = "coral"
    term_names = ("coral",)
    features_only_with = (("layer", "features"),)

    def __init__(self, trade_off: float = 1.0, layer: str = "logits"):
        super().__init__()
        if layer not in ("logits", "features"):
            raise ValueError(f"DeepCORAL layer must be 'logits' or 'features', got {layer!r}")
        self.trade_off = float(trade_off)
        self.layer = layer
        self.reads_logits = layer == "logits"

    def alignment_terms(self, *, source_features, target_features, source_logits, target_logits, **_):
        if self.layer == "logits":
            return {"coral": self.trade_off * coral_loss(source_logits, target_logits)}
        return {"coral": self.trade_off * coral_loss(source_features, target_features)}
