"""Fine-tuning regularisers as loss terms: keep a fine-tuned network close to where it started.

* :class:`L2SP`: L2 penalty towards the pretrained weights (Li et al., ICML 2018).
* :class:`BatchSpectralShrinkage`: penalise the smallest singular values of the
  batch features (Chen et al., NeurIPS 2019).
* :class:`DELTA`: feature-map distance to the pretrained network with channel
  attention (Li et al., ICLR 2019).

Each returns a scalar term, so any weighting can balance it with the task
losses.  ``reads`` on each class names what it needs (parameters, features,
the network and its input images).

``REGULARIZERS`` maps the config names to the classes.  Each class registers
itself (it sets ``name``; see :mod:`.base`) and this package imports every
module in it, so a new regulariser is one new file here; the imports below
only re-export the existing ones (in the order ``mtlda list`` shows).
"""
from .._registry import import_modules
from .base import REGULARIZERS, Regularizer
from .l2_sp import L2SP, l2_sp_penalty
from .bss import BatchSpectralShrinkage, batch_spectral_shrinkage
from .delta import DELTA, attention_weights, default_feature_layers, feature_map_distance

import_modules(__name__, __path__)

__all__ = [
    "REGULARIZERS",
    "Regularizer",
    "L2SP",
    "l2_sp_penalty",
    "BatchSpectralShrinkage",
    "batch_spectral_shrinkage",
    "DELTA",
    "attention_weights",
    "default_feature_layers",
    "feature_map_distance",
]
