"""What a fine-tuning regulariser is: a loss term that keeps a network close to where it started.

Every regulariser that sets ``name`` registers itself in :data:`REGULARIZERS`
(the names configs list under ``regularizers``) when its module is imported,
and :mod:`mtl.regularizers` imports all of its modules: a new regulariser is
one new file there.
"""
from __future__ import annotations

from torch import nn

from .._registry import register

#: config name (an entry of ``regularizers``) → regulariser class, filled by the classes themselves
REGULARIZERS: dict[str, type["Regularizer"]] = {}


class Regularizer(nn.Module):
    """Base class of the fine-tuning regularisers; each returns a scalar term.

    A subclass's docstring starts with one line naming the regulariser and
    its paper (``mtlda list`` shows it), then states its defaults.
    """

    #: the name configs use (an entry of ``regularizers``); a class that sets one is registered in
    #: :data:`REGULARIZERS`
    name: str = ""
    #: constructor arguments that follow from the model, not hyperparameters (the pretrained starting
    #: point, the network itself); whoever builds the regulariser passes them, a config cannot
    derived_arguments: tuple[str, ...] = ()
    #: what its ``forward`` is called with: ``features`` (the backbone's output on the batch),
    #: ``pretrained_parameters``, ``new_parameters``, ``network``, ``images``
    reads: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(REGULARIZERS, cls)
