"""Experiment configuration: a typed OmegaConf schema, YAML files and dotted overrides.

Every key is declared in the dataclasses below; an unknown key, a value of
the wrong type, or an unknown dataset/method/weighting name is a
:class:`ConfigError` naming the key and the valid choices.  Free-form
``args`` blocks (a method's or weighting's constructor arguments) are checked
against the constructor's signature by the registry.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError


class ConfigError(ValueError):
    """A config file or override is wrong; the message says which key and what is allowed."""


@dataclass
class DataConfig:
    #: multi-task problems: the dataset name
    dataset: Optional[str] = None
    #: multi-task problems: train only these tasks (e.g. [left] for a single-task baseline); null: all
    tasks: Optional[List[str]] = None
    #: domain adaptation: labelled source and unlabelled target dataset names
    source: Optional[str] = None
    target: Optional[str] = None
    #: where real datasets live (default: $MTLDA_DATA)
    root: Optional[str] = None
    #: seed of the dataset construction and the train/validation split (fixed across runs)
    data_seed: int = 0
    #: ask torchvision to fetch the official files into the root first (never by default)
    download: bool = False
    #: resize every dataset once, at load time, to this square size (e.g. 28 for MNIST→USPS)
    image_size: Optional[int] = None
    #: replicate grey images to this many channels (e.g. 3 for MNIST→MNIST-M)
    channels: Optional[int] = None
    mean: List[float] = field(default_factory=lambda: [0.5])
    std: List[float] = field(default_factory=lambda: [0.5])
    batch_size: int = 64
    eval_batch_size: int = 1024
    #: DataLoader worker processes for image-folder datasets (in-memory datasets need none)
    workers: int = 4
    val_fraction: float = 0.1
    #: parameters of configurable datasets, by dataset name, e.g. {moons-rotated: {angle: 40}}
    #: (`mtlda list datasets` names each one's); every name must be a dataset this config reads
    args: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    #: keep only this many labelled training images per class (seeded by data_seed; the
    #: transfer-learning "few labels" setting; for domain adaptation it applies to the source).
    #: The validation split is then carved from these. null: all labels
    labels_per_class: Optional[int] = None
    #: problem self_supervised: more datasets whose training images (never their labels) join
    #: data.dataset's, one batch of each per step (e.g. [usps-esl]: MNIST + target images)
    unlabelled: List[str] = field(default_factory=list)


@dataclass
class BackboneConfig:
    #: a backbone of `mtlda list` (lenet, small_convnet, …), a torchvision model name
    #: (resnet50, efficientnet_b0, convnext_tiny, vit_b_16, …) or timm:<name>
    backbone: str = MISSING
    args: Dict[str, Any] = field(default_factory=dict)
    #: null (random init) | torchvision weights ("DEFAULT", "IMAGENET1K_V2") | a checkpoint path
    weights: Optional[str] = None


@dataclass
class ModelConfig:
    #: a backbone of `mtlda list`, a torchvision classification model name or timm:<name>
    backbone: str = "small_convnet"
    args: Dict[str, Any] = field(default_factory=dict)
    #: null (random init) | torchvision weights ("DEFAULT", "IMAGENET1K_V2") | the path of a
    #: checkpoint (a torchvision .pth, or a backbone.pt written by train.save_backbone)
    weights: Optional[str] = None
    #: model stacking: more backbones run on the same image; their features are concatenated
    #: with model.backbone's and the heads read the concatenation
    stack: List[BackboneConfig] = field(default_factory=list)
    #: hps | mmoe | cross_stitch | mtan (benchmarks.registry.ARCHITECTURES, mtl/architectures)
    architecture: str = "hps"
    #: the architecture's own constructor arguments (e.g. num_experts for mmoe)
    architecture_args: Dict[str, Any] = field(default_factory=dict)
    #: width of a Linear–BatchNorm–ReLU–Dropout bottleneck between the backbone and the heads
    #: (mtl.WithBottleneck; the heads and the alignment losses read its output); null: none
    bottleneck_dim: Optional[int] = None
    #: dropout probability at the end of the bottleneck (with bottleneck_dim only)
    bottleneck_dropout: float = 0.0
    #: false: no batch norm in the bottleneck (Linear–ReLU–Dropout, Transfer-Learning-Library's DAN)
    bottleneck_batch_norm: bool = True
    #: true: the bottleneck's dropout scales kept units by 1/sqrt(1−p), preserving the expected
    #: squared feature norm (AFN's "L2-preserved dropout", Xu et al. 2019; mtl.bottleneck)
    bottleneck_l2_dropout: bool = False
    #: default (PyTorch's initialisation) | normal: the bottleneck's and heads' Linear weights and biases
    #: drawn from N(0, 0.01) and their batch-norm scales from N(1, 0.01) with zero shifts, as
    #: Transfer-Learning-Library's AFN classifier initialises them (tllib/normalization/afn.py)
    classifier_init: str = "default"


@dataclass
class MethodConfig:
    name: str = "source_only"
    args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class WeightingConfig:
    name: str = "equal"
    args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    #: constant | cosine | dann (lr / (1 + 10p)^0.75 over training progress p, Ganin et al. 2016)
    #: | inverse (lr · (1 + lr_gamma · i)^−lr_decay over the absolute step i: Caffe's "inv" policy,
    #: the schedule of Transfer-Learning-Library's examples, which is not rescaled by the run's length)
    #: | multistep (lr · lr_step_factor^k, k = the number of lr_milestones ≤ the current epoch)
    lr_schedule: str = "constant"
    #: γ of the inverse schedule (TLLib: 0.001 for its DA scripts, 0.0003 for erm.py)
    lr_gamma: float = 0.001
    #: exponent of the inverse schedule (TLLib: 0.75)
    lr_decay: float = 0.75
    #: multistep: the epochs (0-based) from whose start on the lr is multiplied by lr_step_factor once more,
    #: as torch.optim.lr_scheduler.MultiStepLR stepped once per epoch (Lin et al.'s ParetoMTL:
    #: [15, 30, 45, 60, 75, 90] × 0.5; Sener & Koltun's loop: × 0.85 from epochs 9, 19, ..., 99)
    lr_milestones: List[int] = field(default_factory=list)
    #: multistep: the factor applied at each milestone
    lr_step_factor: float = 0.1
    #: learning rate of the weighting's own parameters (uncertainty log-variances); default: lr
    weighting_lr: Optional[float] = None
    #: SGD only: the momentum of the feature extractor (the backbone under model.bottleneck_dim, or the
    #: whole backbone without one); everything else keeps optim.momentum. null: optim.momentum for all.
    #: Transfer-Learning-Library's afn.py steps LeNet with 0 and its bottleneck and head with 0.9.
    backbone_momentum: Optional[float] = None


@dataclass
class PhaseConfig:
    """One fine-tuning phase (see benchmarks/phases.py)."""

    epochs: int = MISSING
    #: backbone blocks (counted from the top) that train at the start of the phase:
    #: 0 = feature extraction (frozen backbone, heads only), -1 = all blocks, k = the top k
    train_blocks: int = -1
    #: gradual unfreezing: one more block every this many epochs of the phase (null: no)
    unfreeze_every: Optional[int] = None
    #: this phase's learning rate as a multiple of optim.lr
    lr_scale: float = 1.0
    #: discriminative learning rates: backbone block d from the top trains at
    #: lr × layer_decay^d (heads and method networks at lr); null: one learning rate
    layer_decay: Optional[float] = None
    #: every backbone block's learning rate as a further multiple (e.g. 0.1: the backbone
    #: trains 10× slower than the heads, the usual Office-31 recipe)
    backbone_lr_scale: float = 1.0


@dataclass
class TrainConfig:
    epochs: int = 10
    #: optimiser steps per epoch; default: one pass over the (source) training split
    steps_per_epoch: Optional[int] = None
    seed: int = 0
    deterministic: bool = False
    #: auto (cuda → mps → cpu) | cpu | cuda | cuda:N | mps
    device: str = "auto"
    #: mixed precision of the forward pass (benchmarks/precision.py): false (float32) | bf16 |
    #: fp16 (loss-scaled) | true (the best the device supports: bf16 where native, else fp16 on
    #: CUDA, else float32; a CPU without native bf16 runs float32 and says so)
    amp: Union[bool, str] = False
    #: store the model's weights (and so its convolution outputs) in channels_last memory
    #: format: the same arithmetic, faster convolutions on x86 CPUs with oneDNN and on tensor cores
    channels_last: bool = False
    #: torch.compile the model (backbone and heads; method networks stay eager)
    compile: bool = False
    #: also evaluate the test split after every epoch and keep it in the history (learning
    #: curves, and the published "best epoch on the target test set" protocol of Transfer-
    #: Learning-Library, which the report shows as such); never used for selection in training
    test_every_epoch: bool = False
    #: validation metric used for checkpoint selection and early stopping
    selection_metric: str = MISSING
    selection_mode: str = "max"
    #: report test metrics of the "best" (by selection_metric) or the "last" checkpoint
    select: str = "best"
    #: stop after this many epochs without improvement (null: never)
    patience: Optional[int] = None
    log_every: int = 20
    #: every N steps, log pairwise cosine similarity and norm ratios of the loss terms' gradients
    #: on the shared parameters to TensorBoard (costs one batched backward; null: off)
    gradient_diagnostics_every: Optional[int] = None
    progress_bar: bool = True
    #: CPU threads for torch (null: torch's default)
    threads: Optional[int] = None
    #: domain adaptation: model-selection validators computed at every validation
    #: (adapt.validators.VALIDATORS), reported as val/validator/<name>; "oracle" reads target
    #: labels and is reported as val/oracle/target_accuracy. "dev" fits a domain classifier and is slower
    validators: List[str] = field(default_factory=lambda: ["source_accuracy", "entropy", "im", "snd", "bnm", "oracle"])
    #: the validators see a fixed subset (seeded by data.data_seed) of at most this many target-train images
    validator_samples: int = 2000
    #: allow selection_metric val/oracle/* (target labels select the checkpoint: an explicit oracle run)
    oracle_selection: bool = False
    #: fine-tuning phases, run in order; their epochs must add up to train.epochs (empty: one
    #: phase training everything at optim.lr)
    phases: List[PhaseConfig] = field(default_factory=list)
    #: at the end, write the reported model's backbone to <run dir>/backbone.pt (for transfer
    #: with model.weights=<that path>)
    save_backbone: bool = False
    #: domain adaptation: before the method, train the model (backbone, bottleneck, heads) on the labelled
    #: source alone for this many epochs of train.steps_per_epoch steps, with a fresh optimiser of the same
    #: kind at source_pretraining_lr and the lr schedule counted from its own step 0; the method then starts
    #: from those weights with a fresh optimiser (Transfer-Learning-Library's bsp.py: 3 epochs at 0.001).
    #: Kept in <run dir>/source_pretraining/, resumable; 0: none (benchmarks/source_pretraining.py)
    source_pretraining_epochs: int = 0
    #: the source pretraining's learning rate (null: optim.lr)
    source_pretraining_lr: Optional[float] = None
    #: domain adaptation: forward the source batch and then the target batch through the model in two
    #: passes, so batch norm normalises each domain with its own batch statistics (Transfer-Learning-
    #: Library's afn.py and dan.py); false: one pass over the joint batch (dann.py, cdan.py, mcc.py, ...)
    forward_domains_separately: bool = False


@dataclass
class SelfSupConfig:
    """One self-supervised loss term (benchmarks.registry.SELFSUP, mtl/selfsup); the term is named after it."""

    #: rotation | contrastive
    name: str = MISSING
    #: the objective's own arguments (e.g. temperature, flip for contrastive), checked against its signature
    args: Dict[str, Any] = field(default_factory=dict)
    #: the images it reads: domain_adaptation: any of [source, target]; multitask: [train];
    #: self_supervised: dataset names; null: all of them
    domains: Optional[List[str]] = None


@dataclass
class RegularizerConfig:
    """One fine-tuning regulariser (benchmarks.registry.REGULARIZERS, mtl/regularizers), named after it."""

    #: l2_sp | bss | delta
    name: str = MISSING
    #: its own arguments (e.g. alpha, beta for l2_sp; k, trade_off for bss)
    args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    #: domain_adaptation | multitask | self_supervised (pretraining on unlabelled images)
    problem: str = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: metrics shown in result tables, e.g. ["test/target/digit/accuracy"]
    report: List[str] = field(default_factory=list)
    #: self-supervised loss terms added to the problem's (benchmarks/objectives.py)
    selfsup: List[SelfSupConfig] = field(default_factory=list)
    #: fine-tuning regularisers added as loss terms, in every phase of train.phases
    regularizers: List[RegularizerConfig] = field(default_factory=list)


#: structured list entries, for error messages (OmegaConf reports their keys without a path)
_LIST_ENTRIES = {PhaseConfig: "train.phases", BackboneConfig: "model.stack", SelfSupConfig: "selfsup",
                 RegularizerConfig: "regularizers"}

PROBLEMS = ("domain_adaptation", "multitask", "self_supervised")
CHOICES = {
    "optim.name": ("sgd", "adam", "adamw"),
    "optim.lr_schedule": ("constant", "cosine", "dann", "inverse", "multistep"),
    "train.selection_mode": ("max", "min"),
    "train.select": ("best", "last"),
    "train.amp": (False, True, "bf16", "fp16"),
    "problem": PROBLEMS,
    "model.classifier_init": ("default", "normal"),  # benchmarks/experiment.py, init_classifier_normal
}


@dataclass(frozen=True)
class Range:
    """The values a numeric key allows: finite numbers between ``low`` and ``high`` (open ends exclude them)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.low is None and self.high is None:
            return "a finite number"
        if self.high is None:
            return f"a number {'>' if self.low_open else '≥'} {self.low:g}"
        return f"a number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


