"""Information maximisation on target predictions."""
from __future__ import annotations

from ..losses._precision import at_least_float32
from ..losses.entropy import information_maximization
from .base import AdaptationMethod


class InformationMaximization(AdaptationMethod):
    """Information maximisation on target predictions (Gomes et al. 2010; SHOT, Liang et al. 2020).

    Regularised information maximisation: Gomes, Krause & Perona,
    "Discriminative Clustering by Regularized Information Maximization",
    NeurIPS 2010; used for domain adaptation by Liang, Hu & Feng, "Do We Really
    Need to Access the Source Data? Source Hypothesis Transfer for Unsupervised
    Domain Adaptation" (SHOT), ICML 2020.

    Adds the term ``im``: ``trade_off · [mean_i H(p_i) − diversity_weight · H(p̄)]``
    on the target batch, ``p = softmax(target_logits)``, ``p̄`` their batch mean.
    The first part makes each prediction confident, the second keeps the batch
    spread over classes so that it cannot collapse onto one class.  No extra
    networks.  SHOT's defaults: both parts weighted 1 (``trade_off=1``,
    ``diversity_weight=1``).  (SHOT's pseudo-label term and its source-free
    protocol are not part of this method: here the source loss stays.)
    """

    name = "info_max"
    term_names = ("im",)

    def __init__(self, trade_off: float = 1.0, diversity_weight: float = 1.0):
        super().__init__()
        self.trade_off = float(trade_off)
        self.diversity_weight = float(diversity_weight)

    def alignment_terms(self, *, target_logits, **_):
        # float32: log-space entropies lose most of their precision in bfloat16
        loss = information_maximization(at_least_float32(target_logits), diversity_weight=self.diversity_weight)
        return {"im": self.trade_off * loss}
