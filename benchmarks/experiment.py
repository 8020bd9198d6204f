"""Build every component of one run from its config, train it, write its record.

This is the composition root: the only module that knows both the config
schema and the library classes.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mtl.pretrained import CheckpointMismatchError, pretrained_backbone, save_backbone, supported_backbones
from mtl.bottleneck import WithBottleneck
from mtl.tasks import ClassificationTask
from mtl.stacking import ConcatBackbones

from . import distributed, objectives, registry
from .batching import Preprocess
from .config import ConfigError, config_to_dict, run_hash
from .datasets import DATASETS, check_dataset_args, dataset_kind, load_dataset
from .datasets.base import ImageSplit, resize_dataset
from .devices import seed_everything, select_device
from .engine import Trainer
from .precision import configure_backends
from .phases import PhasePlan
from .problems import DomainAdaptationProblem, MultiTaskProblem
from .problems.domain_adaptation import check_validators
from .selection import check_selection_metric
from .source_pretraining import pretrain_on_source, pretraining_config, read_summary
from .records import atomic_write_json, git_commit, hardware, package_versions

log = logging.getLogger(__name__)

RECORD_NAME = "record.json"


def data_root(cfg: DictConfig) -> str | None:
    return cfg.data.root or os.environ.get("MTLDA_DATA")


def _load(cfg: DictConfig, key: str, kind: str):
    name = cfg.data[key]
    if name is None:
        raise ConfigError(f"data.{key} must be set for problem '{cfg.problem}'")
    found = dataset_kind(name)
    if found is None:
        raise ConfigError(
            f"data.{key}: unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}, imagefolder:<domain>"
        )
    # a multi-task problem also accepts a single-domain dataset: one task, plain supervised training
    if found != kind and not (key == "dataset" and found == "domain"):
        raise ConfigError(f"data.{key}: dataset {name!r} is a {found} dataset, not a {kind} dataset")
    args = dataset_args(cfg, name)
    try:
        dataset = load_dataset(name, data_root(cfg), cfg.data.data_seed, cfg.data.download, cfg.data.image_size, args)
    except (TypeError, ValueError) as error:
        if not args:
            raise
        raise ConfigError(f"data.args.{name}: {error}") from error
    if cfg.data.image_size and dataset.image_size != cfg.data.image_size:
        dataset = resize_dataset(dataset, cfg.data.image_size)
    if cfg.data.labels_per_class is not None and key in ("source", "dataset"):
        dataset = replace(dataset, train=labelled_subset(dataset, cfg.data.labels_per_class, cfg.data.data_seed))
    return dataset


def dataset_args(cfg: DictConfig, name: str) -> dict:
    """``data.args.<name>``, checked against the dataset's parameters; every entry of ``data.args``
    must name a dataset this config reads (a ConfigError names the key otherwise)."""
    used = [cfg.data[k] for k in ("dataset", "source", "target") if cfg.data[k]]
    for key in cfg.data.args:
        if key not in used:
            raise ConfigError(f"data.args.{key}: this experiment reads no dataset {key!r} (it reads {', '.join(used)})")
    args = dict(cfg.data.args.get(name) or {})
    allowed = DATASETS[name].parameter_names() if name in DATASETS else []
    for key in args:
        if key not in allowed:
            takes = f"its parameters: {', '.join(allowed)}" if allowed else "it takes no parameters"
            raise ConfigError(f"data.args.{name}.{key}: dataset {name!r} has no parameter {key!r}; {takes}")
    return check_dataset_args(name, args)


def select_tasks(dataset, names):
    """Keep only the named tasks (single-task baselines train one head of a multi-task set)."""
    if not names:
        return dataset
    unknown = sorted(set(names) - set(dataset.tasks))
    if unknown:
        raise ConfigError(f"data.tasks: {unknown} not in dataset '{dataset.name}'; its tasks: {', '.join(dataset.tasks)}")
    keep = lambda split: ImageSplit(split.images, {n: split.labels[n] for n in names})  # noqa: E731
    return replace(dataset, train=keep(dataset.train), test=keep(dataset.test), tasks={n: dataset.tasks[n] for n in names})


def build_problem(cfg: DictConfig, device: torch.device):
    """Datasets, model and (for DA) method → a Problem on ``device``."""
    if cfg.problem == "domain_adaptation":
        source, target = _load(cfg, "source", "domain"), _load(cfg, "target", "domain")
        datasets = [source, target]
        tasks = source.tasks
    else:
        if registry.method_adapts(cfg.method.name) or cfg.method.args:
            raise ConfigError("method.* applies to domain_adaptation problems only; remove it for multitask")
        dataset = select_tasks(_load(cfg, "dataset", "multitask"), cfg.data.tasks)
        datasets = [dataset] + [_load_unlabelled(cfg, name) for name in objectives.unlabelled_names(cfg)]
        tasks = dataset.tasks
    channels = cfg.data.channels or max(d.channels for d in datasets)
    sizes = {d.image_size for d in datasets}
    if len(sizes) != 1:
        raise ConfigError(f"datasets have different image sizes {sorted(sizes)}; resize them to one size first")
    for key in ("mean", "std"):
        if len(cfg.data[key]) not in (1, channels):
            raise ConfigError(f"data.{key} has {len(cfg.data[key])} values; give 1 or {channels} (one per channel)")
    preprocess = Preprocess(cfg.data.mean, cfg.data.std, channels, device)
    image_size = sizes.pop()
    input_shape = (channels, image_size, image_size)
    common = dict(
        preprocess=preprocess,
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        val_fraction=cfg.data.val_fraction,
        data_seed=cfg.data.data_seed,
        seed=cfg.train.seed,
        device=device,
        workers=cfg.data.workers,
    )

    def make_backbone():  # called once per copy the architecture needs (experts, columns)
        specs = [(cfg.model.backbone, cfg.model.args, cfg.model.weights, "model")]
        specs += [(s.backbone, s.args, s.weights, f"model.stack[{i}]") for i, s in enumerate(cfg.model.stack)]
        members = [build_backbone(*spec, channels=channels, image_size=image_size) for spec in specs]
        backbone = members[0] if len(members) == 1 else ConcatBackbones(members)
        return with_bottleneck(cfg.model, backbone)

    if cfg.problem == "self_supervised":  # a backbone and the selfsup terms, no task heads
        problem = objectives.build_self_supervised_problem(cfg, make_backbone(), datasets, input_shape, common)
        return problem.to(device)
    if cfg.problem == "domain_adaptation" and cfg.model.architecture != "hps":
        raise ConfigError(
            f"model.architecture={cfg.model.architecture!r} applies to multitask problems only; "
            "domain adaptation uses 'hps' (one backbone whose features the alignment losses read)"
        )
    model = registry.build(
        registry.ARCHITECTURES, "architecture", cfg.model.architecture, cfg.model.architecture_args,
        {"backbone_factory": make_backbone, "tasks": tasks, "input_shape": (channels, image_size, image_size)},
    )
    if not getattr(model, "has_shared_representation", True):
        aggregator = registry.AGGREGATORS.get(cfg.weighting.name)
        target = cfg.weighting.args.get("target") or getattr(aggregator, "default_target", "parameters")
        if aggregator is not None and target == "representation":
            raise ConfigError(
                f"weighting '{cfg.weighting.name}' differentiates the shared representation (target='representation'), "
                f"but architecture '{cfg.model.architecture}' has no single shared representation; "
                "set weighting.args.target=parameters or use another architecture"
            )
    if cfg.model.classifier_init == "normal":
        init_classifier_normal(model)
    backbone = getattr(model, "backbone", None)
    # self-supervised terms and fine-tuning regularisers (benchmarks/objectives.py), or None
    extra = objectives.build_extra_terms(cfg, model, tasks, input_shape, objectives.DOMAINS[cfg.problem])
    if cfg.problem == "domain_adaptation":
        first_task = next(iter(tasks))
        method = registry.build(
            registry.METHODS,
            "method",
            cfg.method.name,
            cfg.method.args,
            {"feature_dim": backbone.out_features, "num_classes": tasks[first_task].output_size,
             "task_classes": {name: spec.output_size for name, spec in tasks.items()
                              if isinstance(spec, ClassificationTask)},
             "head": model.heads[first_task]},
        )
        problem = DomainAdaptationProblem(
            model, method, source, target,
            validators=list(cfg.train.validators), validator_samples=cfg.train.validator_samples,
            extra_terms=extra, forward_domains_separately=cfg.train.forward_domains_separately, **common,
        )
    else:
        problem = MultiTaskProblem(model, dataset, extra_terms=extra, **common)
    problem = problem.to(device)
    objectives.fit_delta_attention(problem, cfg.data.data_seed)  # before training; nothing without DELTA
    return problem


def init_classifier_normal(model) -> None:
    """``model.classifier_init=normal``: Transfer-Learning-Library's AFN initialisation of the classifier.

    tllib/normalization/afn.py (``ImageClassifier``) draws the bottleneck's and the head's Linear
    weights and biases from N(0, 0.01), its batch-norm scales from N(1, 0.01) and sets their
    shifts to 0; the feature extractor keeps its own initialisation.
    """
    parts = [model.heads]
    if isinstance(getattr(model, "backbone", None), WithBottleneck):
        parts.append(model.backbone.bottleneck)
    with torch.no_grad():
        for module in (m for part in parts for m in part.modules()):
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 0.01)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.01)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                module.weight.normal_(1.0, 0.01)
                module.bias.zero_()


def _load_unlabelled(cfg: DictConfig, name: str):
    """One dataset of ``data.unlabelled`` (self-supervised pretraining reads its images only)."""
    only = OmegaConf.merge(cfg, {"data": {"dataset": name, "labels_per_class": None, "tasks": None}})
    return _load(only, "dataset", "multitask")


def run_identity(cfg: DictConfig) -> str:
    """The hash a run's checkpoints and record carry: the config's, plus the data-parallel world size
    of this process (:func:`benchmarks.config.run_hash`)."""
    return run_hash(cfg, distributed.world_size())


def with_bottleneck(model_cfg, backbone):
    """``backbone`` under the configured bottleneck (model.bottleneck_dim), or unchanged when there is none."""
    dim, dropout = model_cfg.bottleneck_dim, model_cfg.bottleneck_dropout
    batch_norm, l2_dropout = model_cfg.bottleneck_batch_norm, model_cfg.bottleneck_l2_dropout
    if dim is None:
        if dropout:
            raise ConfigError(f"model.bottleneck_dropout={dropout} needs model.bottleneck_dim (the bottleneck's width)")
        if not batch_norm or l2_dropout:
            raise ConfigError("model.bottleneck_batch_norm/bottleneck_l2_dropout need model.bottleneck_dim (the bottleneck's width)")
        return backbone
    try:
        return WithBottleneck(backbone, dim=dim, dropout=dropout, batch_norm=batch_norm, l2_dropout=l2_dropout)
    except ValueError as error:
        raise ConfigError(f"model.bottleneck_dim/bottleneck_dropout: {error}") from error


def build_backbone(name: str, args, weights: str | None, where: str, *, channels: int, image_size: int):
    """One backbone: a registry network (random, or from a checkpoint) or a torchvision/timm
    classification network without its classifier, all through ``mtl.pretrained_backbone``
    (which records ``backbone_spec`` for :func:`save_trained_backbone` and loads strictly)."""
    if name in registry.BACKBONE_ENTRIES:
        _, kwargs = registry.checked_arguments(registry.BACKBONE_ENTRIES, "backbone", name, args,
                                               {"in_channels": channels, "image_size": image_size}, f"{where}.args")
    elif not name.startswith("timm:") and name not in supported_backbones():
        raise ConfigError(
            f"{where}.backbone: unknown backbone {name!r}; choose one of {', '.join(sorted(registry.BACKBONE_ENTRIES))}, "
            f"a torchvision classification model (resnet18, resnet50, mobilenet_v3_large, efficientnet_b0, convnext_tiny, "
            "vit_b_16, …: see mtl.pretrained.supported_backbones()) or timm:<name>"
        )
    elif channels != 3:
        raise ConfigError(f"{where}.backbone={name!r} reads 3-channel images but the data has {channels}; set data.channels=3")
    else:
        kwargs = dict(args or {})
    try:
        return pretrained_backbone(name, weights=weights, **kwargs)
    except FileNotFoundError as error:
        raise ConfigError(f"{where}.weights: checkpoint file not found: {weights} ({error})") from error
    except CheckpointMismatchError as error:
        raise ConfigError(f"{where}.weights={weights!r} does not fit backbone {name!r}: {error}") from error
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        raise ConfigError(f"{where}: cannot build backbone {name!r} with weights={weights!r}: {error}") from error


def labelled_subset(dataset, per_class: int, data_seed: int) -> ImageSplit:
    """``per_class`` training images of each class (a seeded draw; order mixed), for the few-labels setting."""
    if len(dataset.tasks) != 1:
        raise ConfigError(
            f"data.labels_per_class needs a single-task dataset; {dataset.name!r} has tasks {', '.join(dataset.tasks)}"
        )
    if per_class < 1:
        raise ConfigError(f"data.labels_per_class must be at least 1 (or null for all labels), not {per_class}")
    task = next(iter(dataset.tasks))
    labels = dataset.train.labels[task]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(data_seed + 7919))
    keep = []
    for c in labels.unique().tolist():
        chosen = order[labels[order] == c][:per_class]
        if len(chosen) < per_class:
            raise ConfigError(
                f"data.labels_per_class={per_class}: class {c} of {dataset.name!r} has only {len(chosen)} training images"
            )
        keep.append(chosen)
    index = torch.cat(keep)
    index = index[torch.randperm(len(index), generator=torch.Generator().manual_seed(data_seed + 7920))]
    return ImageSplit(dataset.train.images[index], {task: labels[index]})


def build_optimizer(cfg: DictConfig, problem, weighting, phase_plan: PhasePlan | None = None) -> torch.optim.Optimizer:
    if phase_plan is None:
        groups = [{"params": [p for p in problem.parameters() if p.requires_grad]}]
    else:  # every parameter from the start: the phases switch requires_grad, not the optimiser
        in_backbone = {id(p) for p in phase_plan.backbone.parameters()}
        groups = phase_plan.param_groups([p for p in problem.parameters() if id(p) not in in_backbone])
    weighting_params = [p for p in weighting.parameters() if p.requires_grad]
    if weighting_params:
        groups.append({"params": weighting_params, "lr": cfg.optim.weighting_lr or cfg.optim.lr, "weight_decay": 0.0})
    o = cfg.optim
    if o.backbone_momentum is not None:
        groups = split_feature_extractor(groups, feature_extractor(problem), o.backbone_momentum)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


def feature_extractor(problem) -> nn.Module:
    """The network under the bottleneck (``model.bottleneck_dim``), or the whole backbone without one."""
    backbone = problem.model.backbone
    return backbone.backbone if isinstance(backbone, WithBottleneck) else backbone


def split_feature_extractor(groups: list[dict], extractor: nn.Module, momentum: float) -> list[dict]:
    """``groups`` with the extractor's parameters moved to a group of their own with ``momentum``."""
    inside = {id(p) for p in extractor.parameters()}
    rest = [{**g, "params": [p for p in g["params"] if id(p) not in inside]} for g in groups]
    moved = [p for g in groups for p in g["params"] if id(p) in inside]
    return [{"params": moved, "momentum": momentum, "name": "feature_extractor"}, *(g for g in rest if g["params"])]


