"""Fine-tuning tools: freezing, frozen BatchNorm, blocks, discriminative
learning rates, gradual unfreezing, feature caching and linear probes.

* :func:`freeze` / :func:`unfreeze` switch ``requires_grad`` off / on.
* :func:`keep_frozen_batchnorm_eval` makes frozen BatchNorm layers compute in
  eval mode (running statistics, no updates) even while the model trains.
* :func:`blocks` / :func:`named_blocks` split a backbone into its top-level
  blocks, input side first; :func:`unfreeze_top` trains the last ``k``.
* :func:`layerwise_param_groups`: discriminative fine-tuning, heads at the base
  learning rate and each backbone block below at a further factor ``decay``
  (Howard & Ruder, "Universal Language Model Fine-tuning for Text
  Classification", ACL 2018).
* :class:`GradualUnfreezing`: the same paper's gradual unfreezing, driven by an
  ``{epoch: k}`` schedule.
* :func:`extract_features` + :func:`linear_probe`: cache features once and fit
  a logistic-regression probe on them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .backbones import DANNDigitNet, DANNSVHNNet, LeNet, MultiLeNet, SmallConvNet
from .bottleneck import WithBottleneck
from .stacking import ConcatBackbones

__all__ = [
    "BlockGroup",
    "FrozenBatchNormMode",
    "GradualUnfreezing",
    "blocks",
    "extract_features",
    "freeze",
    "keep_frozen_batchnorm_eval",
    "layerwise_param_groups",
    "linear_probe",
    "named_blocks",
    "unfreeze",
    "unfreeze_top",
]

_NORM_WITH_STATS = (nn.modules.batchnorm._NormBase,)  # BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm
_FROZEN_MARK = "_mtl_frozen"
_HOOK_MARK = "_mtl_frozen_bn_hooks"


# --------------------------------------------------------------------------- freezing
def _set_trainable(module: nn.Module, flag: bool) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(flag)
    for m in module.modules():
        if isinstance(m, _NORM_WITH_STATS):
            setattr(m, _FROZEN_MARK, not flag)
    return module


def freeze(module: nn.Module) -> nn.Module:
    """Turn ``requires_grad`` off for every parameter of ``module``; returns it.

    Also marks its BatchNorm layers as frozen, which matters for layers without
    affine parameters under :func:`keep_frozen_batchnorm_eval`.
    """
    return _set_trainable(module, False)


def unfreeze(module: nn.Module) -> nn.Module:
    """Turn ``requires_grad`` on for every parameter of ``module``; returns it."""
    return _set_trainable(module, True)


def _is_frozen(norm: nn.Module) -> bool:
    params = list(norm.parameters(recurse=False))
    if params:
        return not any(p.requires_grad for p in params)
    return bool(getattr(norm, _FROZEN_MARK, False))


def _frozen_bn_pre_hook(module: nn.Module, args: Any) -> None:
    if module.training and _is_frozen(module):
        module.training = False
        module._mtl_restore_training = True


def _frozen_bn_post_hook(module: nn.Module, args: Any, output: Any) -> None:
    if getattr(module, "_mtl_restore_training", False):
        module.training = True
        module._mtl_restore_training = False


class FrozenBatchNormMode:
    """Handle returned by :func:`keep_frozen_batchnorm_eval`; ``remove()`` (or
    leaving a ``with`` block) takes the hooks off again."""

    def __init__(self, modules: list[nn.Module], handles: list):
        self.modules = modules
        self._handles = handles

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for module in self.modules:
            if hasattr(module, _HOOK_MARK):
                delattr(module, _HOOK_MARK)
        self._handles, self.modules = [], []

    def __enter__(self) -> "FrozenBatchNormMode":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def __len__(self) -> int:
        return len(self.modules)


def keep_frozen_batchnorm_eval(model: nn.Module) -> FrozenBatchNormMode:
    """Frozen BatchNorm layers of ``model`` compute as in eval mode, even in train mode.

    Implementation (chosen over overriding ``train()``): a forward pre-hook on
    every BatchNorm/InstanceNorm layer with running statistics.  When the layer
    is frozen (it has affine parameters and none requires grad, or it has none
    and was :func:`freeze`-d) the hook clears ``training`` for that one call and a
    forward hook (``always_call=True``) restores it.  So the layer normalises with
    its running statistics and never updates them (nor ``num_batches_tracked``),
    whichever module ``train()`` was called on, and the decision follows
    ``requires_grad`` at every call: a layer unfrozen by :func:`unfreeze_top` or
    :class:`GradualUnfreezing` goes back to batch statistics at its next
    forward, with no ``train()`` call needed.  ``module.training`` is left as the
    user set it.  Norm layers added to the model later are not covered; calling
    this twice does not install the hooks twice.
    """
    modules, handles = [], []
    for m in model.modules():
        if isinstance(m, _NORM_WITH_STATS) and m.track_running_stats and not getattr(m, _HOOK_MARK, False):
            handles.append(m.register_forward_pre_hook(_frozen_bn_pre_hook))
            handles.append(m.register_forward_hook(_frozen_bn_post_hook, always_call=True))
            setattr(m, _HOOK_MARK, True)
            modules.append(m)
    return FrozenBatchNormMode(modules, handles)


# --------------------------------------------------------------------------- blocks
class BlockGroup(nn.Module):
    """Several existing modules (and loose parameters) treated as one block.

    It only references them: the backbone is not changed, and the group is not
    meant to be called.  ``parameters()``, :func:`freeze` and :func:`unfreeze`
    work on it as on any module.
    """

    def __init__(self, modules: Mapping[str, nn.Module], params: Mapping[str, nn.Parameter] | None = None):
        super().__init__()
        for key, module in modules.items():
            self.add_module(key.replace(".", "_"), module)
        for key, param in (params or {}).items():
            self.register_parameter(key.replace(".", "_"), param)

    def forward(self, *args: Any) -> Any:  # pragma: no cover - not a layer
        raise RuntimeError("a BlockGroup only groups parameters of a backbone; call the backbone instead")


def _owns_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _split_sequential(prefix: str, seq: nn.Sequential) -> list[tuple[str, nn.Module]]:
    """Split a Sequential into blocks, each starting at a layer with its own
    weights (Conv/Linear); norms and parameter-free layers join the current block."""
    groups: list[list[tuple[str, nn.Module]]] = []
    pending: list[tuple[str, nn.Module]] = []
    norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    for key, child in seq.named_children():
        starts = _owns_params(child) and not isinstance(child, norms)
        if starts or not groups:
            if starts:
                groups.append(pending + [(key, child)])
                pending = []
            else:
                pending.append((key, child))
        else:
            groups[-1].append((key, child))
    if pending:
        if groups:
            groups[-1].extend(pending)
        else:
            groups.append(pending)
    out = []
    for group in groups:
        keys = [k for k, _ in group]
        name = f"{prefix}.{keys[0]}" if len(keys) == 1 else f"{prefix}.{keys[0]}-{keys[-1]}"
        out.append((name.lstrip("."), nn.Sequential(*[m for _, m in group])))
    return out


def _group(backbone: nn.Module, paths: Sequence[str]) -> nn.Module:
    if len(paths) == 1:
        return backbone.get_submodule(paths[0])
    return BlockGroup({p: backbone.get_submodule(p) for p in paths})


def _torchvision_blocks(backbone: nn.Module) -> list[tuple[str, nn.Module]] | None:
    try:
        import torchvision.models as tvm
    except ImportError:  # pragma: no cover
        return None
    if isinstance(backbone, tvm.ResNet):
        return [("stem", BlockGroup({"conv1": backbone.conv1, "bn1": backbone.bn1}))] + [
            (f"layer{i}", getattr(backbone, f"layer{i}")) for i in range(1, 5)
        ] + [("fc", backbone.fc)]
    if isinstance(backbone, (tvm.MobileNetV2, tvm.MobileNetV3, tvm.EfficientNet)):
        return [(f"features.{i}", m) for i, m in enumerate(backbone.features)] + [("classifier", backbone.classifier)]
    if isinstance(backbone, tvm.ConvNeXt):
        # stem, stage 1, then (downsampling + stage) pairs; the classifier's final norm joins the last stage
        n = len(backbone.features)
        out = [("features.0", backbone.features[0]), ("features.1", backbone.features[1])]
        for i in range(2, n, 2):
            paths = [f"features.{j}" for j in range(i, min(i + 2, n))]
            if i + 2 >= n:
                paths.append("classifier")
            out.append(("+".join(paths), _group(backbone, paths)))
        return out
    if isinstance(backbone, tvm.VisionTransformer):
        stem = BlockGroup({"conv_proj": backbone.conv_proj},
                          {"class_token": backbone.class_token, "pos_embedding": backbone.encoder.pos_embedding})
        layers = list(backbone.encoder.layers.named_children())
        out = [("stem", stem)]
        for i, (key, layer) in enumerate(layers):
            if i == len(layers) - 1:  # the final LayerNorm (and heads, if any remain) join the top layer
                paths = [f"encoder.layers.{key}", "encoder.ln"] + (["heads"] if _owns_params(backbone.heads) else [])
                out.append(("+".join(paths), _group(backbone, paths)))
            else:
                out.append((f"encoder.layers.{key}", layer))
        return out
    return None


def named_blocks(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, block)`` pairs, input side first, covering every parameter once.

    * torchvision ResNet: ``stem`` (conv1 + bn1), ``layer1`` … ``layer4``;
    * MobileNetV2/V3, EfficientNet: each entry of ``features``;
    * ConvNeXt: stem, stage 1, then each downsampling layer with its stage (the
      final LayerNorm joins the last);
    * ViT: stem (patch projection, class token, position embedding), then each
      encoder layer (the final LayerNorm joins the last);
    * the backbones of :mod:`mtl.backbones` and any ``nn.Sequential``: one block
      per Conv/Linear layer with the norm, activation, pooling and dropout layers
      that follow it;
    * :class:`~mtl.stacking.ConcatBackbones`: the members' blocks aligned at the
      top (block ``d`` from the top holds each member's ``d``-th block from the top);
    * :class:`~mtl.bottleneck.WithBottleneck`: the backbone's blocks, then the bottleneck.

    A remaining classifier with parameters becomes the top block; blocks with no
    parameters are left out.  A :class:`~mtl.MultiTaskModel` is split by its
    backbone.  Other modules: pass your own list of blocks to the functions
    that take ``blocks=``.
    """
    if hasattr(backbone, "backbone") and hasattr(backbone, "heads"):
        backbone = backbone.backbone
    if isinstance(backbone, ConcatBackbones):
        return _stacked_blocks(backbone)
    if isinstance(backbone, WithBottleneck):  # the backbone's blocks, then the bottleneck on top
        found = [(f"backbone.{n}", b) for n, b in named_blocks(backbone.backbone)] + [("bottleneck", backbone.bottleneck)]
        _check_cover(backbone, [b for _, b in found])
        return found
    found = _torchvision_blocks(backbone)
    if found is None:
        if isinstance(backbone, (LeNet, MultiLeNet, SmallConvNet, DANNDigitNet, DANNSVHNNet)):
            found = []
            for key, child in backbone.named_children():
                found += _split_sequential(key, child) if isinstance(child, nn.Sequential) else [(key, child)]
        elif isinstance(backbone, nn.Sequential):
            found = _split_sequential("", backbone)
        else:
            raise TypeError(
                f"no block structure known for {type(backbone).__name__}; supported: torchvision ResNet, "
                "MobileNetV2/V3, EfficientNet, ConvNeXt, VisionTransformer, the mtl.backbones networks and "
                "nn.Sequential. Pass blocks=[...] (input side first) instead."
            )
    found = [(n, b) for n, b in found if _owns_params(b)]
    _check_cover(backbone, [b for _, b in found])
    return found