#: numeric keys and what they allow, checked when a config is merged (before any data is read)
RANGES = {
    "data.batch_size": Range(1),
    "data.eval_batch_size": Range(1),
    "data.workers": Range(0),
    "data.val_fraction": Range(0, 1, low_open=True, high_open=True),
    "data.image_size": Range(1),
    "data.channels": Range(1),
    "data.labels_per_class": Range(1),
    "model.bottleneck_dim": Range(1),
    "model.bottleneck_dropout": Range(0, 1, high_open=True),
    "optim.lr": Range(0),
    "optim.momentum": Range(0, 1, high_open=True),
    "optim.weight_decay": Range(0),
    "optim.lr_gamma": Range(0),
    "optim.lr_decay": Range(0),
    "optim.lr_step_factor": Range(0, 1, low_open=True),
    "optim.weighting_lr": Range(0),
    "optim.backbone_momentum": Range(0, 1, high_open=True),
    "train.epochs": Range(1),
    "train.steps_per_epoch": Range(1),
    "train.patience": Range(1),
    "train.log_every": Range(1),
    "train.gradient_diagnostics_every": Range(1),
    "train.threads": Range(1),
    "train.validator_samples": Range(2),
    "train.source_pretraining_epochs": Range(0),
    "train.source_pretraining_lr": Range(0, low_open=True),
}
#: list-valued keys: the range each entry must lie in
LIST_RANGES = {"data.mean": Range(), "data.std": Range(0, low_open=True)}
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
#: what the metric keys must start with: selection reads validation metrics only, tables read reported ones
METRIC_PREFIXES = {"train.selection_metric": ("val/",), "report": ("test/", "val/")}


