"""DANN."""
from __future__ import annotations

from collections.abc import Sequence

from ..discriminator import DomainDiscriminator
from ..losses.adversarial import DomainAdversarialLoss
from ..schedules import SCHEDULES, ramp_input
from .base import AdaptationMethod


class DANN(AdaptationMethod):
    """Domain-adversarial training with gradient reversal (Ganin et al. 2016).

    Domain-adversarial neural network: Ganin et al., "Domain-Adversarial
    Training of Neural Networks", JMLR 2016 (and Ganin & Lempitsky, ICML 2015).

    Adds the term ``domain``: a discriminator on gradient-reversed features.
    The reversal coefficient follows ``schedule`` (default the paper's ramp
    λ(p) = 2/(1+exp(−10p)) − 1) scaled by ``max_coefficient``; ``trade_off``
    multiplies the term itself (paper: 1).  ``ramp_steps`` makes the ramp run
    over that many absolute steps instead of the whole run (TLLib's warm-start
    GRL is ``ramp_steps=10000``; see :func:`adapt.schedules.ramp_input`).  Paper defaults for digits: one
    hidden layer of 100 units; Transfer-Learning-Library uses 2×1024 with BN.
    """

    name = "dann"
    derived_arguments = ("feature_dim",)
    term_names = ("domain",)
    reads_logits = False

    def __init__(
        self,
        feature_dim: int,
        hidden_sizes: Sequence[int] = (1024, 1024),
        batch_norm: bool = True,
        trade_off: float = 1.0,
        schedule: str = "dann",
        max_coefficient: float = 1.0,
        ramp_steps: int | None = None,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)}")
        self.adversarial = DomainAdversarialLoss(DomainDiscriminator(feature_dim, hidden_sizes, batch_norm))
        self.trade_off = float(trade_off)
        self.schedule = SCHEDULES[schedule]
        self.max_coefficient = float(max_coefficient)
        ramp_input(0.0, 0, ramp_steps)  # validate early
        self.ramp_steps = ramp_steps

    def alignment_terms(self, *, source_features, target_features, progress, step=0, **_):
        ramp = ramp_input(progress, step, self.ramp_steps)
        self.adversarial.coefficient = self.max_coefficient * self.schedule(ramp)
        return {"domain": self.trade_off * self.adversarial(source_features, target_features)}

    def diagnostics(self):
        out = {"dann/grl_coefficient": self.adversarial.coefficient}
        if self.adversarial.domain_accuracy is not None:
            out["dann/domain_accuracy"] = float(self.adversarial.domain_accuracy)
        return out
