"""Stepwise Adaptive Feature Norm (SAFN)."""
from __future__ import annotations

from ..losses._precision import at_least_float32
from ..losses.afn import stepwise_feature_norm_loss
from ..losses.entropy import entropy
from .base import AdaptationMethod


class AFN(AdaptationMethod):
    """Stepwise adaptive feature norm: enlarge the feature norms (Xu et al. 2019).

    Xu, Li, Yang & Lin, "Larger Norm More Transferable: An Adaptive Feature
    Norm Approach for Unsupervised Domain Adaptation", ICCV 2019 (the stepwise
    variant, SAFN).

    Adds the term ``afn``: ``trade_off · [L(source_features) + L(target_features)]``
    with ``L(h) = mean_i (‖h_i‖.detach() + Δr − ‖h_i‖)²``.  Its value is the
    constant ``2 · trade_off · Δr²``; its gradient enlarges every example's
    feature norm by about Δr per step, which the paper finds makes target
    features more transferable.  No extra networks.

    Paper defaults: λ = 0.05, Δr = 1.0.  The paper takes the features after an
    FC-BN-ReLU-Dropout bottleneck and relies on weight decay (5e-4) to keep the
    norms in check.  Here the features are whatever the model's backbone
    outputs, so give AFN that bottleneck: ``model.bottleneck_dim=256
    model.bottleneck_dropout=0.5`` (:class:`mtl.WithBottleneck`).  Without a
    batch norm on top, the norm-enlarging gradient feeds back through every
    layer: straight on LeNet's features with SGD (lr 0.01, momentum 0.9) the
    activations grew geometrically and MNIST→USPS training collapsed to chance
    (8.3% target accuracy after 1000 steps; ``tests/test_bottleneck.py`` shows
    the growth).

    ``entropy_trade_off > 0`` adds the term ``entropy``: ``entropy_trade_off ·
    mean_i H(softmax(target_logits_i))``, the entropy minimisation that the
    paper combines with SAFN ("SAFN+ENT") and Transfer-Learning-Library's
    ``afn.py --trade-off-entropy`` adds (0.03 in its digits scripts).  The
    method then reads the classifier's logits.  Default 0: no such term.
    """

    name = "afn"
    term_names = ("afn",)
    reads_logits = False
    features_only_with = (("entropy_trade_off", 0.0),)

    def __init__(self, trade_off: float = 0.05, delta: float = 1.0, entropy_trade_off: float = 0.0):
        super().__init__()
        if entropy_trade_off < 0:
            raise ValueError(f"AFN entropy_trade_off must be non-negative, got {entropy_trade_off}")
        self.trade_off = float(trade_off)
        self.delta = float(delta)
        self.entropy_trade_off = float(entropy_trade_off)
        if self.entropy_trade_off > 0:
            self.term_names = ("afn", "entropy")
            self.reads_logits = True

    def alignment_terms(self, *, source_features, target_features, target_logits=None, **_):
        # the two domains are enlarged separately, as in the authors' code
        loss = stepwise_feature_norm_loss(source_features, self.delta) + stepwise_feature_norm_loss(
            target_features, self.delta
        )
        terms = {"afn": self.trade_off * loss}
        if self.entropy_trade_off > 0:
            # float32: log-space entropies lose most of their precision in bfloat16
            terms["entropy"] = self.entropy_trade_off * entropy(at_least_float32(target_logits))
        return terms
