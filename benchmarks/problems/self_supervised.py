"""Self-supervised pretraining: unlabelled images of one or more datasets, self-supervised terms only.

Each step draws one batch from every dataset (``data.dataset`` first, then
``data.unlabelled``) with their labels dropped from the stream, and the
configured objectives (``selfsup``) read the batches of the datasets they
name (all by default).  The trained backbone is what the run is for:
``train.save_backbone`` writes it for a later ``model.weights=<path>``.

Validation and test report each objective's loss and pretext accuracy
(``val/<objective>/loss``, ``val/<objective>/accuracy``) on the first
dataset's validation and test splits, with fixed random augmentations so
epochs compare.  The test metrics add a linear probe on the frozen features
(``test/probe/<task>/accuracy``: logistic regression fitted on up to
``probe_samples`` labelled training images of the first dataset): labels are
read for that report only, never for training or checkpoint selection.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtl.finetune import linear_probe

from ..batching import Preprocess, iterate_in_order, make_batcher
from ..datasets.base import ImageDataset, split_train_val
from .base import Problem, collect_outputs
from .extra_terms import ExtraTerms, unnormalise


class BackboneModel(nn.Module):
    """A backbone with no task heads: ``forward`` gives ``({}, features)`` (the objectives hold their heads)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict()

    def forward(self, x: Tensor, return_features: bool = False):
        features = self.backbone(x)
        return ({}, features) if return_features else {}

    def shared_parameters(self):
        return self.backbone.parameters()


class SelfSupervisedProblem(Problem):
    def __init__(
        self,
        backbone: nn.Module,
        terms: ExtraTerms,
        datasets: Sequence[ImageDataset],
        preprocess: Preprocess,
        batch_size: int,
        eval_batch_size: int,
        val_fraction: float,
        data_seed: int,
        seed: int,
        device,
        workers: int = 4,
        probe_samples: int = 5000,
    ):
        super().__init__()
        if not datasets:
            raise ValueError("self-supervised pretraining needs at least one dataset")
        names = [d.name for d in datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"a dataset is listed twice: {names}")
        if not terms.selfsup:
            raise ValueError("self-supervised pretraining needs at least one self-supervised objective")
        self.model = BackboneModel(backbone)
        self.extra_terms = terms
        self.tasks: dict = {}
        first = datasets[0]
        self.probe_tasks = dict(first.tasks)
        self.preprocess = preprocess
        self.eval_batch_size = eval_batch_size
        self.device = device
        self.workers = workers
        self.data_seed = data_seed
        self.train_split, self.val_split = split_train_val(first.train, val_fraction, data_seed)
        self.test_split = first.test
        self.probe_samples = probe_samples
        splits = [self.train_split] + [d.train for d in datasets[1:]]
        # labels are dropped from the training streams: nothing downstream can read them
        self.batches = {
            name: make_batcher(split, batch_size, seed + 7919 * i, device, labelled=False, workers=workers)
            for i, (name, split) in enumerate(zip(names, splits))
        }

    def term_names(self) -> list[str]:
        return self.extra_terms.term_names()

    def steps_per_epoch(self) -> int:
        return len(self.batches[next(iter(self.batches))])

    def training_terms(self, progress: float, step: int = 0):
        batches = {name: self.preprocess(batcher.next()[0]) for name, batcher in self.batches.items()}
        return self.extra_terms.selfsup_terms(self.model.backbone, self.preprocess, batches), None

    @torch.no_grad()
    def _objective_metrics(self, split, prefix: str) -> dict[str, float]:
        was_training = self.model.training
        self.eval()
        generator = torch.Generator(device=self.device).manual_seed(self.data_seed + 104_729)
        encoder = lambda x: self.model.backbone((x - self.preprocess.mean) / self.preprocess.std)  # noqa: E731
        sums: dict[str, float] = {}
        count = 0
        try:
            for images, _ in iterate_in_order(split, self.eval_batch_size, self.device, self.workers):
                if images.shape[0] < 2:
                    continue  # a one-image remainder has no negatives for the contrastive pretext
                x = unnormalise(self.preprocess, self.preprocess(images))
                for name, objective in self.extra_terms.selfsup.items():
                    for metric, value in objective.metrics(x, encoder, generator).items():
                        key = f"{prefix}/{name}/{metric}"
                        sums[key] = sums.get(key, 0.0) + float(value) * images.shape[0]
                count += images.shape[0]
        finally:
            self.train(was_training)
        return {key: total / count for key, total in sums.items()}

    def _probe(self) -> dict[str, float]:
        n = len(self.train_split)
        train = self.train_split
        if n > self.probe_samples and hasattr(train, "subset"):
            generator = torch.Generator().manual_seed(self.data_seed * 1_000_003 + 15_485_863)
            train = train.subset(torch.randperm(n, generator=generator)[: self.probe_samples].sort().values)
        args = (self.preprocess, self.eval_batch_size, self.device, self.workers)
        _, train_features, train_labels = collect_outputs(self.model, train, *args, with_features=True)
        _, test_features, test_labels = collect_outputs(self.model, self.test_split, *args, with_features=True)
        return {
            f"test/probe/{task}/accuracy": linear_probe(train_features, train_labels[task], test_features, test_labels[task])
            for task in self.probe_tasks
            if task in train_labels and task in test_labels
        }

    def metric_names(self, split: str) -> list[str]:
        if split not in ("val", "test"):
            raise ValueError(f"unknown split {split!r}")
        names = [f"{split}/{name}/{metric}" for name in self.extra_terms.selfsup for metric in ("loss", "accuracy")]
        if split == "test":
            names += [f"test/probe/{task}/accuracy" for task in self.probe_tasks]
        return names

    def evaluate(self, split: str) -> dict[str, float]:
        if split == "val":
            return self._objective_metrics(self.val_split, "val")
        if split == "test":
            return {**self._objective_metrics(self.test_split, "test"), **self._probe()}
        raise ValueError(f"unknown split {split!r}")

    def batcher_state(self):
        return {name: batcher.state_dict() for name, batcher in self.batches.items()}

    def load_batcher_state(self, state):
        for name, batcher in self.batches.items():
            batcher.load_state_dict(state[name])
