"""Unsupervised domain adaptation: labelled source batches, unlabelled target batches.

Protocol: the source training split is divided into train and validation
(``val_fraction``); the target *train* split is used without labels during
training; the target *test* split is only used for reporting.  Checkpoint
selection uses source validation metrics, never target labels.
"""
from __future__ import annotations

import torch

from adapt.adabn import adapt_batchnorm_statistics
from adapt.methods.base import AdaptationMethod
from mtl.model import MultiTaskModel

from ..batching import Preprocess, make_batcher
from ..datasets.base import ImageDataset, split_train_val
from .base import Problem, evaluate_tasks


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
            return evaluate_tasks(self.model, self.source_val, *args, prefix="val/source", workers=self.workers)
        if split == "test":
            return {
                **self._evaluate_target(args),
                **evaluate_tasks(self.model, self.source_test, *args, prefix="test/source", workers=self.workers),
            }
        raise ValueError(f"unknown split {split!r}")

    def _evaluate_target(self, args) -> dict[str, float]:
        if not self.method.adapts_batchnorm_for_target:
            return evaluate_tasks(self.model, self.target_test, *args, prefix="test/target", workers=self.workers)
        # AdaBN: re-estimate BN statistics on unlabelled target *train* batches, evaluate, then put the
        # source statistics back so checkpoints and source metrics are unaffected
        saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        batch_size = min(self.eval_batch_size, len(self.target_train))  # equal-size batches: exact mean
        stream = make_batcher(self.target_train, batch_size, 0, self.device, labelled=False, workers=self.workers)
        batches = (self.preprocess(stream.next()[0]) for _ in range(max(1, len(stream))))
        try:
            adapt_batchnorm_statistics(self.model, batches)
            return evaluate_tasks(self.model, self.target_test, *args, prefix="test/target", workers=self.workers)
        finally:
            self.model.load_state_dict(saved)

    def diagnostics(self):
        return self.method.diagnostics()

    def batcher_state(self):
        return {"source": self.source_batches.state_dict(), "target": self.target_batches.state_dict()}

    def load_batcher_state(self, state):
        self.source_batches.load_state_dict(state["source"])
        self.target_batches.load_state_dict(state["target"])
