"""Multi-task learning: models, task specs, backbones and weighting strategies.

Plain PyTorch pieces with no knowledge of the benchmark harness.
"""
from .architectures import ARCHITECTURES, MMoE, MTAN, CrossStitch, MultiTaskArchitecture, hard_parameter_sharing
from .backbones import BACKBONES, LeNet, MultiLeNet, SmallConvNet
from .metrics import delta_m, delta_m_lower_is_better, relative_improvements
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
    "ARCHITECTURES",
    "MultiTaskArchitecture",
    "hard_parameter_sharing",
    "MMoE",
    "CrossStitch",
    "MTAN",
    "delta_m",
    "delta_m_lower_is_better",
    "relative_improvements",
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
