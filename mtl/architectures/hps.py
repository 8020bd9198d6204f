"""Hard parameter sharing (Caruana, "Multitask Learning", Machine Learning 28, 1997).

The architecture itself is :class:`mtl.model.MultiTaskModel`; this module only
gives it the factory signature the other architectures share.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..model import MultiTaskModel
from ..tasks import TaskSpec
from .base import BackboneFactory, check_tasks


def hard_parameter_sharing(
    backbone_factory: BackboneFactory, tasks: Mapping[str, TaskSpec], input_shape=None
) -> MultiTaskModel:
    """One backbone (built once) shared by all tasks, one linear head per task.

    ``input_shape`` is accepted for a uniform signature and unused.  The
    representation is the backbone's output.
    """
    return MultiTaskModel.from_tasks(backbone_factory(), check_tasks(tasks, "hard parameter sharing"))
