"""Batch Nuclear-norm Maximization (BNM)."""
from __future__ import annotations

from ..losses.bnm import batch_nuclear_norm_loss
from .base import AdaptationMethod


class BNM(AdaptationMethod):
    """Cui, Wang, Zhuo, Li, Huang & Tian, "Towards Discriminability and Diversity:
    Batch Nuclear-norm Maximization under Label Insufficient Situations",
    CVPR 2020.

    Adds the term ``bnm``: ``trade_off · (−‖softmax(target_logits)‖_* / B)``.
    Maximising the nuclear norm of the target prediction matrix raises both
    prediction confidence and the number of distinct predicted classes.  No
    extra networks.  Paper default for unsupervised DA: λ = 1, target batch
    only, no ramp.
    """

    term_names = ("bnm",)

    def __init__(self, trade_off: float = 1.0):
        super().__init__()
        self.trade_off = float(trade_off)

    def alignment_terms(self, *, target_logits, **_):
        # float32: the SVD has no bfloat16 kernel and would be imprecise in it anyway
        return {"bnm": self.trade_off * batch_nuclear_norm_loss(target_logits.float())}