def _hparams(cfg: DictConfig) -> dict:
    """Flat scalar hyperparameters for TensorBoard's hparams dashboard."""
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + ".")
            elif isinstance(value, (int, float, str, bool)):
                flat[name] = value
            elif value is not None:
                flat[name] = str(value)

    walk(config_to_dict(cfg), "")
    return flat


def build_phase_plan(cfg: DictConfig, problem) -> PhasePlan | None:
    if not cfg.train.phases:
        return None
    backbone = getattr(problem.model, "backbone", None)
    if backbone is None or cfg.model.architecture != "hps":
        raise ConfigError(
            f"train.phases needs one shared backbone (model.architecture=hps), not {cfg.model.architecture!r}"
        )
    plan = PhasePlan(backbone, [dict(p) for p in cfg.train.phases])
    if plan.total_epochs != cfg.train.epochs:
        raise ConfigError(
            f"train.phases cover {plan.total_epochs} epochs but train.epochs={cfg.train.epochs}; "
            f"set train.epochs={plan.total_epochs}"
        )
    return plan


def check_config(cfg: DictConfig) -> None:
    """What can be checked without data, before anything is read or trained: the selection rule, the
    validators, and the names, argument names and argument types of every component (a ConfigError names
    the key).  Value ranges were checked when the config was merged (:func:`benchmarks.config.check_values`)."""
    check_selection_metric(cfg.train.selection_metric, cfg.train.oracle_selection)
    check_backbone_export(cfg)
    if cfg.train.source_pretraining_epochs:
        pretraining_config(cfg)  # refuses a problem or setting the stage cannot have
    if cfg.problem == "domain_adaptation":
        registry.check_config_arguments(registry.METHODS, "method", cfg.method.name, cfg.method.args)
        check_validators(cfg.train.validators, cfg.train.validator_samples)
    if cfg.optim.backbone_momentum is not None:
        if cfg.optim.name != "sgd":
            raise ConfigError(f"optim.backbone_momentum applies to SGD only (optim.name is {cfg.optim.name!r}); remove it")
        if cfg.train.phases:
            raise ConfigError("optim.backbone_momentum cannot be combined with train.phases (they group the backbone by block); remove one")
        if cfg.optim.nesterov and cfg.optim.backbone_momentum == 0:
            raise ConfigError("optim.backbone_momentum=0 with optim.nesterov=true: Nesterov needs a momentum; set optim.nesterov=false")
        if cfg.problem == "self_supervised" or cfg.model.architecture != "hps":
            raise ConfigError(
                "optim.backbone_momentum needs one shared backbone under task heads (model.architecture=hps, "
                f"not a self_supervised problem; got {cfg.model.architecture!r}, {cfg.problem!r}); remove it"
            )
    if cfg.model.classifier_init != "default" and cfg.problem == "self_supervised":
        raise ConfigError("model.classifier_init applies to problems with heads (domain_adaptation, multitask); remove it")
    if cfg.train.forward_domains_separately:
        if cfg.problem != "domain_adaptation":
            raise ConfigError(f"train.forward_domains_separately applies to domain adaptation only (problem is {cfg.problem!r}); remove it")
        if registry.METHODS[cfg.method.name].factory.owns_update:
            raise ConfigError(
                f"train.forward_domains_separately has no effect with method '{cfg.method.name}', whose own update "
                "forwards its batches; remove it"
            )
    registry.check_config_arguments(registry.WEIGHTINGS, "weighting", cfg.weighting.name, cfg.weighting.args)
    registry.check_config_arguments(
        registry.ARCHITECTURES, "architecture", cfg.model.architecture, cfg.model.architecture_args
    )
    backbones = [("model", cfg.model), *((f"model.stack[{i}]", s) for i, s in enumerate(cfg.model.stack))]
    for where, spec in backbones:
        if spec.backbone in registry.BACKBONE_ENTRIES:
            registry.check_config_arguments(registry.BACKBONE_ENTRIES, "backbone", spec.backbone, spec.args, f"{where}.args")
    for key, entries, known in (("selfsup", cfg.selfsup, registry.SELFSUP), ("regularizers", cfg.regularizers, registry.REGULARIZERS)):
        for i, entry in enumerate(entries):
            registry.check_config_arguments(known, f"{key}[{i}]", entry.name, entry.args, f"{key}[{i}].args")


