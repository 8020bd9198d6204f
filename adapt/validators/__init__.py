"""Model-selection validators for unsupervised domain adaptation.

Every validator returns a float where **higher is better**; those that
estimate a risk return its negative.  Only :class:`TargetOracle`
(``is_oracle = True``) reads target labels.

=================== ======================= ===========================================
registry name       class                   reads
=================== ======================= ===========================================
``source_accuracy`` :class:`SourceAccuracy` source val logits + labels
``entropy``         :class:`Entropy`        target logits
``im``              :class:`InfoMax`        target logits
``snd``             :class:`SND`            target logits
``bnm``             :class:`BNMScore`       target logits
``dev``             :class:`DEV`            source val logits, labels, features; target features
``oracle``          :class:`TargetOracle`   target logits + **target labels**
=================== ======================= ===========================================

``VALIDATORS`` maps those names to the classes.  Each class registers itself
(it sets ``name``; see :mod:`.base`) and this package imports every module in
it, so a new validator is one new file here; the imports below only re-export
the existing classes (in the order ``mtlda list`` shows them).
"""
from .._registry import import_modules
from .base import (
    DATA_KEYS,
    SOURCE_VAL_FEATURES,
    SOURCE_VAL_LABELS,
    SOURCE_VAL_LOGITS,
    TARGET_TRAIN_FEATURES,
    TARGET_TRAIN_LABELS,
    TARGET_TRAIN_LOGITS,
    VALIDATORS,
    Validator,
)
from .source_accuracy import SourceAccuracy
from .entropy import Entropy
from .info_max import InfoMax
from .snd import SND
from .bnm import BNMScore
from .dev import DEV, dev_risk
from .oracle import TargetOracle

import_modules(__name__, __path__)


def build_validator(name: str) -> Validator:
    """A validator by registry name (unknown names list the valid ones)."""
    try:
        return VALIDATORS[name]()
    except KeyError:
        raise KeyError(f"unknown validator {name!r}; available: {', '.join(VALIDATORS)}") from None


__all__ = [
    "Validator",
    "VALIDATORS",
    "build_validator",
    "SourceAccuracy",
    "Entropy",
    "InfoMax",
    "SND",
    "BNMScore",
    "DEV",
    "dev_risk",
    "TargetOracle",
    "DATA_KEYS",
    "SOURCE_VAL_LOGITS",
    "SOURCE_VAL_LABELS",
    "SOURCE_VAL_FEATURES",
    "TARGET_TRAIN_LOGITS",
    "TARGET_TRAIN_FEATURES",
    "TARGET_TRAIN_LABELS",
]
