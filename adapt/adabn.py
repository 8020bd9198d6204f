"""Adaptive batch normalisation: re-estimate batch-norm statistics on another domain.

Li, Wang, Shi, Liu & Hou, "Revisiting Batch Normalization For Practical Domain
Adaptation", ICLR 2017 workshop track (arXiv:1603.04779, 2016); journal version
"Adaptive Batch Normalization for practical domain adaptation", Pattern
Recognition 80, 2018.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def adapt_batchnorm_statistics(model: nn.Module, batches: Iterable[Tensor]) -> nn.Module:
    """Replace the running mean/variance of every batch-norm layer of ``model``
    by estimates on ``batches`` (for AdaBN: unlabelled, preprocessed target
    images on the model's device); returns ``model``, modified in place.

    Each layer's running statistics are reset and re-estimated by cumulative
    averaging (``momentum=None``): the running mean becomes the average over the
    batches of the per-batch means, and likewise for the (unbiased) variances,
    so use batches of equal size for the exact mean over all examples.  During
    the pass only the batch-norm layers are in train mode: dropout stays off so
    that later layers see the same activations as at inference.  Batch-norm
    layers normalise with the current batch's statistics, as in training.
    Nothing else changes: no parameter, no other buffer, and afterwards each
    layer's momentum and every module's train/eval mode are as before.  Layers
    built with ``track_running_stats=False`` keep using batch statistics and are
    left alone.  The caller keeps a copy of the source statistics if it still
    needs them (``model.state_dict()`` before the call).
    """
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        # checked before resetting anything: zero batches would leave mean 0 / variance 1 behind
        raise ValueError("adapt_batchnorm_statistics needs at least one batch")
    modes = {module: module.training for module in model.modules()}
    momenta = {layer: layer.momentum for layer in layers}
    try:
        model.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # cumulative moving average over all batches seen
            layer.train()
        model(first)
        for batch in batches:
            model(batch)
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        for module, training in modes.items():
            module.training = training
    return model