def _stacked_blocks(stack: ConcatBackbones) -> list[tuple[str, nn.Module]]:
    """Blocks of a stack aligned at the top: block ``d`` from the top groups every
    member's ``d``-th block from the top, so "the top k blocks" means the top k of each member."""
    per_member = [named_blocks(member) for member in stack.members]
    depth = max(len(parts) for parts in per_member)
    out = []
    for d in range(depth, 0, -1):
        level = {f"members.{i}.{parts[-d][0]}": parts[-d][1] for i, parts in enumerate(per_member) if len(parts) >= d}
        name = "+".join(level)
        out.append((name, next(iter(level.values())) if len(level) == 1 else BlockGroup(level)))
    _check_cover(stack, [b for _, b in out])
    return out


def blocks(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's top-level blocks, input side first (see :func:`named_blocks`)."""
    return [b for _, b in named_blocks(backbone)]


def _check_cover(backbone: nn.Module, parts: Sequence[nn.Module]) -> None:
    names = {id(p): n for n, p in backbone.named_parameters()}
    seen: dict[int, int] = {}
    for i, part in enumerate(parts):
        for p in part.parameters():
            if id(p) not in names:
                raise ValueError(f"block {i} holds a parameter that is not in the backbone")
            if id(p) in seen and seen[id(p)] != i:
                raise ValueError(f"parameter {names[id(p)]} is in blocks {seen[id(p)]} and {i}")
            seen[id(p)] = i
    left = [n for i, n in names.items() if i not in seen]
    if left:
        raise ValueError(f"parameters in no block: {', '.join(left)}")


def _resolve_blocks(backbone: nn.Module, given: Sequence[nn.Module] | None) -> list[nn.Module]:
    if given is None:
        return blocks(backbone)
    given = list(given)
    _check_cover(backbone, given)
    return given


def _param_names(backbone: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in backbone.named_parameters()}


def _set_top(backbone: nn.Module, parts: list[nn.Module], k: int, freeze_rest: bool) -> list[str]:
    n = len(parts)
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and the number of blocks ({n}), not {k}")
    names = _param_names(backbone)
    changed: list[str] = []
    for i, part in enumerate(parts):
        want = i >= n - k
        if not want and not freeze_rest:
            continue
        for p in part.parameters():
            if p.requires_grad != want:
                p.requires_grad_(want)
                changed.append(names[id(p)])
        for m in part.modules():
            if isinstance(m, _NORM_WITH_STATS):
                setattr(m, _FROZEN_MARK, not want)
    return changed


def unfreeze_top(backbone: nn.Module, k: int, *, freeze_rest: bool = True,
                 blocks: Sequence[nn.Module] | None = None) -> list[str]:
    """Make the last ``k`` blocks trainable (and, by default, freeze the others).

    Returns the names of the parameters whose ``requires_grad`` changed.
    ``k=0`` freezes the whole backbone; ``k=len(blocks(backbone))`` trains all of it.
    """
    return _set_top(backbone, _resolve_blocks(backbone, blocks), k, freeze_rest)


# --------------------------------------------------------------------------- learning rates
def layerwise_param_groups(model: nn.Module, base_lr: float, decay: float, *,
                           blocks: Sequence[nn.Module] | None = None,
                           trainable_only: bool = False, **group_options: Any) -> list[dict]:
    """Optimiser parameter groups with discriminative learning rates.

    Everything outside ``model.backbone`` (the task heads, and any other module
    the model holds) gets ``base_lr``; backbone block ``i`` counted from the top
    (``i = 1`` is the block just below the heads) gets ``base_lr * decay**i``,
    as in ULMFiT's discriminative fine-tuning (Howard & Ruder, ACL 2018; they
    divide by 2.6 per layer, i.e. ``decay = 1/2.6``).  A model without a
    ``backbone`` attribute is treated as a backbone alone.

    Each group is ``{"params", "lr", "name", **group_options}`` (``name`` is
    ``"heads"`` or ``"backbone.<block>"``), heads first.  Frozen parameters are
    included unless ``trainable_only`` so that :class:`GradualUnfreezing` can
    unfreeze them later without touching the optimiser (optimisers skip
    parameters whose ``.grad`` is ``None``).
    """
    if base_lr <= 0 or decay <= 0:
        raise ValueError(f"base_lr and decay must be positive, not {base_lr} and {decay}")
    backbone = getattr(model, "backbone", model)
    if blocks is None:
        parts = named_blocks(backbone)
    else:
        parts = [(str(i), b) for i, b in enumerate(_resolve_blocks(backbone, blocks))]
    keep = (lambda p: p.requires_grad) if trainable_only else (lambda p: True)
    groups = []
    in_backbone = {id(p) for p in backbone.parameters()}
    heads = [p for p in model.parameters() if id(p) not in in_backbone and keep(p)]
    if heads:
        groups.append({"params": heads, "lr": base_lr, "name": "heads", **group_options})
    for depth, (name, part) in enumerate(reversed(parts), start=1):
        params = [p for p in part.parameters() if keep(p)]
        if params:
            groups.append({"params": params, "lr": base_lr * decay ** depth, "name": f"backbone.{name}", **group_options})
    return groups


# --------------------------------------------------------------------------- gradual unfreezing
class GradualUnfreezing:
    """Unfreeze the backbone's top blocks as training proceeds.

    ``schedule`` maps an epoch to the number ``k`` of top blocks that are
    trainable from that epoch on (``None`` or ``-1``: all blocks); before the
    first scheduled epoch the whole backbone is frozen.  ULMFiT's schedule
    (one more block per epoch) is ``{0: 1, 1: 2, 2: 3, ...}`` (Howard & Ruder,
    ACL 2018); a "train the head, then everything" schedule is ``{0: 0, 5: None}``.

    Call :meth:`step` with the epoch about to start.  It sets the exact state
    the schedule prescribes (so calling it again, or after resuming from a
    checkpoint, is safe) and returns the names (relative to the backbone) of the
    parameters whose ``requires_grad`` changed.  Build the optimiser with all
    parameters, e.g. :func:`layerwise_param_groups`; frozen ones get no
    gradient and are skipped.
    """

    def __init__(self, backbone: nn.Module, schedule: Mapping[int, int | None],
                 blocks: Sequence[nn.Module] | None = None):
        self.backbone = backbone
        self.blocks = _resolve_blocks(backbone, blocks)
        n = len(self.blocks)
        if not schedule:
            raise ValueError("the unfreezing schedule is empty")
        self.schedule: dict[int, int] = {}
        for epoch, k in sorted(schedule.items()):
            if not isinstance(epoch, int) or epoch < 0:
                raise ValueError(f"schedule epochs must be integers >= 0, not {epoch!r}")
            k = n if k is None or k == -1 else k
            if not isinstance(k, int) or not 0 <= k <= n:
                raise ValueError(f"schedule[{epoch}] = {k!r}: the backbone has {n} blocks; use 0..{n}, -1 or None")
            self.schedule[epoch] = k
        self.current: int | None = None

    def trainable_blocks(self, epoch: int) -> int:
        """How many top blocks the schedule trains at ``epoch``."""
        k = 0
        for start, value in self.schedule.items():
            if start <= epoch:
                k = value
        return k

    def step(self, epoch: int) -> list[str]:
        k = self.trainable_blocks(epoch)
        changed = _set_top(self.backbone, self.blocks, k, freeze_rest=True)
        self.current = k
        return changed


# --------------------------------------------------------------------------- features and probes
def _inputs(batch: Any) -> tuple[Tensor, Any]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    if isinstance(batch, Mapping) and "image" in batch:
        return batch["image"], batch.get("label")
    raise TypeError(f"cannot find the inputs in a batch of type {type(batch).__name__}; "
                    "expected a tensor, an (inputs, labels) pair or a dict with 'image'")


@torch.no_grad()
def extract_features(backbone: nn.Module, data: Any, batch_size: int = 256, *,
                     device: torch.device | str | None = None, return_labels: bool = False,
                     out_device: torch.device | str | None = "cpu"):
    """Run ``backbone`` once over ``data`` in eval mode and return the stacked features.

    ``data`` is a tensor of inputs (split into ``batch_size`` chunks), a
    ``DataLoader`` or any iterable of batches (a tensor, ``(inputs, labels, ...)``
    or ``{"image", "label"}``), or a map-style dataset (wrapped in an unshuffled
    ``DataLoader`` with ``batch_size``).  ``device`` defaults to the backbone's;
    features land on ``out_device`` (CPU by default, ready for
    :func:`linear_probe`; ``None`` keeps them on ``device``).  With
    ``return_labels=True`` the result is ``(features, labels)``.  The backbone's
    train/eval mode is restored afterwards.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    if device is None:
        first = next(backbone.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    if isinstance(data, Tensor):
        batches: Iterable = data.split(batch_size)
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (list, tuple)):
        batches = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    else:
        batches = data
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    try:
        for batch in batches:
            x, y = _inputs(batch)
            out = backbone(x.to(device))
            feats.append(out if out_device is None else out.to(out_device))
            if return_labels:
                if y is None:
                    raise ValueError("return_labels=True but the batches carry no labels")
                labels.append(torch.as_tensor(y))
    finally:
        backbone.train(was_training)
    if not feats:
        raise ValueError("no data to extract features from")
    features = torch.cat(feats)
    return (features, torch.cat(labels)) if return_labels else features


def _numpy(x: Any):
    import numpy as np

    if isinstance(x, Tensor):
        x = x.detach().cpu().float().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def linear_probe(features_train: Any, y_train: Any, features_test: Any, y_test: Any, C: float = 1.0, *,
                 max_iter: int = 1000, standardize: bool = True, seed: int = 0) -> float:
    """Test accuracy of a logistic-regression probe fitted on frozen features.

    scikit-learn's ``LogisticRegression(C=C)`` (L-BFGS, multinomial), fitted on
    the training features, scored on the test features.  With ``standardize``
    (the default) the features are standardised with the training mean and
    standard deviation first, which helps L-BFGS converge and keeps the probe
    linear.  Tensors or arrays; features are flattened to ``(n, -1)``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, xte = _numpy(features_train), _numpy(features_test)
    xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    ytr, yte = _numpy(y_train).ravel(), _numpy(y_test).ravel()
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError(f"features and labels differ in length: train {len(xtr)} vs {len(ytr)}, test {len(xte)} vs {len(yte)}")
    probe = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    model = make_pipeline(StandardScaler(), probe) if standardize else probe
    model.fit(xtr, ytr)
    return float((model.predict(xte) == yte).mean())
