"""Self-supervised objectives and fine-tuning regularisers from a config (the ``selfsup`` and
``regularizers`` lists), checked before training: a bad entry is a ConfigError naming its key.

::

    selfsup:                                  # self-supervised loss terms (mtl/selfsup)
      - {name: rotation, domains: [source, target]}
      - {name: contrastive, args: {temperature: 0.5, flip: false}}
    regularizers:                             # fine-tuning regularisers (mtl/regularizers)
      - {name: l2_sp, args: {alpha: 0.01, beta: 0.01}}
      - {name: bss, args: {k: 1, trade_off: 0.001}}
      - {name: delta, args: {alpha: 0.01, beta: 0.01}}

Each entry becomes one named loss term (its ``name``), which the weighting
balances with the task and alignment terms.  ``problem: self_supervised``
trains a backbone on the ``selfsup`` terms alone.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from omegaconf import DictConfig

from mtl.regularizers import DELTA

from . import registry
from .config import ConfigError
from .datasets.base import ImageSplit
from .problems.extra_terms import ExtraTerms
from .problems.self_supervised import BackboneModel, SelfSupervisedProblem

#: each problem's domains: the names ``selfsup[i].domains`` may list
DOMAINS = {"domain_adaptation": ("source", "target"), "multitask": ("train",)}
#: images used to fit DELTA's attention classifier (the labelled training images, a seeded subset)
ATTENTION_FIT_SAMPLES = 2048
#: images per batch of DELTA's attention estimate (the authors' batch size)
ATTENTION_BATCH = 64


def unlabelled_names(cfg: DictConfig) -> list[str]:
    """``data.unlabelled``: more datasets whose images (not labels) self-supervised pretraining reads."""
    names = list(cfg.data.unlabelled)
    if names and cfg.problem != "self_supervised":
        raise ConfigError(f"data.unlabelled={names} applies to problem self_supervised only (not {cfg.problem})")
    if len(set(names)) != len(names) or cfg.data.dataset in names:
        raise ConfigError(f"data.unlabelled lists a dataset twice (or repeats data.dataset): {names}")
    return names


def _check_weighting_target(cfg: DictConfig, what: str) -> None:
    aggregator = registry.AGGREGATORS.get(cfg.weighting.name)
    target = cfg.weighting.args.get("target") or getattr(aggregator, "default_target", "parameters")
    if aggregator is not None and target == "representation":
        raise ConfigError(
            f"weighting '{cfg.weighting.name}' differentiates a shared representation (target='representation'), "
            f"but {what} has none; set weighting.args.target=parameters or use another weighting"
        )


def build_extra_terms(cfg: DictConfig, model, tasks, input_shape: Sequence[int],
                      domains: Sequence[str]) -> ExtraTerms | None:
    """The configured self-supervised terms and regularisers for ``model`` (None when there are none)."""
    unlabelled_names(cfg)  # only self-supervised pretraining reads more datasets
    if not cfg.selfsup and not cfg.regularizers:
        return None
    backbone = getattr(model, "backbone", None)
    if backbone is None or cfg.model.architecture != "hps":
        raise ConfigError(
            f"selfsup and regularizers need one shared backbone (model.architecture=hps), not {cfg.model.architecture!r}"
        )
    names = [e.name for e in cfg.selfsup] + [e.name for e in cfg.regularizers]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"selfsup/regularizers: each term appears once; repeated: {', '.join(repeated)}")
    clash = sorted(set(names) & set(tasks))
    if clash:
        raise ConfigError(f"selfsup/regularizers: term names {clash} are also task names of the dataset")
    # terms that do not pass through the problem's shared representation: a weighting that
    # differentiates that representation would see no gradient from them
    apart = [e.name for e in cfg.selfsup] + [
        e.name for e in cfg.regularizers
        if e.name in registry.REGULARIZERS and tuple(registry.REGULARIZERS[e.name].factory.reads) != ("features",)
    ]
    if apart:
        _check_weighting_target(cfg, f"the terms {', '.join(apart)} (they do not read the shared representation)")
    feature_dim = getattr(backbone, "out_features", None)
    selfsup = {}
    for i, entry in enumerate(cfg.selfsup):
        where = f"selfsup[{i}]"
        read = list(domains) if entry.domains is None else list(entry.domains)
        unknown = [d for d in read if d not in domains]
        if unknown or not read:
            raise ConfigError(
                f"{where}.domains={read}: this {cfg.problem} problem's domains are {', '.join(domains)}"
                + (" (or null for all)" if not unknown else "")
            )
        if input_shape[-1] != input_shape[-2]:
            raise ConfigError(f"{where}: self-supervised objectives need square images, not {input_shape[-2]}×{input_shape[-1]}")
        objective = registry.build(registry.SELFSUP, where, entry.name, entry.args, {"feature_dim": feature_dim})
        selfsup[entry.name] = (objective, read)
    regularizers = {}
    for i, entry in enumerate(cfg.regularizers):
        where = f"regularizers[{i}]"
        if entry.name in registry.REGULARIZERS and registry.REGULARIZERS[entry.name].supplied:
            if cfg.model.weights is None:
                raise ConfigError(
                    f"{where}: {entry.name} keeps the network close to its pretrained starting point, but "
                    "model.weights is null (a random start); set model.weights to a pretrained backbone"
                )
        supplied = {
            "starting_point": {k: v.detach().clone() for k, v in backbone.named_parameters()},
            "network": backbone,
            "input_shape": tuple(input_shape),
        }
        regularizers[entry.name] = registry.build(registry.REGULARIZERS, where, entry.name, entry.args, supplied)
    return ExtraTerms(selfsup, regularizers)


def build_self_supervised_problem(cfg: DictConfig, backbone, datasets, input_shape: Sequence[int],
                                  common: dict) -> SelfSupervisedProblem:
    """``problem: self_supervised``: the backbone trained on the ``selfsup`` terms over ``datasets``' images."""
    if registry.method_adapts(cfg.method.name) or cfg.method.args:
        raise ConfigError("method.* applies to domain_adaptation problems only; remove it for self_supervised")
    if not cfg.selfsup:
        raise ConfigError("problem self_supervised needs at least one selfsup entry, e.g. selfsup=[{name: rotation}]")
    if cfg.regularizers:
        raise ConfigError("regularizers apply to fine-tuning (multitask and domain_adaptation problems), "
                          "not to self_supervised pretraining")
    if cfg.data.tasks:
        raise ConfigError("data.tasks selects task heads; self_supervised pretraining has none")
    if cfg.model.architecture != "hps":
        raise ConfigError(f"self_supervised pretraining trains one backbone (model.architecture=hps), not {cfg.model.architecture!r}")
    _check_weighting_target(cfg, "self_supervised pretraining (each objective runs the backbone on its own images)")
    domains = [d.name for d in datasets]
    terms = build_extra_terms(cfg, BackboneModel(backbone), {}, input_shape, domains)
    try:
        return SelfSupervisedProblem(backbone, terms, datasets, **common)
    except ValueError as error:
        raise ConfigError(f"problem self_supervised: {error}") from error


