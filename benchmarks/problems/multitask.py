"""Multi-task learning: one batch, one loss term per task.

The training split is divided into train and validation (``val_fraction``);
model selection uses validation metrics, never the test split.
"""
from __future__ import annotations

import contextlib

from mtl.model import MultiTaskModel

from ..batching import Preprocess, make_batcher
from ..datasets.base import ImageDataset, split_train_val
from .base import Problem, evaluate_tasks, task_metric_names
from .extra_terms import ExtraTerms


class MultiTaskProblem(Problem):
    def __init__(
        self,
        model: MultiTaskModel,
        dataset: ImageDataset,
        preprocess: Preprocess,
        batch_size: int,
        eval_batch_size: int,
        val_fraction: float,
        data_seed: int,
        seed: int,
        device,
        workers: int = 4,
        extra_terms: ExtraTerms | None = None,
    ):
        super().__init__()
        self.model = model
        #: self-supervised objectives and fine-tuning regularisers added to the task losses (or None)
        self.extra_terms = extra_terms
        self.tasks = dict(dataset.tasks)
        self.preprocess = preprocess
        self.eval_batch_size = eval_batch_size
        self.device = device
        self.workers = workers
        self.train_split, self.val_split = split_train_val(dataset.train, val_fraction, data_seed)
        self.test_split = dataset.test
        self.batches = make_batcher(self.train_split, batch_size, seed, device, workers=workers)

    def term_names(self) -> list[str]:
        return [*self.tasks, *(self.extra_terms.term_names() if self.extra_terms is not None else [])]

    def steps_per_epoch(self) -> int:
        return len(self.batches)

    def training_terms(self, progress: float, step: int = 0):
        images, labels = self.batches.next()
        x = self.preprocess(images)
        watch = self.extra_terms.watch(self.model.backbone) if self.extra_terms is not None else contextlib.nullcontext()
        with watch:
            outputs, features = self.model(x, return_features=True)
        terms = {name: task.loss(outputs[name], labels[name]) for name, task in self.tasks.items()}
        if self.extra_terms is not None:
            # the labelled batch is this problem's one domain, "train"
            terms.update(self.extra_terms.terms(
                model=self.model, preprocess=self.preprocess, batches={"train": x}, features=features, images=x,
            ))
        return terms, features

    def evaluate(self, split: str) -> dict[str, float]:
        data = {"val": self.val_split, "test": self.test_split}
        if split not in data:
            raise ValueError(f"unknown split {split!r}")
        return evaluate_tasks(
            self.model, data[split], self.tasks, self.preprocess, self.eval_batch_size, self.device, prefix=split,
            workers=self.workers,
        )

    def metric_names(self, split: str) -> list[str]:
        return task_metric_names(self.tasks, split)

    def batcher_state(self):
        return {"train": self.batches.state_dict()}

    def load_batcher_state(self, state):
        self.batches.load_state_dict(state["train"])
