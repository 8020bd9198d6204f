"""Multi-task architectures with one interface (see :mod:`mtl.architectures.base`).

* hard parameter sharing: :class:`mtl.model.MultiTaskModel`
  (:func:`hard_parameter_sharing` builds it from a backbone factory);
* :class:`MMoE`: multi-gate mixture-of-experts (Ma et al., KDD 2018);
* :class:`CrossStitch`: cross-stitch networks (Misra et al., CVPR 2016);
* :class:`MTAN`: multi-task attention network (Liu et al., CVPR 2019).

Each takes a *backbone factory* (a zero-argument callable returning a fresh
backbone from :mod:`mtl.backbones` or any module with ``out_features``, and
``stages()`` for cross-stitch and MTAN) and the task specs.  ``ARCHITECTURES``
maps the config names to the classes, each built with its classmethod
``build(backbone_factory, tasks, input_shape, **options)``.  Each class
registers itself (it sets ``name``; see :mod:`.base`) and this package imports
every module in it, so a new architecture is one new file here; the imports
below only re-export the existing ones (in the order ``mtlda list`` shows).
"""
from .._registry import import_modules
from .base import ARCHITECTURES, MultiTaskArchitecture
from .hps import hard_parameter_sharing
from .mmoe import MMoE
from .cross_stitch import CrossStitch, CrossStitchUnit
from .mtan import MTAN, AttentionMask

import_modules(__name__, __path__)

__all__ = [
    "ARCHITECTURES",
    "AttentionMask",
    "CrossStitch",
    "CrossStitchUnit",
    "MMoE",
    "MTAN",
    "MultiTaskArchitecture",
    "hard_parameter_sharing",
]
