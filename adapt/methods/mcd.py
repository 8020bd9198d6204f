"""Maximum Classifier Discrepancy (MCD)."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..losses.discrepancy import classifier_discrepancy
from .base import AdaptationMethod


def _keep_fixed(modules: Iterable[nn.Module]) -> None:
    """Drop the gradients of ``modules`` so that ``optimizer.step()`` skips them (momentum included)."""
    for module in modules:
        for parameter in module.parameters():
            parameter.grad = None


class MCD(AdaptationMethod):
    """Saito, Watanabe, Ushiku & Harada, "Maximum Classifier Discrepancy for
    Unsupervised Domain Adaptation", CVPR 2018.

    Two classifiers F1 (the model's head) and F2 (``second_classifier``, an
    extra ``Linear(feature_dim, num_classes)`` shaped like the head) share the
    generator G (the backbone).  Each iteration (:meth:`update`) runs

    * A (:meth:`step_a`): G, F1, F2 minimise the source cross-entropy of both
      classifiers;
    * B (:meth:`step_b`): G fixed, F1 and F2 minimise source CE − discrepancy on
      target data: the classifiers disagree where the target leaves the source
      support;
    * C (:meth:`step_c`): F1 and F2 fixed, G minimises the discrepancy,
      ``num_generator_steps`` times, pulling target features into the support.

    The discrepancy is the mean absolute difference of the two softmax outputs
    (:func:`~adapt.losses.discrepancy.classifier_discrepancy`), multiplied by
    ``trade_off`` in B and C (paper: 1).  Paper default: ``num_generator_steps
    = 4`` (digits).  The logged terms are ``source_ce`` (step A's sum of the two
    classifiers' losses) and ``discrepancy`` (before the last generator step).
    Evaluation uses F1 alone (the paper also reports F2 and their ensemble).
    """

    term_names = ("source_ce", "discrepancy")
    owns_update = True

    def __init__(self, feature_dim: int, num_classes: int, num_generator_steps: int = 4, trade_off: float = 1.0):
        super().__init__()
        if num_generator_steps < 1:
            raise ValueError(f"MCD needs at least one generator step, got {num_generator_steps}")
        self.second_classifier = nn.Linear(feature_dim, num_classes)
        self.num_generator_steps = int(num_generator_steps)
        self.trade_off = float(trade_off)

    def _source_loss(self, task, first_logits: Tensor, second_logits: Tensor, labels: Tensor) -> Tensor:
        return task.loss(first_logits, labels) + task.loss(second_logits, labels)

    def step_a(self, *, model, task, source_images, source_labels, optimizer) -> Tensor:
        """G, F1 and F2 learn to classify the source."""
        optimizer.zero_grad(set_to_none=True)
        features = model.backbone(source_images)
        loss = self._source_loss(task, model.heads[task.name](features), self.second_classifier(features), source_labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def step_b(self, *, model, task, source_images, source_labels, target_images, optimizer) -> Tensor:
        """G fixed: F1 and F2 keep the source right while disagreeing as much as possible on the target."""
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():  # G is fixed, so no graph through it is needed
            features = model.backbone(torch.cat([source_images, target_images]))
        num_source = source_images.shape[0]
        first, second = model.heads[task.name](features), self.second_classifier(features)
        source_loss = self._source_loss(task, first[:num_source], second[:num_source], source_labels)
        discrepancy = classifier_discrepancy(first[num_source:], second[num_source:])
        (source_loss - self.trade_off * discrepancy).backward()
        _keep_fixed([model.backbone])
        optimizer.step()
        return discrepancy.detach()

    def step_c(self, *, model, task, target_images, optimizer) -> Tensor:
        """F1, F2 fixed: G makes them agree on the target (one generator step)."""
        optimizer.zero_grad(set_to_none=True)
        features = model.backbone(target_images)
        discrepancy = classifier_discrepancy(model.heads[task.name](features), self.second_classifier(features))
        (self.trade_off * discrepancy).backward()
        # the gradient had to pass through F1 and F2 to reach G, but they must not move
        _keep_fixed([model.heads[task.name], self.second_classifier])
        optimizer.step()
        return discrepancy.detach()

    def update(self, *, model, task, source_images, source_labels, target_images, optimizer, progress):
        source_ce = self.step_a(
            model=model, task=task, source_images=source_images, source_labels=source_labels, optimizer=optimizer
        )
        self.step_b(
            model=model,
            task=task,
            source_images=source_images,
            source_labels=source_labels,
            target_images=target_images,
            optimizer=optimizer,
        )
        for _ in range(self.num_generator_steps):
            discrepancy = self.step_c(model=model, task=task, target_images=target_images, optimizer=optimizer)
        return {"source_ce": source_ce, "discrepancy": discrepancy}