def _valid_keys(schema, dotted_parent: str) -> list[str]:
    node = schema
    for part in [p for p in dotted_parent.split(".") if p]:
        node = node[part]
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def _explain(error: OmegaConfBaseException, schema, source: str) -> ConfigError:
    key = getattr(error, "full_key", None) or "?"
    if isinstance(error, ConfigKeyError):
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        valid = _valid_keys(schema, parent)
        where = f"under '{parent}'" if parent else "at the top level"
        entry = _LIST_ENTRIES.get(getattr(error, "object_type", None))
        if not parent and entry is not None:
            # inside a list of structured entries OmegaConf reports the bare key
            valid = sorted(f.name for f in dataclasses.fields(getattr(error, "object_type")))
            where = f"in an entry of '{entry}'"
        return ConfigError(f"{source}: unknown config key '{key}'. Valid keys {where}: {', '.join(valid)}")
    if isinstance(error, ValidationError):
        msg = str(error).splitlines()[0]
        return ConfigError(f"{source}: wrong type for '{key}': {msg}")
    return ConfigError(f"{source}: {str(error).splitlines()[0]} (key '{key}')")


def _schema() -> DictConfig:
    schema = OmegaConf.structured(ExperimentConfig)
    OmegaConf.set_struct(schema, True)
    for free_form in (schema.data.args, schema.model.args, schema.model.architecture_args, schema.method.args, schema.weighting.args):
        OmegaConf.set_struct(free_form, False)  # checked against constructor signatures instead
    return schema


