"""The validator interface: an unsupervised (or, explicitly, oracle) model-selection score.

A validator looks at a trained model's outputs on fixed evaluation data and
returns one number, **higher is better**, so that every validator can drive
checkpoint selection with ``selection_mode: max``.  Validators that estimate a
risk or a loss return its negative.

Each validator declares in :attr:`Validator.requires` which named arrays it
reads; the caller computes only those.  Names:

``source_val_logits`` (N_s, C), ``source_val_labels`` (N_s,), ``source_val_features`` (N_s, D):
    the labelled source validation split (held out from source training);
``target_train_logits`` (N_t, C), ``target_train_features`` (N_t, D):
    the *unlabelled* target training split;
``target_train_labels`` (N_t,):
    target labels, read only by validators with ``is_oracle = True``.

Validators hold no state between calls and never change the model: they are
pure functions of the arrays they are given (in the style of the validators of
pytorch-adapt, Musgrave et al., "Three New Validators and a Large-Scale
Benchmark Ranking for Unsupervised Domain Adaptation", 2022).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .._registry import register

__all__ = [
    "VALIDATORS",
    "Validator",
    "SOURCE_VAL_LOGITS",
    "SOURCE_VAL_LABELS",
    "SOURCE_VAL_FEATURES",
    "TARGET_TRAIN_LOGITS",
    "TARGET_TRAIN_FEATURES",
    "TARGET_TRAIN_LABELS",
    "DATA_KEYS",
]

SOURCE_VAL_LOGITS = "source_val_logits"
SOURCE_VAL_LABELS = "source_val_labels"
SOURCE_VAL_FEATURES = "source_val_features"
TARGET_TRAIN_LOGITS = "target_train_logits"
TARGET_TRAIN_FEATURES = "target_train_features"
TARGET_TRAIN_LABELS = "target_train_labels"
DATA_KEYS = (
    SOURCE_VAL_LOGITS,
    SOURCE_VAL_LABELS,
    SOURCE_VAL_FEATURES,
    TARGET_TRAIN_LOGITS,
    TARGET_TRAIN_FEATURES,
    TARGET_TRAIN_LABELS,
)

#: config name (``train.validators``) → validator class, filled by the classes themselves
VALIDATORS: dict[str, type["Validator"]] = {}


class Validator:
    """Base class.  Subclasses set :attr:`name`, :attr:`requires` and implement :meth:`score`.

    A subclass that sets :attr:`name` is registered in :data:`VALIDATORS` when
    its module is imported (:mod:`adapt.validators` imports all of its
    modules), so a new validator is one new file in ``adapt/validators/``.

    ``validator(data)`` picks the required arrays out of the mapping ``data``
    (a missing one is a :class:`KeyError` naming it) and calls
    ``validator.score(**arrays)``.
    """

    #: the name configs use (``train.validators``); the harness reports ``val/validator/<name>``
    name: str = ""
    #: an oracle's metric, reported as ``val/oracle/<oracle_metric>`` (instead of under its name)
    oracle_metric: str = ""
    #: the arrays :meth:`score` reads, as keyword arguments (see the module docstring)
    requires: tuple[str, ...] = ()
    #: True only for validators that read target labels (upper bounds, never for honest selection)
    is_oracle: bool = False
    #: one line for ``mtlda list validators``: what it scores and the paper it comes from
    summary: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(VALIDATORS, cls)

    def __init__(self):
        if not self.is_oracle and TARGET_TRAIN_LABELS in self.requires:
            raise TypeError(f"{type(self).__name__} reads target labels but is not marked is_oracle = True")

    def score(self, **arrays: Tensor) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, data: Mapping[str, Tensor]) -> float:
        missing = [key for key in self.requires if key not in data]
        if missing:
            raise KeyError(f"validator '{self.name}' needs {', '.join(missing)}; got {', '.join(sorted(data)) or 'nothing'}")
        return float(self.score(**{key: data[key] for key in self.requires}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def as_logits(logits: Tensor) -> Tensor:
    """Detached float64 copy of a (N, C) logit matrix; anything else is an error."""
    logits = torch.as_tensor(logits)
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise ValueError(f"expected logits of shape (N, num_classes) with N > 0, got {tuple(logits.shape)}")
    return logits.detach().double()


def as_labels(labels: Tensor, n: int) -> Tensor:
    labels = torch.as_tensor(labels).detach().long().reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(f"got {labels.shape[0]} labels for {n} predictions")
    return labels


def accuracy(logits: Tensor, labels: Tensor) -> float:
    logits = as_logits(logits)
    labels = as_labels(labels, logits.shape[0]).to(logits.device)
    return float((logits.argmax(dim=1) == labels).double().mean())
