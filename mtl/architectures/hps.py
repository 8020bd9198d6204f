"""Hard parameter sharing (Caruana, "Multitask Learning", Machine Learning 28, 1997).

The architecture itself is :class:`mtl.model.MultiTaskModel`, registered as
``hps``; its :meth:`~mtl.model.MultiTaskModel.build`, the factory signature
the other architectures share, is here under its own name.
"""
from __future__ import annotations

from ..model import MultiTaskModel

hard_parameter_sharing = MultiTaskModel.build