def parse_overrides(overrides: list[str] | None) -> DictConfig:
    """``["train.epochs=3", "method.name=dann"]`` → a config (values parsed as YAML)."""
    overrides = list(overrides or [])
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form dotted.key=value (e.g. train.epochs=3)")
    try:
        return OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as error:
        raise ConfigError(f"cannot parse overrides {overrides}: {str(error).splitlines()[0]}") from error


def merge_config(*layers: DictConfig | dict, source: str = "config") -> DictConfig:
    """Merge layers onto the schema; validate keys, types and choices."""
    schema = _schema()
    merged = schema
    for layer in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as error:
            raise _explain(error, schema, source) from error
    try:
        missing = sorted(OmegaConf.missing_keys(merged))
    except OmegaConfBaseException as error:  # pragma: no cover - defensive
        raise _explain(error, schema, source) from error
    if missing:
        raise ConfigError(f"{source}: required key(s) not set: {', '.join(missing)}")
    for dotted, allowed in CHOICES.items():
        value = OmegaConf.select(merged, dotted)
        if value not in allowed:
            raise ConfigError(f"{source}: '{dotted}' is {value!r}; choose one of: {', '.join(str(a).lower() for a in allowed)}")
    check_values(merged, schema, source)
    return merged


def check_values(cfg: DictConfig, schema: DictConfig, source: str = "config") -> None:
    """Numeric ranges, the device name and the shape of metric names: a ConfigError naming the key and what it allows."""
    for dotted, allowed in RANGES.items():
        value = OmegaConf.select(cfg, dotted)
        if value is None and OmegaConf.select(schema, dotted) is None:
            continue  # null is this key's default ("not set")
        if value not in allowed:
            null = " (or null)" if OmegaConf.select(schema, dotted) is None else ""
            raise ConfigError(f"{source}: '{dotted}' is {value!r}; it must be {allowed}{null}")
    for dotted, allowed in LIST_RANGES.items():
        values = list(OmegaConf.select(cfg, dotted))
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise ConfigError(f"{source}: '{dotted}' is {values}; it needs one or more values, each {allowed}")
    milestones = list(cfg.optim.lr_milestones)
    if cfg.optim.lr_schedule == "multistep" or milestones:
        epochs = cfg.train.epochs
        if (cfg.optim.lr_schedule != "multistep" or not milestones or milestones != sorted(set(milestones))
                or any(isinstance(m, bool) or not isinstance(m, int) or not 0 < m < epochs for m in milestones)):
            raise ConfigError(
                f"{source}: 'optim.lr_milestones' is {milestones} with optim.lr_schedule={cfg.optim.lr_schedule}; "
                f"optim.lr_schedule=multistep needs increasing whole epochs between 1 and train.epochs - 1 = {epochs - 1} "
                "(e.g. optim.lr_milestones=[15,30]), and no other schedule reads them"
            )
    device = cfg.train.device
    if not DEVICE_PATTERN.fullmatch(str(device)):
        raise ConfigError(f"{source}: 'train.device' is {device!r}; use auto, cpu, cuda, cuda:N or mps (--device sets it)")
    for dotted, prefixes in METRIC_PREFIXES.items():
        value = OmegaConf.select(cfg, dotted)
        for name in [value] if isinstance(value, str) else list(value):
            if not str(name).startswith(prefixes) or str(name).endswith("/"):
                raise ConfigError(
                    f"{source}: '{dotted}' names {name!r}; it must be a metric name starting with "
                    f"{' or '.join(prefixes)} (e.g. {prefixes[0]}source/digit/accuracy)"
                )


