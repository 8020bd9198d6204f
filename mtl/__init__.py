"""Multi-task learning: models, task specs, backbones and weighting strategies.

Plain PyTorch pieces with no knowledge of the benchmark harness.
"""
from .architectures import ARCHITECTURES, MMoE, MTAN, CrossStitch, MultiTaskArchitecture, hard_parameter_sharing
from .backbones import BACKBONES, LeNet, MultiLeNet, SmallConvNet
from .metrics import delta_m, delta_m_lower_is_better, relative_improvements
from .finetune import (
    BlockGroup,
    FrozenBatchNormMode,
    GradualUnfreezing,
    blocks,
    extract_features,
    freeze,
    keep_frozen_batchnorm_eval,
    layerwise_param_groups,
    linear_probe,
    named_blocks,
    unfreeze,
    unfreeze_top,
)
from .model import MultiTaskModel
from .stacking import ConcatBackbones
from .bottleneck import WithBottleneck
from .pretrained import (
    CheckpointMismatchError,
    load_backbone_state,
    pretrained_backbone,
    resolve_weights,
    save_backbone,
    supported_backbones,
)
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
    "ConcatBackbones",
    "WithBottleneck",
    "CheckpointMismatchError",
    "load_backbone_state",
    "pretrained_backbone",
    "resolve_weights",
    "save_backbone",
    "supported_backbones",
    "BlockGroup",
    "FrozenBatchNormMode",
    "GradualUnfreezing",
    "blocks",
    "extract_features",
    "freeze",
    "keep_frozen_batchnorm_eval",
    "layerwise_param_groups",
    "linear_probe",
    "named_blocks",
    "unfreeze",
    "unfreeze_top",
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
