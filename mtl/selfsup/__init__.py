"""Self-supervised objectives as loss terms, with their augmentations done on the device.

* :class:`RotationPrediction`: predict the rotation (0°, 90°, 180°, 270°) of each
  image (Gidaris et al., ICLR 2018).
* :class:`ContrastiveLearning`: SimCLR's two augmented views and NT-Xent loss
  (Chen et al., ICML 2020).

An objective is called as ``objective(images, encoder)`` on an unlabelled batch
in ``[0, 1]`` and returns a scalar loss, so it can pretrain a backbone alone or
be one more named loss term next to task and domain-alignment losses (rotation
prediction on source and target images during domain adaptation).
:mod:`mtl.selfsup.augment` holds the batched augmentations.

``OBJECTIVES`` maps the config names to the classes.  Each class registers
itself (it sets ``name``; see :mod:`.base`) and this package imports every
module in it, so a new objective is one new file here.
"""
from .._registry import import_modules
from .augment import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    grayscale,
    hsv_to_rgb,
    random_crop_boxes,
    random_grayscale,
    random_horizontal_flip,
    random_resized_crop,
    resized_crop,
    rgb_to_hsv,
    rotate_batch,
)
from .base import OBJECTIVES, Encoder, SelfSupervisedObjective
from .rotation import RotationPrediction
from .contrastive import ContrastiveLearning, SimCLRAugmentation, nt_xent_logits, nt_xent_loss

import_modules(__name__, __path__)

__all__ = [
    "OBJECTIVES",
    "Encoder",
    "SelfSupervisedObjective",
    "RotationPrediction",
    "ContrastiveLearning",
    "SimCLRAugmentation",
    "nt_xent_logits",
    "nt_xent_loss",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "color_jitter",
    "grayscale",
    "hsv_to_rgb",
    "random_crop_boxes",
    "random_grayscale",
    "random_horizontal_flip",
    "random_resized_crop",
    "resized_crop",
    "rgb_to_hsv",
    "rotate_batch",
]
