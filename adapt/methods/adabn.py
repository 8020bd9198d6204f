"""Adaptive batch normalisation (AdaBN)."""
from __future__ import annotations

from .base import AdaptationMethod


class AdaBN(AdaptationMethod):
    """Source-only training, target batch-norm statistics at test (Li et al. 2016).

    Li, Wang, Shi, Liu & Hou, "Revisiting Batch Normalization For Practical
    Domain Adaptation", ICLR 2017 workshop (arXiv 2016); Pattern Recognition
    80, 2018, as "Adaptive Batch Normalization for practical domain adaptation".

    No training terms and no extra networks: the model trains on the source as
    in source-only training.  Before evaluating on the target, the harness
    re-estimates every batch-norm layer's statistics on unlabelled target
    training data with :func:`adapt.adabn.adapt_batchnorm_statistics`, which
    the flag ``adapts_batchnorm_for_target`` requests.  The method is
    parameter-free (the paper's point); it needs a backbone with batch norm
    (it changes nothing for one without).
    """

    name = "adabn"
    adapts_batchnorm_for_target = True
    uses_target_in_training = False
    reads_logits = False

    def alignment_terms(self, **_):
        return {}
