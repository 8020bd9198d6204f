"""Multi-task learning: models, task specs, backbones and weighting strategies.

Plain PyTorch pieces with no knowledge of the benchmark harness.
"""
from .backbones import BACKBONES, LeNet, MultiLeNet, SmallConvNet
from .model import MultiTaskModel
from .tasks import ClassificationTask, MultiLabelTask, RegressionTask, TaskSpec
from .weighting import (
    DBMTL,
    DWA,
    FAMO,
    RLW,
    GeometricLoss,
    GradNorm,
    EqualWeighting,
    GradientAggregation,
    LossWeighting,
    StaticWeighting,
    UncertaintyWeighting,
    Weighting,
)

__all__ = [
    "BACKBONES",
    "LeNet",
    "MultiLeNet",
    "SmallConvNet",
    "MultiTaskModel",
    "TaskSpec",
    "ClassificationTask",
    "MultiLabelTask",
    "RegressionTask",
    "Weighting",
    "LossWeighting",
    "EqualWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "GradientAggregation",
    "DWA",
    "RLW",
    "GradNorm",
    "FAMO",
    "GeometricLoss",
    "DBMTL",
]
