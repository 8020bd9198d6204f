"""Shared plumbing of the multi-task architectures.

Every architecture is a plain ``nn.Module`` with the interface of
:class:`mtl.model.MultiTaskModel`:

* ``forward(x)`` → ``{task name: output}``;
  ``forward(x, return_features=True)`` → ``(outputs, representation)``, where
  ``representation`` is a tensor that every task's loss depends on and
  through which *all* shared parameters are reached (so representation-level
  gradient methods such as MGDA-UB may differentiate it), or ``None`` when
  the architecture has no such tensor (``has_shared_representation`` is then
  ``False``);
* ``shared_parameters()`` / ``task_specific_parameters()``: a disjoint and
  complete split of ``parameters()``: shared = what more than one task's loss
  reaches, task-specific = what exactly one task's loss reaches;
* ``task_names``.

Every architecture that sets ``name`` registers itself in
:data:`ARCHITECTURES` (the names configs use, ``model.architecture``) when
its module is imported, and :mod:`mtl.architectures` imports all of its
modules: a new architecture is one new file there.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from .._registry import register
from ..tasks import TaskSpec

#: a zero-argument callable returning a fresh backbone (an ``nn.Module``)
BackboneFactory = Callable[[], nn.Module]

#: config name (``model.architecture``) → architecture class, filled by the classes themselves; each
#: is built with its ``build(backbone_factory, tasks, input_shape, **options)``
ARCHITECTURES: dict[str, type["MultiTaskArchitecture"]] = {}


class MultiTaskArchitecture(nn.Module):
    """Base class: task heads in ``self.heads`` plus the common helpers.

    A named subclass (one that sets :attr:`name`; its docstring's first line
    names the architecture and its paper) also defines the classmethod
    ``build(backbone_factory, tasks, input_shape, **options)``, the one
    constructor signature all architectures share.
    """

    #: the name configs use (``model.architecture``); a class that sets one is registered in
    #: :data:`ARCHITECTURES`
    name: str = ""
    #: arguments of ``build`` that follow from the model and data, not hyperparameters (whoever builds
    #: the architecture passes them; a config cannot set them)
    derived_arguments: tuple[str, ...] = ("backbone_factory", "tasks", "input_shape")
    #: whether ``forward(x, return_features=True)`` returns a tensor (not ``None``)
    has_shared_representation: bool = True
    heads: nn.ModuleDict

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(ARCHITECTURES, cls)

    @property
    def task_names(self) -> list[str]:
        return list(self.heads.keys())

    def shared_parameters(self) -> Iterator[nn.Parameter]:  # pragma: no cover - abstract
        raise NotImplementedError

    def task_specific_parameters(self) -> Iterator[nn.Parameter]:
        shared = {id(p) for p in self.shared_parameters()}
        return iter([p for p in self.parameters() if id(p) not in shared])

    @torch.no_grad()
    def predict(self, x: Tensor) -> dict[str, Tensor]:
        was_training = self.training
        self.eval()
        try:
            return self(x)
        finally:
            self.train(was_training)


def check_tasks(tasks: Mapping[str, TaskSpec], who: str) -> dict[str, TaskSpec]:
    tasks = dict(tasks)
    if not tasks:
        raise ValueError(f"{who} needs at least one task")
    return tasks


def backbone_stages(backbone: nn.Module, who: str) -> list[nn.Module]:
    """``backbone.stages()``, with a clear error when the backbone cannot be split."""
    stages = getattr(backbone, "stages", None)
    if not callable(stages):
        raise ValueError(
            f"{who} needs a backbone split into stages; {type(backbone).__name__} has no `stages()` method "
            "(give it one returning the consecutive nn.Modules whose composition is its forward)"
        )
    result = list(stages())
    if not result:
        raise ValueError(f"{who}: {type(backbone).__name__}.stages() returned no stages")
    return result


def out_features(backbone: nn.Module, who: str) -> int:
    size = getattr(backbone, "out_features", None)
    if not isinstance(size, int):
        raise ValueError(f"{who}: {type(backbone).__name__} has no integer `out_features` (the size of its flat output)")
    return size
