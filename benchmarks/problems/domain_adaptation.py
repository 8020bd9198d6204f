"""Unsupervised domain adaptation: labelled source batches, unlabelled target batches.

Protocol: the source training split is divided into train and validation
(``val_fraction``); the target *train* split is used without labels during
training; the target *test* split is only used for reporting.  Checkpoint
selection uses source validation metrics or unsupervised validators, never
target labels, unless a run is explicitly an oracle run.

Validators (``adapt.validators``): at every validation the problem also scores
the model with each configured validator on the source validation split and on
a fixed, seeded subset of the target *train* split, read without labels; only
the oracle validator reads that subset's labels.  They are reported as
``val/validator/<name>`` and ``val/oracle/<name>``.

Several tasks: a multi-task source (MultiMNIST's ``left`` and ``right``) and an
unlabelled multi-task target with the same tasks.  Every task's supervised loss
is a term on the source batch, named after the task; the method's alignment
terms act on the backbone features all heads share.  Methods that read one
task's logits (CDAN, JAN, MCC, MCD, entropy, IM, BNM, Deep CORAL on logits)
have no single label space to read and are refused with the list of methods
that work (:func:`benchmarks.registry.multi_task_methods`); a method that reads
every task's logits (``reads_every_task``: CDAN per task) gets them as dicts
keyed by task and needs every task to be a classification task.  Target
metrics are reported per task (``test/target/left/accuracy``) and averaged
(``test/target/mean/accuracy``).  Validators are computed once per task, each
from that task's logits with the shared features, and reported as the
unweighted mean over tasks under their usual name, so a selection metric means
the same with one task or several; the oracle is then the mean target accuracy.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from adapt.adabn import adapt_batchnorm_statistics
from adapt.methods.base import AdaptationMethod
from adapt.validators import (
    SOURCE_VAL_FEATURES,
    SOURCE_VAL_LABELS,
    SOURCE_VAL_LOGITS,
    TARGET_TRAIN_FEATURES,
    TARGET_TRAIN_LABELS,
    TARGET_TRAIN_LOGITS,
    VALIDATORS,
)
from mtl.model import MultiTaskModel
from mtl.tasks import ClassificationTask

from ..batching import Preprocess, make_batcher
from ..config import ConfigError, TrainConfig
from ..datasets.base import ImageDataset, ImageSplit, split_train_val
from ..metric_names import ORACLE_PREFIX, VALIDATOR_PREFIX
from ..registry import METHODS, feature_level_methods, multi_task_methods
from .base import Problem, collect_outputs, evaluate_tasks, task_metric_names, task_metrics
from .extra_heads import extra_head_metric_names, extra_head_metrics
from .extra_terms import ExtraTerms


def default_validators() -> list[str]:
    """The ``train.validators`` default of the config schema."""
    return TrainConfig.__dataclass_fields__["validators"].default_factory()


def validator_metric(name: str) -> str:
    """The metric a registered validator is reported as."""
    cls = VALIDATORS[name]
    return f"{ORACLE_PREFIX}{cls.oracle_metric}" if cls.is_oracle else f"{VALIDATOR_PREFIX}{name}"


def check_validators(names: Sequence[str], samples: int) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in VALIDATORS]
    if unknown:
        raise ConfigError(f"train.validators: unknown validator(s) {unknown}; choose from: {', '.join(VALIDATORS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"train.validators lists a validator twice: {names}")
    if names and samples < 2:
        raise ConfigError(f"train.validator_samples must be at least 2, got {samples}")
    return names


def check_method_tasks(method: AdaptationMethod, source: ImageDataset) -> None:
    """Refuse a method that reads one task's logits when the source has several tasks, and a method that
    reads every task's logits when a task is not a classification task."""
    name = next((n for n, entry in METHODS.items() if entry.factory is type(method)), type(method).__name__)
    if method.reads_every_task and not method.owns_update:
        others = [task for task, spec in source.tasks.items() if not isinstance(spec, ClassificationTask)]
        if others:
            raise ConfigError(
                f"method '{name}' conditions on every task's class predictions, but task(s) {', '.join(others)} "
                f"of source '{source.name}' are not classification tasks; use a feature-level method: "
                f"{', '.join(feature_level_methods())}"
            )
        return
    if len(source.tasks) < 2 or not (method.reads_logits or method.owns_update):
        return
    raise ConfigError(
        f"method '{name}' reads the classifier logits of a single task, but source '{source.name}' has "
        f"{len(source.tasks)} tasks ({', '.join(source.tasks)}); with several tasks the alignment acts on the "
        f"features all heads share. Methods that support multi-task sources: {', '.join(multi_task_methods())}"
    )