def check_metric_names(cfg: DictConfig, problem) -> None:
    """``train.selection_metric`` and ``report`` against the metrics ``problem`` will produce, before training."""
    val, test = problem.metric_names("val"), problem.metric_names("test")
    if val is None or test is None:
        return  # a problem that cannot say in advance; the engine checks the selection metric after an epoch
    if cfg.train.selection_metric not in val:
        raise ConfigError(
            f"train.selection_metric {cfg.train.selection_metric!r} is not a validation metric of this run; "
            f"it produces: {', '.join(val)}"
        )
    unknown = [name for name in cfg.report if name not in (*val, *test)]
    if unknown:
        raise ConfigError(
            f"report: no run of this config produces {', '.join(map(repr, unknown))}; its metrics: {', '.join([*test, *val])}"
        )


def build_trainer(cfg: DictConfig, run_dir: str | Path, callbacks=()) -> Trainer:
    check_config(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    device = select_device(cfg.train.device)
    backends = configure_backends(device, cfg.train.deterministic)  # cuDNN autotuning and TF32, chosen here
    problem = build_problem(cfg, device)
    check_metric_names(cfg, problem)
    if cfg.train.channels_last:
        # the weights in NHWC: oneDNN / cuDNN then run every convolution (and its output) in that layout
        problem.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        compile_model(problem)
    weighting = registry.build(registry.WEIGHTINGS, "weighting", cfg.weighting.name, cfg.weighting.args).to(device)
    # learned per-term parameters (uncertainty log-variances, GradNorm weights) must exist before the optimiser
    weighting.ensure_terms(problem.term_names(), device=device)
    if problem.owns_update and not weighting.is_plain_sum:
        raise ConfigError(
            f"method '{cfg.method.name}' performs its own multi-step update, so weighting.name must be 'equal' "
            f"(got '{cfg.weighting.name}')"
        )
    phase_plan = build_phase_plan(cfg, problem)
    optimizer = build_optimizer(cfg, problem, weighting, phase_plan)
    trainer = Trainer(
        problem,
        weighting,
        optimizer,
        run_dir=run_dir,
        epochs=cfg.train.epochs,
        steps_per_epoch=cfg.train.steps_per_epoch,
        lr_schedule=cfg.optim.lr_schedule,
        lr_gamma=cfg.optim.lr_gamma,
        lr_decay=cfg.optim.lr_decay,
        lr_milestones=tuple(cfg.optim.lr_milestones),
        lr_step_factor=cfg.optim.lr_step_factor,
        selection_metric=cfg.train.selection_metric,
        selection_mode=cfg.train.selection_mode,
        select=cfg.train.select,
        patience=cfg.train.patience,
        amp=cfg.train.amp,
        device=device,
        log_every=cfg.train.log_every,
        gradient_diagnostics_every=cfg.train.gradient_diagnostics_every,
        test_every_epoch=cfg.train.test_every_epoch,
        progress_bar=cfg.train.progress_bar,
        config_hash=run_identity(cfg),
        callbacks=callbacks,
        hparams=_hparams(cfg),
        phase_plan=phase_plan,
    )
    #: how this run computes, for its record: precision, the guard, memory format, compilation, backends
    trainer.numerics = {
        "precision": trainer.precision.name,
        "precision_reason": trainer.precision.reason,
        "loss_scaling": trainer.loss_scaler is not None,
        "sync_free_guard": trainer.guard is not None,
        "channels_last": bool(cfg.train.channels_last),
        "compile": bool(cfg.train.compile),
        **backends,
    }
    return trainer


def compile_model(problem) -> None:
    """``torch.compile`` the problem's model in place (its state-dict keys, so its checkpoints, stay the same)."""
    model = getattr(problem, "model", None)
    if model is None:
        raise ConfigError("train.compile compiles the problem's model, and this problem has none")
    model.compile()


BACKBONE_FILE = "backbone.pt"


def check_backbone_export(cfg: DictConfig) -> None:
    if not cfg.train.save_backbone:
        return
    if cfg.model.stack or cfg.model.architecture != "hps" or cfg.model.bottleneck_dim is not None:
        raise ConfigError(
            "train.save_backbone saves one backbone: use model.architecture=hps without model.stack or model.bottleneck_dim"
        )


def save_trained_backbone(backbone, run_dir: Path) -> str:
    """Write ``backbone`` to ``<run_dir>/backbone.pt`` so ``model.weights=<that path>`` loads it."""
    spec = backbone.backbone_spec  # set by build_backbone / pretrained_backbone: how to rebuild it
    save_backbone(backbone, run_dir / BACKBONE_FILE, name=spec["name"], kwargs=spec["kwargs"])
    return BACKBONE_FILE


def run_experiment(cfg: DictConfig, run_dir: str | Path, callbacks=()) -> dict:
    """Train one configured run in ``run_dir`` (resuming if a checkpoint is there) and write ``record.json``."""
    run_dir = Path(run_dir)
    started = datetime.now(timezone.utc)
    commit = git_commit()  # the code the run starts with, not whatever is checked out when it ends
    wall = time.perf_counter()
    check_config(cfg)  # before a source pretraining stage trains anything (it checks the backbone export too)
    # a source-only stage first (train.source_pretraining_epochs), unless the run itself has started already
    started_before = (run_dir / "checkpoints" / "last.pt").exists()
    pretrained = None if started_before else pretrain_on_source(cfg, run_dir, build_trainer)
    trainer = build_trainer(cfg, run_dir, callbacks)
    if pretrained is not None:
        trainer.problem.model.load_state_dict(pretrained)  # the method's own networks start fresh
    result = trainer.fit()
    if cfg.train.source_pretraining_epochs:
        result["source_pretraining"] = read_summary(run_dir)
    if cfg.train.save_backbone:  # the reported (selected) weights: fit() loaded them for the test evaluation
        result["backbone_path"] = save_trained_backbone(trainer.problem.model.backbone, run_dir)
    record = {
        "name": cfg.name,
        "config": config_to_dict(cfg),
        "config_hash": trainer.config_hash,  # the identity its checkpoints carry
        "seed": cfg.train.seed,
        **result,
        "wall_seconds": time.perf_counter() - wall,
        "started": started.isoformat(),
        "finished": datetime.now(timezone.utc).isoformat(),
        "versions": package_versions(),
        "git": commit,
        "hardware": hardware(trainer.device),
        "numerics": trainer.numerics,
    }
    atomic_write_json(run_dir / RECORD_NAME, record)
    return record