def load_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got {type(loaded).__name__}")
    return OmegaConf.create(loaded)


def load_experiment(path: str | Path | None, overrides: list[str] | None = None, extra: dict | None = None) -> DictConfig:
    layers = []
    source = str(path) if path else "overrides"
    if path is not None:
        layers.append(load_yaml(path))
    if extra:
        layers.append(OmegaConf.create(extra))
    layers.append(parse_overrides(overrides))
    return merge_config(*layers, source=source)


def config_to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def _drop_defaults(values: dict, defaults: dict) -> dict:
    """The entries of ``values`` that differ from the schema defaults (recursively)."""
    kept = {}
    for key, value in values.items():
        default = defaults.get(key, _ABSENT) if isinstance(defaults, dict) else _ABSENT
        if isinstance(value, dict) and isinstance(default, dict) and default:
            nested = _drop_defaults(value, default)
            if nested:
                kept[key] = nested
        elif value != default:
            kept[key] = value
    return kept


_ABSENT = object()


def config_hash(cfg: DictConfig | dict, ignore: tuple[str, ...] = ("train.progress_bar", "train.device", "train.threads")) -> str:
    """Hash of the settings that change results.

    Display and placement keys are excluded, and so is every key left at its
    schema default, so adding a new key with a default to the schema does not
    orphan the records and checkpoints of earlier runs.
    """
    data = json.loads(json.dumps(cfg if isinstance(cfg, dict) else config_to_dict(cfg), sort_keys=True))
    for dotted in ignore:
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.get(part, {})
        node.pop(parts[-1], None)
    defaults = OmegaConf.to_container(_schema(), resolve=False, throw_on_missing=False)
    data = _drop_defaults(data, defaults)
    return _short_hash(data)


def _short_hash(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def run_hash(cfg: DictConfig | dict, world_size: int = 1) -> str:
    """The identity of a run: :func:`config_hash`, plus the data-parallel world size when it is above 1.

    A run trained by ``world_size`` replicas steps with ``world_size`` times the
    configured batch, so its records and checkpoints must not pass for those of
    a single-process run of the same config (nor of a different world size).
    Single-process runs keep the plain config hash, so their records stay valid.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    base = config_hash(cfg)
    return base if world_size == 1 else _short_hash({"config_hash": base, "data_parallel_world_size": world_size})
