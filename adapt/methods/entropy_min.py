"""Entropy minimisation on target predictions."""
from __future__ import annotations

from ..losses._precision import at_least_float32
from ..losses.entropy import entropy
from .base import AdaptationMethod


class EntropyMinimization(AdaptationMethod):
    """Minimise the entropy of target predictions (Grandvalet & Bengio 2004).

    Grandvalet & Bengio, "Semi-supervised Learning by Entropy Minimization",
    NeurIPS 2004.

    Adds the term ``entropy``: ``trade_off · 1/B Σ_i H(softmax(target_logits_i))``
    (nats).  Confident target predictions push the decision boundary away from
    dense regions of unlabelled target data.  No extra networks.

    The paper selects the weight λ by cross-validation and has no universal
    default; ``trade_off=1.0`` weighs it like the task loss, as SHOT (Liang et
    al., ICML 2020) does for its entropy term.
    """

    name = "entropy_min"
    term_names = ("entropy",)

    def __init__(self, trade_off: float = 1.0):
        super().__init__()
        self.trade_off = float(trade_off)

    def alignment_terms(self, *, target_logits, **_):
        # float32: under bfloat16 autocast the log-softmax would lose most of its precision
        return {"entropy": self.trade_off * entropy(at_least_float32(target_logits))}
