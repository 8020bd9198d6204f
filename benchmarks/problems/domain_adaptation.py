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

from ..batching import Preprocess, make_batcher
from ..config import ConfigError, TrainConfig
from ..datasets.base import ImageDataset, ImageSplit, split_train_val
from .base import Problem, collect_outputs, evaluate_tasks

ORACLE_PREFIX = "val/oracle/"
VALIDATOR_PREFIX = "val/validator/"


def default_validators() -> list[str]:
    """The ``train.validators`` default of the config schema."""
    return TrainConfig.__dataclass_fields__["validators"].default_factory()


def validator_metric(name: str) -> str:
    """The metric a registered validator is reported as."""
    cls = VALIDATORS[name]
    return f"{ORACLE_PREFIX}{cls.name}" if cls.is_oracle else f"{VALIDATOR_PREFIX}{name}"


def check_selection_metric(selection_metric: str, oracle_selection: bool) -> None:
    """Refuse checkpoint selection on target labels unless the run is declared an oracle run."""
    if selection_metric.startswith(ORACLE_PREFIX) and not oracle_selection:
        raise ConfigError(
            f"train.selection_metric '{selection_metric}' selects checkpoints with target labels; that is an "
            "oracle upper bound, not unsupervised domain adaptation. Select on val/source/... or "
            "val/validator/<name>, or set train.oracle_selection=true to declare an explicit oracle run"
        )


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
    ):
        super().__init__()
        if set(source.tasks) != set(target.tasks):
            raise ValueError(
                f"source '{source.name}' has tasks {sorted(source.tasks)} but target '{target.name}' has "
                f"{sorted(target.tasks)}; domain adaptation needs the same label space"
            )
        self.model = model
        self.method = method
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
        return [*self.tasks, *self.method.term_names]

    def steps_per_epoch(self) -> int:
        return len(self.source_batches)

    def training_terms(self, progress: float):
        source_images, source_labels = self.source_batches.next()
        n_source = source_images.shape[0]
        if self.method.uses_target_in_training:
            target_images, _ = self.target_batches.next()
            # one forward over both domains: BatchNorm sees the joint batch, as in DANN
            images = torch.cat([self.preprocess(source_images), self.preprocess(target_images)])
        else:
            images = self.preprocess(source_images)
        outputs, features = self.model(images, return_features=True)
        terms = {name: task.loss(outputs[name][:n_source], source_labels[name]) for name, task in self.tasks.items()}
        if not self.method.uses_target_in_training:
            return terms, features
        (task_name,) = self.tasks  # one label space per domain pair
        alignment = self.method.alignment_terms(
            source_features=features[:n_source],
            target_features=features[n_source:],
            source_logits=outputs[task_name][:n_source],
            target_logits=outputs[task_name][n_source:],
            progress=progress,
        )
        clash = set(alignment) & set(terms)
        if clash:
            raise ValueError(f"alignment term names {sorted(clash)} clash with task names")
        terms.update(alignment)
        return terms, features

    @property
    def owns_update(self) -> bool:
        return self.method.owns_update

    def update_step(self, progress: float, optimizer) -> dict:
        """The method's own optimisation step (MCD-style methods)."""
        source_images, source_labels = self.source_batches.next()
        target_images, _ = self.target_batches.next()
        (task_name,) = self.tasks
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
        with self.target_statistics():
            return evaluate_tasks(self.model, self.target_test, *args, prefix="test/target", workers=self.workers)

    def forward_split(self, split, labelled: bool):
        """One in-order pass in eval mode → (logits of the task, features, labels or None), on the device.

        With ``labelled=False`` the labels are stripped before the pass: they never leave the dataset.
        """
        (task_name,) = self.tasks
        if not labelled and isinstance(split, ImageSplit):
            split = ImageSplit(split.images, {})
        outputs, features, labels = collect_outputs(
            self.model, split, self.preprocess, self.eval_batch_size, self.device, self.workers, with_features=True
        )
        return outputs[task_name], features, (labels[task_name] if labelled else None)

    def _evaluate_with_validators(self) -> dict[str, float]:
        (task_name,) = self.tasks
        needs = {key for v in self.validators.values() for key in v.requires}
        # one pass over source val gives both the usual source metrics and the validators' source data
        logits, features, labels = self.forward_split(self.source_val, labelled=True)
        task_metrics = self.tasks[task_name].metrics(logits, labels)
        metrics = {f"val/source/{task_name}/{metric}": value for metric, value in task_metrics.items()}
        data = {SOURCE_VAL_LOGITS: logits, SOURCE_VAL_LABELS: labels, SOURCE_VAL_FEATURES: features}
        if needs & {TARGET_TRAIN_LOGITS, TARGET_TRAIN_FEATURES, TARGET_TRAIN_LABELS}:
            # target labels are read only when an oracle validator is configured
            with_labels = TARGET_TRAIN_LABELS in needs
            with self.target_statistics():
                target_logits, target_features, target_labels = self.forward_split(self.validator_target, labelled=with_labels)
            data.update({TARGET_TRAIN_LOGITS: target_logits, TARGET_TRAIN_FEATURES: target_features})
            if with_labels:
                data[TARGET_TRAIN_LABELS] = target_labels
        for name, validator in self.validators.items():
            metrics[validator_metric(name)] = validator({key: data[key] for key in validator.requires})
        return metrics

    def diagnostics(self):
        return self.method.diagnostics()

    def batcher_state(self):
        return {"source": self.source_batches.state_dict(), "target": self.target_batches.state_dict()}

    def load_batcher_state(self, state):
        self.source_batches.load_state_dict(state["source"])
        self.target_batches.load_state_dict(state["target"])
