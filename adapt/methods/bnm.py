"""Batch Nuclear-norm Maximization (BNM)."""
from __future__ import annotations

from ..losses._precision import at_least_float32
from ..losses.bnm import batch_nuclear_norm_loss
from .base import AdaptationMethod


class BNM(AdaptationMethod):
    """Batch nuclear-norm maximisation of target predictions (Cui et al. 2020).

    Cui, Wang, Zhuo, Li, Huang & Tian, "Towards Discriminability and Diversity:
    Batch Nuclear-norm Maximization under Label Insufficient Situations",
    CVPR 2020.

    Adds the term ``bnm``: ``trade_off · (−‖softmax(target_logits)‖_* / B)``.
    Maximising the nuclear norm of the target prediction matrix raises both
    prediction confidence and the number of distinct predicted classes.  No
    extra networks.  Paper default for unsupervised DA: λ = 1, target batch
    only, no ramp.

    ``normalization``: ``"batch"`` (default) divides the nuclear norm by the
    batch size B, as the paper writes the loss; ``"rank"`` divides it by
    min(B, C), the number of singular values, as the authors' code does
    (cuishuhao/BNM, ``DA/BNM/train_image.py``: ``-torch.mean(s_tgt)`` of
    ``torch.svd(softmax_tgt)``).  The two agree while B ≤ C; at B = 128 and C = 10
    the authors' term is 12.8 times the paper's, so λ = 1 means different things.
    """

    name = "bnm"
    term_names = ("bnm",)

    def __init__(self, trade_off: float = 1.0, normalization: str = "batch"):
        super().__init__()
        if normalization not in ("batch", "rank"):
            raise ValueError(f"BNM normalization must be 'batch' or 'rank', got {normalization!r}")
        self.trade_off = float(trade_off)
        self.normalization = normalization

    def alignment_terms(self, *, target_logits, **_):
        # float32: the SVD has no bfloat16 kernel and would be imprecise in it anyway
        loss = batch_nuclear_norm_loss(at_least_float32(target_logits))  # −‖A‖_* / B
        if self.normalization == "rank":
            batch, classes = target_logits.shape
            loss = loss * (batch / min(batch, classes))  # −‖A‖_* / min(B, C): the mean singular value
        return {"bnm": self.trade_off * loss}