def fit_delta_attention(problem, data_seed: int) -> None:
    """Estimate the channel attention of every DELTA regulariser that asks for it (``attention``, the
    default), before training, as its authors do: a linear classifier per task fitted on the
    starting-point network's frozen features of labelled training images, then the loss increase
    of removing each channel on ``attention_batches`` batches of them (``DELTA.fit_attention``).

    Deterministic for the data seed and does not move the training random streams."""
    extra = getattr(problem, "extra_terms", None)
    if extra is None:
        return
    deltas = [r for r in extra.regularizers.values() if isinstance(r, DELTA) and r.attention and not bool(r.attention_fitted)]
    if not deltas:
        return
    # the labelled training images: the task's (multitask) or the source's (domain adaptation)
    split = problem.train_split if hasattr(problem, "train_split") else problem.source_train
    if not isinstance(split, ImageSplit):  # an image folder's split holds file paths, not a tensor of images
        raise ConfigError("regularizers: delta's attention is estimated on in-memory training images; "
                          "for an image-folder dataset set args.attention=false (uniform channel weights)")
    device = problem.device if isinstance(problem.device, torch.device) else torch.device(problem.device)
    backbone = problem.model.backbone
    tasks = problem.tasks
    generator = torch.Generator().manual_seed(data_seed + 31_337)
    order = torch.randperm(len(split), generator=generator)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(data_seed + 31_338)
        for delta in deltas:
            fit = split.subset(order[:ATTENTION_FIT_SAMPLES])
            images = problem.preprocess(fit.images.to(device))
            out: list = []
            delta.reference_maps(backbone, images, output=out)
            features = out[0].flatten(1).float()
            labels = {name: value.to(device) for name, value in fit.labels.items()}
            heads = torch.nn.ModuleDict({name: task.make_head(features.shape[1]) for name, task in tasks.items()}).to(device)
            optimizer = torch.optim.Adam(heads.parameters(), lr=0.01)
            for _ in range(200):  # full-batch steps on frozen features: a linear classifier per task
                optimizer.zero_grad()
                sum(task.loss(heads[name](features), labels[name]) for name, task in tasks.items()).backward()
                optimizer.step()
            heads.eval()

            def loss_fn(output, targets):
                flat = output.flatten(1).float()
                return sum(task.loss(heads[name](flat), targets[name]) for name, task in tasks.items())

            batches = []
            for b in range(delta.attention_batches):
                index = order[b * ATTENTION_BATCH:(b + 1) * ATTENTION_BATCH]
                if len(index) == 0:
                    break
                part = split.subset(index)
                batches.append((problem.preprocess(part.images.to(device)),
                                {name: value.to(device) for name, value in part.labels.items()}))
            delta.fit_attention(backbone, batches, loss_fn)

