"""Maximum Classifier Discrepancy (MCD)."""
from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..losses._precision import at_least_float32
from ..losses.discrepancy import classifier_discrepancy
from .base import AdaptationMethod


def _keep_fixed(modules: Iterable[nn.Module]) -> None:
    """Drop the gradients of ``modules`` so that ``optimizer.step()`` skips them (momentum included)."""
    for module in modules:
        for parameter in module.parameters():
            parameter.grad = None


def _forget_momentum(optimizer, module: nn.Module) -> None:
    """Drop ``module``'s SGD momentum buffers, so that the next ``optimizer.step()`` moves it by plain SGD.

    Without a buffer, non-Nesterov SGD starts a new one at the current (weight-decayed) gradient and
    steps by exactly that, whatever the momentum coefficient.
    """
    for parameter in module.parameters():
        state = optimizer.state.get(parameter)
        if state:
            state.pop("momentum_buffer", None)


def _fresh_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every layer's parameters initialised anew (``reset_parameters``)."""
    copied = copy.deepcopy(module)
    for layer in copied.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
        elif any(True for _ in layer.parameters(recurse=False)):
            raise ValueError(
                f"MCD cannot initialise a second classifier like the head: its {type(layer).__name__} layer "
                "has parameters but no reset_parameters()"
            )
    return copied


def class_balance_loss(logits: Tensor, eps: float = 1e-6) -> Tensor:
    """``−1/C Σ_c log(p̄_c + eps)`` with ``p̄`` the batch mean of ``softmax(logits)``.

    The cross-entropy from the uniform distribution to the batch's mean prediction: smallest
    (log C) when the batch's predictions are spread evenly over the classes.  This is the term
    Transfer-Learning-Library's ``mcd.py`` calls ``entropy`` (``tllib/alignment/mcd.py``, with
    ``eps = 1e-6``); it is not the mean per-example entropy.
    """
    mean_prediction = at_least_float32(logits).softmax(dim=1).mean(dim=0)
    return -(mean_prediction + eps).log().mean()