class DomainAdaptationProblem(Problem):
    def __init__(
        self,
        model: MultiTaskModel,
        method: AdaptationMethod,
        source: ImageDataset,
        target: ImageDataset,
        preprocess: Preprocess,
        batch_size: int,
        eval_batch_size: int,
        val_fraction: float,
        data_seed: int,
        seed: int,
        device,
        workers: int = 4,
        validators: Sequence[str] | None = None,
        validator_samples: int = 2000,
        extra_terms: ExtraTerms | None = None,
        forward_domains_separately: bool = False,
    ):
        super().__init__()
        if set(source.tasks) != set(target.tasks):
            raise ValueError(
                f"source '{source.name}' has tasks {sorted(source.tasks)} but target '{target.name}' has "
                f"{sorted(target.tasks)}; domain adaptation needs the same label space"
            )
        check_method_tasks(method, source)
        self.model = model
        self.method = method
        #: self-supervised objectives (on source and/or target images) and fine-tuning regularisers, or None
        self.extra_terms = extra_terms
        #: two forward passes per step, source then target (batch norm sees each domain alone), instead of one
        self.forward_domains_separately = bool(forward_domains_separately)
        self.tasks = dict(source.tasks)
        self.preprocess = preprocess
        self.eval_batch_size = eval_batch_size
        self.device = device
        self.workers = workers
        self.source_train, self.source_val = split_train_val(source.train, val_fraction, data_seed)
        self.target_test = target.test
        self.target_train = target.train
        self.source_test = source.test
        self.source_batches = make_batcher(self.source_train, batch_size, seed, device, workers=workers)
        # target labels are dropped from the training stream: nothing can leak into training
        self.target_batches = make_batcher(target.train, batch_size, seed + 7919, device, labelled=False, workers=workers)
        # validators: a fixed subset of target train, the same for every run with this data seed
        self.validator_names = check_validators(default_validators() if validators is None else validators, validator_samples)
        self.validators = {name: VALIDATORS[name]() for name in self.validator_names}
        n_target = len(target.train)
        if n_target > validator_samples:
            generator = torch.Generator().manual_seed(data_seed * 1_000_003 + 104_729)
            index = torch.randperm(n_target, generator=generator)[:validator_samples].sort().values
            self.validator_target = target.train.subset(index)
        else:
            self.validator_target = target.train

    def term_names(self) -> list[str]:
        extra = self.extra_terms.term_names() if self.extra_terms is not None else []
        return [*self.tasks, *self.method.term_names, *extra]

    def steps_per_epoch(self) -> int:
        return len(self.source_batches)

    def training_terms(self, progress: float, step: int = 0):
        source_images, source_labels = self.source_batches.next()
        n_source = source_images.shape[0]
        extra = self.extra_terms
        source = self.preprocess(source_images)
        target = None
        if self.method.uses_target_in_training or (extra is not None and extra.reads_domain("target")):
            target_images, _ = self.target_batches.next()
            target = self.preprocess(target_images)
        # one forward over both domains: BatchNorm sees the joint batch, as in DANN (or one per domain)
        images = torch.cat([source, target]) if self.method.uses_target_in_training else source
        with extra.watch(self.model.backbone) if extra is not None else contextlib.nullcontext():
            if self.forward_domains_separately and self.method.uses_target_in_training:
                outputs, features = self._forward_each_domain(source, target)
            else:
                outputs, features = self.model(images, return_features=True)
        terms = {name: task.loss(outputs[name][:n_source], source_labels[name]) for name, task in self.tasks.items()}
        if extra is not None:
            terms.update(extra.terms(
                model=self.model, preprocess=self.preprocess, batches={"source": source, "target": target},
                features=features[:n_source], images=images,
            ))
        if not self.method.uses_target_in_training:
            return terms, features
        # `*_logits` exist for one label space only; with several tasks check_method_tasks has admitted
        # only methods that never read them or that read every task's (`*_task_logits`)
        logits = outputs[next(iter(self.tasks))] if len(self.tasks) == 1 else None
        alignment = self.method.alignment_terms(
            source_features=features[:n_source],
            target_features=features[n_source:],
            source_logits=None if logits is None else logits[:n_source],
            target_logits=None if logits is None else logits[n_source:],
            source_task_logits={name: outputs[name][:n_source] for name in self.tasks},
            target_task_logits={name: outputs[name][n_source:] for name in self.tasks},
            progress=progress,
            step=step,
        )
        clash = set(alignment) & set(terms)
        if clash:
            raise ValueError(f"alignment term names {sorted(clash)} clash with task or extra term names")
        terms.update(alignment)
        return terms, features

    def _forward_each_domain(self, source, target):
        """The model's outputs and features for source then target, each from its own forward pass, joined
        in the order the joint pass would give them."""
        source_outputs, source_features = self.model(source, return_features=True)
        target_outputs, target_features = self.model(target, return_features=True)
        outputs = {name: torch.cat([source_outputs[name], target_outputs[name]]) for name in source_outputs}
        return outputs, torch.cat([source_features, target_features])

    @property
    def owns_update(self) -> bool:
        return self.method.owns_update

    def update_step(self, progress: float, optimizer) -> dict:
        """The method's own optimisation step (MCD-style methods)."""
        source_images, source_labels = self.source_batches.next()
        target_images, _ = self.target_batches.next()
        (task_name,) = self.tasks  # check_method_tasks admits owns_update methods for one task only
        return self.method.update(
            model=self.model,
            task=self.tasks[task_name],
            source_images=self.preprocess(source_images),
            source_labels=source_labels[task_name],
            target_images=self.preprocess(target_images),
            optimizer=optimizer,
            progress=progress,
        )

    def evaluate(self, split: str) -> dict[str, float]:
        args = (self.tasks, self.preprocess, self.eval_batch_size, self.device)
        if split == "val":
            if not self.validators:
                return evaluate_tasks(self.model, self.source_val, *args, prefix="val/source", workers=self.workers)
            return self._evaluate_with_validators()
        if split == "test":
            return {
                **self._evaluate_target(args),
                **evaluate_tasks(self.model, self.source_test, *args, prefix="test/source", workers=self.workers),
            }
        raise ValueError(f"unknown split {split!r}")

    @contextlib.contextmanager
    def target_statistics(self):
        """Inside: the model as it is deployed on the target domain (AdaBN: target batch-norm statistics).

        For AdaBN the batch-norm statistics are re-estimated on unlabelled target *train* batches and
        the source statistics are put back on exit, so checkpoints and source metrics are unaffected.
        """
        if not self.method.adapts_batchnorm_for_target:
            yield
            return
        saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        batch_size = min(self.eval_batch_size, len(self.target_train))  # equal-size batches: exact mean
        stream = make_batcher(self.target_train, batch_size, 0, self.device, labelled=False, workers=self.workers)
        batches = (self.preprocess(stream.next()[0]) for _ in range(max(1, len(stream))))
        try:
            adapt_batchnorm_statistics(self.model, batches)
            yield
        finally:
            self.model.load_state_dict(saved)

    def _evaluate_target(self, args) -> dict[str, float]:
        heads = self.method.evaluation_heads()
        with self.target_statistics():
            if not heads:
                return evaluate_tasks(self.model, self.target_test, *args, prefix="test/target", workers=self.workers)
            # one pass: the model's outputs and the features the method's own classifiers read
            logits, features, labels = self.forward_all(self.target_test, labelled=True)
        return {
            **task_metrics(self.tasks, logits, labels, prefix="test/target"),
            **extra_head_metrics(self.tasks, heads, logits, features, labels, prefix="test/target"),
        }

    def forward_all(self, split, labelled: bool):
        """One in-order pass in eval mode → (logits per task, features, labels per task or None), on the device.

        With ``labelled=False`` the labels are stripped before the pass: they never leave the dataset.
        """
        if not labelled and isinstance(split, ImageSplit):
            split = ImageSplit(split.images, {})
        outputs, features, labels = collect_outputs(
            self.model, split, self.preprocess, self.eval_batch_size, self.device, self.workers, with_features=True
        )
        return outputs, features, (labels if labelled else None)

    def forward_split(self, split, labelled: bool, task: str | None = None):
        """:meth:`forward_all` for one task (``task``; may be left out when there is one) →
        (logits, features, labels or None)."""
        if task is None:
            if len(self.tasks) != 1:
                raise ValueError(f"this problem has tasks {', '.join(self.tasks)}; name the one to forward")
            (task,) = self.tasks
        outputs, features, labels = self.forward_all(split, labelled)
        return outputs[task], features, (labels[task] if labelled else None)

    def _evaluate_with_validators(self) -> dict[str, float]:
        needs = {key for v in self.validators.values() for key in v.requires}
        # one pass over source val gives both the usual source metrics and the validators' source data
        logits, features, labels = self.forward_all(self.source_val, labelled=True)
        metrics = task_metrics(self.tasks, logits, labels, prefix="val/source")
        data = {task: {SOURCE_VAL_LOGITS: logits[task], SOURCE_VAL_LABELS: labels[task], SOURCE_VAL_FEATURES: features}
                for task in self.tasks}
        if needs & {TARGET_TRAIN_LOGITS, TARGET_TRAIN_FEATURES, TARGET_TRAIN_LABELS}:
            # target labels are read only when an oracle validator is configured
            with_labels = TARGET_TRAIN_LABELS in needs
            with self.target_statistics():
                target_logits, target_features, target_labels = self.forward_all(self.validator_target, labelled=with_labels)
            for task, task_data in data.items():
                task_data.update({TARGET_TRAIN_LOGITS: target_logits[task], TARGET_TRAIN_FEATURES: target_features})
                if with_labels:
                    task_data[TARGET_TRAIN_LABELS] = target_labels[task]
        for name, validator in self.validators.items():
            # several tasks: each task's score from its own logits, then the unweighted mean
            scores = [validator({key: task_data[key] for key in validator.requires}) for task_data in data.values()]
            metrics[validator_metric(name)] = sum(scores) / len(scores)
        return metrics

    def metric_names(self, split: str) -> list[str]:
        if split == "val":
            return [*task_metric_names(self.tasks, "val/source"), *(validator_metric(n) for n in self.validator_names)]
        return [
            *task_metric_names(self.tasks, "test/target"),
            *extra_head_metric_names(self.tasks, self.method.evaluation_heads(), "test/target"),
            *task_metric_names(self.tasks, "test/source"),
        ]

    def diagnostics(self):
        return self.method.diagnostics()

    def batcher_state(self):
        return {"source": self.source_batches.state_dict(), "target": self.target_batches.state_dict()}

    def load_batcher_state(self, state):
        self.source_batches.load_state_dict(state["source"])
        self.target_batches.load_state_dict(state["target"])
