"""Fine-tuning phases: which backbone blocks train, and at what learning rate, epoch by epoch.

A config's ``train.phases`` list expresses the usual transfer-learning
recipes without code:

* feature extraction: ``{epochs: 10, train_blocks: 0}`` (frozen backbone,
  heads only; its BatchNorm layers keep their running statistics);
* "heads first, then everything at a lower learning rate":
  ``[{epochs: 3, train_blocks: 0}, {epochs: 7, train_blocks: -1, lr_scale: 0.1}]``;
* discriminative learning rates (Howard & Ruder, "Universal Language Model
  Fine-tuning for Text Classification", ACL 2018): ``layer_decay: 0.5`` trains
  backbone block ``d`` from the top at ``lr × 0.5^d``; ``backbone_lr_scale: 0.1``
  trains the whole backbone 10× slower than the heads (the usual Office-31
  recipe, e.g. Long et al., "Conditional Adversarial Domain Adaptation", 2018);
* gradual unfreezing (same paper): ``{epochs: 6, train_blocks: 1,
  unfreeze_every: 1}`` trains the top block, then one more block each epoch.

The plan is a pure function of the epoch, so applying it again after resuming
from a checkpoint restores exactly the same trainable set and learning rates.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from mtl.finetune import keep_frozen_batchnorm_eval, named_blocks, unfreeze_top

from .config import ConfigError


@dataclass(frozen=True)
class Phase:
    epochs: int
    train_blocks: int = -1
    unfreeze_every: int | None = None
    lr_scale: float = 1.0
    layer_decay: float | None = None
    backbone_lr_scale: float = 1.0


class PhasePlan:
    """The phases of one run over ``backbone``'s blocks (:func:`mtl.finetune.named_blocks`).

    Optimiser parameter groups that hold one backbone block carry
    ``block_depth`` (1 = the top block); every other group (heads, method
    networks) trains at ``lr_scale`` of its base learning rate.
    """

    def __init__(self, backbone: nn.Module, phases: Sequence[Mapping | Phase]):
        if not phases:
            raise ConfigError("train.phases is empty; leave it out to train everything in one phase")
        self.backbone = backbone
        try:
            self.named_blocks = named_blocks(backbone)
        except TypeError as error:
            raise ConfigError(f"train.phases: {error}") from error
        self.blocks = [block for _, block in self.named_blocks]
        n = len(self.blocks)
        self.phases = [p if isinstance(p, Phase) else Phase(**dict(p)) for p in phases]
        for i, phase in enumerate(self.phases):
            where = f"train.phases[{i}]"
            if phase.epochs < 1:
                raise ConfigError(f"{where}.epochs must be at least 1, not {phase.epochs}")
            if not -1 <= phase.train_blocks <= n:
                raise ConfigError(
                    f"{where}.train_blocks={phase.train_blocks}: the backbone has {n} blocks "
                    f"({', '.join(name for name, _ in self.named_blocks)}); use 0 (frozen) … {n}, or -1 for all"
                )
            if phase.unfreeze_every is not None and phase.unfreeze_every < 1:
                raise ConfigError(f"{where}.unfreeze_every must be at least 1 (or null), not {phase.unfreeze_every}")
            if phase.lr_scale <= 0:
                raise ConfigError(f"{where}.lr_scale must be positive, not {phase.lr_scale}")
            if phase.backbone_lr_scale <= 0:
                raise ConfigError(f"{where}.backbone_lr_scale must be positive, not {phase.backbone_lr_scale}")
            if phase.layer_decay is not None and phase.layer_decay <= 0:
                raise ConfigError(f"{where}.layer_decay must be positive (or null), not {phase.layer_decay}")
        self.total_epochs = sum(p.epochs for p in self.phases)
        # frozen BatchNorm layers normalise with their running statistics and never update them
        self._bn_mode = keep_frozen_batchnorm_eval(backbone)

    def locate(self, epoch: int) -> tuple[int, Phase, int]:
        """``(phase index, phase, epoch within the phase)`` of the 0-based ``epoch``."""
        start = 0
        for index, phase in enumerate(self.phases):
            if epoch < start + phase.epochs:
                return index, phase, epoch - start
            start += phase.epochs
        raise ValueError(f"epoch {epoch} is past the last phase (the phases cover {self.total_epochs} epochs)")

    def trainable_blocks(self, epoch: int) -> int:
        """How many top blocks train during ``epoch``."""
        n = len(self.blocks)
        _, phase, inner = self.locate(epoch)
        k = n if phase.train_blocks == -1 else phase.train_blocks
        if phase.unfreeze_every is not None:
            k += inner // phase.unfreeze_every
        return min(k, n)

    def lr_multipliers(self, epoch: int, param_groups: Sequence[Mapping]) -> list[float]:
        """Each optimiser group's learning-rate multiplier during ``epoch``."""
        _, phase, _ = self.locate(epoch)
        out = []
        for group in param_groups:
            depth = group.get("block_depth")
            if depth is None:
                out.append(phase.lr_scale)
                continue
            decay = phase.layer_decay ** depth if phase.layer_decay is not None else 1.0
            out.append(phase.lr_scale * phase.backbone_lr_scale * decay)
        return out

    def apply(self, epoch: int) -> int:
        """Set ``requires_grad`` for ``epoch``'s trainable blocks; return how many train."""
        k = self.trainable_blocks(epoch)
        unfreeze_top(self.backbone, k, blocks=self.blocks)
        return k

    def param_groups(self, other_params: Sequence[nn.Parameter]) -> list[dict]:
        """Optimiser groups: everything outside the backbone, then one group per block (tagged with its depth)."""
        groups = [{"params": list(other_params), "name": "heads"}] if other_params else []
        for depth, (name, block) in enumerate(reversed(self.named_blocks), start=1):
            groups.append({"params": list(block.parameters()), "name": f"backbone.{name}", "block_depth": depth})
        return groups