class MCD(AdaptationMethod):
    """Maximum classifier discrepancy, three-step update (Saito et al. 2018).

    Saito, Watanabe, Ushiku & Harada, "Maximum Classifier Discrepancy for
    Unsupervised Domain Adaptation", CVPR 2018.

    Two classifiers F1 (the model's head) and F2 (``second_classifier``, a
    freshly initialised copy of ``head``, or ``Linear(feature_dim, num_classes)``
    when no head is given) share the generator G (the backbone).  The harness
    passes the model's head, so F2 always has F1's layers.  Each iteration (:meth:`update`) runs

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
    Evaluation: F1 is the model's prediction (``test/target/<task>/accuracy``); F2
    (``f2_accuracy``), the ensemble of the two (``heads_ensemble_accuracy``: the sum of
    their logits, as the authors' code has it) and the better of F1 and F2 (``best_head_accuracy``, what
    TLLib's ``mcd.py`` reports: its ``validate`` returns both and the script keeps their
    maximum, a choice made on the test labels) are recorded beside it through
    :meth:`evaluation_heads`.  The paper reports F1, F2 and the ensemble.

    Options for Transfer-Learning-Library's ``mcd.py`` (digits: ``--trade-off 0.3
    --trade-off-entropy 0.03``); the defaults keep the paper's update:

    * ``entropy_trade_off``: adds ``entropy_trade_off · [balance(F1) + balance(F2)]``
      on the target batch to steps A and B, ``balance`` being
      :func:`class_balance_loss` (TLLib's ``entropy`` of MCD).  Step A then
      forwards the source and target batches together.
    * ``generator_momentum=False``: G steps by plain SGD while F1 and F2 keep the
      optimiser's momentum, as TLLib's two optimisers do (``optimizer_g`` without
      momentum, ``optimizer_f`` with 0.9).  It needs SGD without Nesterov.
    * ``joint_generator_batch=True``: step C forwards the source batch with the
      target one, as ``mcd.py`` does, and measures the discrepancy on the target
      half.  It matters when the classifiers have batch norm or dropout (TLLib's
      heads: ``model.architecture_args.head_block=dropout_linear_bn_relu``).
    """

    name = "mcd"
    derived_arguments = ("feature_dim", "num_classes", "head")
    term_names = ("source_ce", "discrepancy")
    owns_update = True

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        num_generator_steps: int = 4,
        trade_off: float = 1.0,
        entropy_trade_off: float = 0.0,
        generator_momentum: bool = True,
        joint_generator_batch: bool = False,
        head: nn.Module | None = None,
    ):
        super().__init__()
        if num_generator_steps < 1:
            raise ValueError(f"MCD needs at least one generator step, got {num_generator_steps}")
        if entropy_trade_off < 0:
            raise ValueError(f"MCD entropy_trade_off must be non-negative, got {entropy_trade_off}")
        self.second_classifier = _fresh_copy(head) if head is not None else nn.Linear(feature_dim, num_classes)
        self.num_generator_steps = int(num_generator_steps)
        self.trade_off = float(trade_off)
        self.entropy_trade_off = float(entropy_trade_off)
        self.generator_momentum = bool(generator_momentum)
        self.joint_generator_batch = bool(joint_generator_batch)

    def evaluation_heads(self) -> dict[str, nn.Module]:
        """F2, scored beside the model's head (F1) at evaluation."""
        return {"f2": self.second_classifier}

    def _balance(self, first_logits: Tensor, second_logits: Tensor) -> Tensor:
        return self.entropy_trade_off * (class_balance_loss(first_logits) + class_balance_loss(second_logits))

    def _step_generator(self, model, optimizer) -> None:
        """``optimizer.step()``, with G's momentum forgotten first when it steps by plain SGD."""
        if not self.generator_momentum:
            for group in optimizer.param_groups:
                if not isinstance(optimizer, torch.optim.SGD) or group.get("nesterov") or group.get("dampening"):
                    raise ValueError("MCD generator_momentum=false needs SGD without Nesterov or dampening")
            _forget_momentum(optimizer, model.backbone)
        optimizer.step()

    def _source_loss(self, task, first_logits: Tensor, second_logits: Tensor, labels: Tensor) -> Tensor:
        return task.loss(first_logits, labels) + task.loss(second_logits, labels)

    def step_a(self, *, model, task, source_images, source_labels, optimizer, target_images=None) -> Tensor:
        """G, F1 and F2 learn to classify the source (and, with ``entropy_trade_off``, to balance the target)."""
        optimizer.zero_grad(set_to_none=True)
        num_source = source_images.shape[0]
        with_target = self.entropy_trade_off > 0
        if with_target and target_images is None:
            raise ValueError("MCD with entropy_trade_off > 0 needs the target batch in step A")
        features = model.backbone(torch.cat([source_images, target_images]) if with_target else source_images)
        first, second = model.heads[task.name](features), self.second_classifier(features)
        loss = self._source_loss(task, first[:num_source], second[:num_source], source_labels)
        total = (loss + self._balance(first[num_source:], second[num_source:])) if with_target else loss
        total.backward()
        self._step_generator(model, optimizer)
        return loss.detach()

    def step_b(self, *, model, task, source_images, source_labels, target_images, optimizer) -> Tensor:
        """G fixed: F1 and F2 keep the source right while disagreeing as much as possible on the target."""
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():  # G is fixed, so no graph through it is needed
            features = model.backbone(torch.cat([source_images, target_images]))
        num_source = source_images.shape[0]
        first, second = model.heads[task.name](features), self.second_classifier(features)
        source_loss = self._source_loss(task, first[:num_source], second[:num_source], source_labels)
        if self.entropy_trade_off > 0:
            source_loss = source_loss + self._balance(first[num_source:], second[num_source:])
        discrepancy = classifier_discrepancy(first[num_source:], second[num_source:])
        (source_loss - self.trade_off * discrepancy).backward()
        _keep_fixed([model.backbone])
        optimizer.step()
        return discrepancy.detach()

    def step_c(self, *, model, task, target_images, optimizer, source_images=None) -> Tensor:
        """F1, F2 fixed: G makes them agree on the target (one generator step)."""
        optimizer.zero_grad(set_to_none=True)
        if self.joint_generator_batch:
            if source_images is None:
                raise ValueError("MCD with joint_generator_batch=True needs the source batch in step C")
            num_source = source_images.shape[0]
            features = model.backbone(torch.cat([source_images, target_images]))
            first, second = model.heads[task.name](features), self.second_classifier(features)
            discrepancy = classifier_discrepancy(first[num_source:], second[num_source:])
        else:
            features = model.backbone(target_images)
            discrepancy = classifier_discrepancy(model.heads[task.name](features), self.second_classifier(features))
        (self.trade_off * discrepancy).backward()
        # the gradient had to pass through F1 and F2 to reach G, but they must not move
        _keep_fixed([model.heads[task.name], self.second_classifier])
        self._step_generator(model, optimizer)
        return discrepancy.detach()

    def update(self, *, model, task, source_images, source_labels, target_images, optimizer, **_):
        source_ce = self.step_a(
            model=model, task=task, source_images=source_images, source_labels=source_labels, optimizer=optimizer,
            target_images=target_images,
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
            discrepancy = self.step_c(
                model=model, task=task, target_images=target_images, optimizer=optimizer, source_images=source_images
            )
        return {"source_ce": source_ce, "discrepancy": discrepancy}
