"""Backbones from pretrained classification networks (transfer learning).

:func:`pretrained_backbone` builds a torchvision classification network by
name, removes its classifier (it becomes :class:`torch.nn.Identity`) and sets
``out_features`` to the size of the features that classifier used to read,
so the result plugs straight into :meth:`mtl.MultiTaskModel.from_tasks`::

    backbone = pretrained_backbone("resnet50", weights="DEFAULT")
    model = MultiTaskModel.from_tasks(backbone, tasks)

Weights come from

* ``None``: random initialisation;
* ``"DEFAULT"``, a member name such as ``"IMAGENET1K_V2"``, a qualified name
  such as ``"ResNet50_Weights.IMAGENET1K_V2"`` or the enum member itself:
  torchvision's weights (torchvision downloads them into its cache where the
  internet is reachable);
* a path to a local checkpoint, read with
  ``torch.load(path, map_location="cpu", weights_only=True)``.  Either a plain
  state dict (a torchvision ``.pth`` file, possibly still holding its
  classifier), ``{"state_dict": ...}``, or a file written by
  :func:`save_backbone`.

Loading a checkpoint is all or nothing: the classifier keys of the original
network (``fc.*``, ``classifier.*``, ``heads.*`` depending on the family) are
dropped, with a log message naming them, and every other key must match the
backbone exactly.  Anything else (missing keys, unexpected keys, shape
mismatches) raises :class:`CheckpointMismatchError` listing them all.

The small backbones of :mod:`mtl.backbones` (``lenet``, ``multilenet``,
``small_convnet``, ``dann_digits``, ``dann_svhn``) are accepted too, with a
local checkpoint or random weights, so a backbone pretrained here (for
example LeNet on MNIST) can be saved with :func:`save_backbone` and loaded
again for transfer (to USPS)::

    save_backbone(model.backbone, "lenet_mnist.pt", name="lenet", kwargs={"image_size": 28})
    backbone = pretrained_backbone("lenet_mnist.pt")        # name and kwargs from the file

``timm:<name>`` builds a timm model (``num_classes=0``) when timm is installed.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_torch_save, load_weights_only
from torch import nn

from .backbones import BACKBONES
from .finetune import freeze, keep_frozen_batchnorm_eval

log = logging.getLogger(__name__)

__all__ = [
    "CheckpointMismatchError",
    "TORCHVISION_FAMILIES",
    "load_backbone_state",
    "pretrained_backbone",
    "resolve_weights",
    "save_backbone",
    "supported_backbones",
]

#: torchvision name prefixes accepted by :func:`pretrained_backbone`, with the
#: classifier that is removed (a dotted module path) for each family.
TORCHVISION_FAMILIES: dict[str, str] = {
    "resnet": "fc",
    "resnext": "fc",
    "wide_resnet": "fc",
    "mobilenet_v2": "classifier",
    "mobilenet_v3": "classifier",
    "efficientnet": "classifier",
    # ConvNeXt's classifier is LayerNorm2d → Flatten → Linear; only the Linear goes,
    # the final norm and the flattening belong to the feature extractor.
    "convnext": "classifier.2",
    "vit_": "heads",
}

_CHECKPOINT_FORMAT = "mtlda.backbone"
_CHECKPOINT_VERSION = 1
_PATH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar")
_MAX_LISTED = 40


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the backbone: nothing was loaded.

    ``missing``, ``unexpected`` and ``mismatched`` (``{key: (checkpoint shape,
    model shape)}``) hold the details; the message lists them too.
    """

    def __init__(self, source: str, missing: list[str], unexpected: list[str], mismatched: dict[str, tuple]):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
        if mismatched:
            shapes = [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, (a, b) in mismatched.items()]
            parts.append(f"shape mismatches ({len(shapes)}): {_listing(shapes)}")
        super().__init__(f"{source} does not fit the backbone, nothing was loaded; " + "; ".join(parts))


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown if len(items) <= _MAX_LISTED else f"{shown}, ... and {len(items) - _MAX_LISTED} more"


# --------------------------------------------------------------------------- names
def _family(name: str) -> str | None:
    for prefix in sorted(TORCHVISION_FAMILIES, key=len, reverse=True):
        if name.startswith(prefix):
            return prefix
    return None


def supported_backbones() -> list[str]:
    """Every name :func:`pretrained_backbone` accepts (``timm:<name>`` aside)."""
    import torchvision.models as tvm

    names = [n for n in tvm.list_models(module=tvm) if _family(n) is not None]
    return sorted(names) + sorted(BACKBONES)


def resolve_weights(name: str, weights: Any):
    """The torchvision weights enum member that ``weights`` names for model ``name``.

    Accepts ``"DEFAULT"``, a member name (``"IMAGENET1K_V1"``), a qualified name
    (``"ResNet18_Weights.IMAGENET1K_V1"``) or a member.  Nothing is downloaded.
    """
    import torchvision.models as tvm

    enum = tvm.get_model_weights(name)
    if isinstance(weights, enum):
        return weights
    if isinstance(weights, tvm.WeightsEnum):
        raise ValueError(f"{weights} are weights for another architecture, not {name}; valid: {_members(enum)}")
    if not isinstance(weights, str):
        raise TypeError(f"weights must be None, a string, a path or a {enum.__name__} member, not {type(weights).__name__}")
    member = weights.split(".", 1)[1] if weights.startswith(enum.__name__ + ".") else weights
    if "." in member:  # qualified with another enum's name
        raise ValueError(f"{weights!r} are not weights for {name}; valid: {_members(enum)}")
    try:
        return enum[member]
    except KeyError:
        raise ValueError(f"unknown weights {weights!r} for {name}; valid: {_members(enum)}") from None


def _members(enum) -> str:
    return ", ".join(["DEFAULT"] + [m for m in enum.__members__ if m != "DEFAULT"])


def _is_weight_name(name: str | None, weights: str) -> bool:
    if "_Weights." in weights or weights == "DEFAULT":
        return True
    if name is None or _family(name) is None:
        return False
    import torchvision.models as tvm

    return weights in tvm.get_model_weights(name).__members__


# --------------------------------------------------------------------------- building
def pretrained_backbone(
    name: str,
    weights: Any = None,
    trainable: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """A classification network without its classifier, with ``out_features`` set.

    Args:
        name: a torchvision model name (``resnet18``, ``resnet50``,
            ``mobilenet_v3_large``, ``mobilenet_v3_small``, ``efficientnet_b0``,
            ``convnext_tiny``, ``vit_b_16`` and the rest of those families; see
            :func:`supported_backbones`), a backbone of :mod:`mtl.backbones`,
            ``timm:<name>``, or the path of a checkpoint written by
            :func:`save_backbone` (the name and constructor arguments are then
            read from the file).
        weights: ``None`` (random), torchvision weights (``"DEFAULT"``, a member
            name or member), or the path of a local checkpoint.
        trainable: ``False`` freezes every parameter (``requires_grad=False``)
            and installs :func:`mtl.finetune.keep_frozen_batchnorm_eval`, so
            BatchNorm statistics stay fixed when the model trains.
        **kwargs: passed to the model constructor (for example ``image_size`` for
            ``vit_*``, ``in_channels``/``image_size`` for ``lenet``).

    The returned module carries ``backbone_spec = {"name", "kwargs"}``, which
    :func:`save_backbone` records so the file can be loaded by path alone.
    """
    if weights is None and _looks_like_checkpoint(name):
        name, weights = None, name
    payload = None
    if _is_path(name, weights):
        payload = _read_checkpoint(weights)
        saved_name = payload.get("name") if _is_ours(payload) else None
        if name is None:
            if saved_name is None:
                raise ValueError(f"{weights} does not record which backbone it holds; pass the name, "
                                 f"for example pretrained_backbone('resnet18', weights={str(weights)!r})")
            name = saved_name
            kwargs = {**payload.get("kwargs", {}), **kwargs}
        elif saved_name is not None and saved_name != name:
            raise ValueError(f"{weights} holds a {saved_name!r} backbone, not {name!r}")
        elif saved_name is not None:
            kwargs = {**payload.get("kwargs", {}), **kwargs}

    if name.startswith("timm:"):
        backbone, head = _build_timm(name[len("timm:"):], weights if payload is None else None, kwargs)
    elif name in BACKBONES:
        if payload is None and weights is not None:
            raise ValueError(f"{name!r} has no published weights; weights must be None or a checkpoint path, not {weights!r}")
        backbone, head = BACKBONES[name](**kwargs), None
    elif _family(name) is not None:
        backbone, head = _build_torchvision(name, weights if payload is None else None, kwargs)
    else:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(supported_backbones())}, "
                         "or 'timm:<name>' with timm installed")

    if payload is not None:
        load_backbone_state(backbone, payload, source=str(weights), classifier=head)
    backbone.backbone_spec = {"name": name, "kwargs": dict(kwargs)}
    if not trainable:
        freeze(backbone)
        keep_frozen_batchnorm_eval(backbone)
    return backbone


def _looks_like_checkpoint(name: Any) -> bool:
    if isinstance(name, os.PathLike):
        return True
    return (isinstance(name, str) and not name.startswith("timm:") and name not in BACKBONES
            and _family(name) is None and (os.path.isfile(name) or name.endswith(_PATH_SUFFIXES)))


def _is_path(name: str | None, weights: Any) -> bool:
    if weights is None:
        return False
    if isinstance(weights, os.PathLike):
        return True
    if not isinstance(weights, str):
        return False
    if _is_weight_name(name, weights):
        return False
    if os.path.exists(weights) or os.sep in weights or weights.endswith(_PATH_SUFFIXES):
        return True
    return False


def _build_torchvision(name: str, weights: Any, kwargs: dict) -> tuple[nn.Module, str]:
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise ValueError(f"unknown torchvision model {name!r}; choose one of {', '.join(supported_backbones())}")
    enum = None if weights is None else resolve_weights(name, weights)
    model = tvm.get_model(name, weights=enum, **kwargs)
    head = TORCHVISION_FAMILIES[_family(name)]
    parent_path, _, leaf = head.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = parent[int(leaf)] if leaf.isdigit() else getattr(parent, leaf)
    if head == "heads":  # ViT: Sequential(head=Linear) (plus pre_logits when representation_size is set)
        out = model.hidden_dim if "pre_logits" not in old._modules else old.pre_logits.out_features
    elif isinstance(old, nn.Sequential):  # MobileNet/EfficientNet: the first Linear reads the pooled features
        out = next(m for m in old.modules() if isinstance(m, nn.Linear)).in_features
    else:
        out = old.in_features
    if leaf.isdigit():
        parent[int(leaf)] = nn.Identity()
    else:
        setattr(parent, leaf, nn.Identity())
    model.out_features = int(out)
    return model, head


def _build_timm(name: str, weights: Any, kwargs: dict) -> tuple[nn.Module, Any]:
    try:
        import timm
    except ImportError:
        raise ImportError(f"backbone 'timm:{name}' needs timm: pip install timm") from None
    if weights not in (None, "DEFAULT"):
        raise ValueError(f"timm weights are chosen by the model name's tag (timm:{name}.<tag>); "
                         f"weights must be None, 'DEFAULT' or a checkpoint path, not {weights!r}")
    model = timm.create_model(name, pretrained=weights == "DEFAULT", num_classes=0, **kwargs)
    model.out_features = int(model.num_features)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return model, cfg.get("classifier")


# --------------------------------------------------------------------------- checkpoints
def _read_checkpoint(path: Any) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint {path} does not exist")
    payload = load_weights_only(path)  # one-line CheckpointReadError naming the file
    if not isinstance(payload, Mapping):
        raise ValueError(f"{path} holds a {type(payload).__name__}, not a state dict")
    return dict(payload)


def _is_ours(payload: Mapping) -> bool:
    return payload.get("format") == _CHECKPOINT_FORMAT


def _state_dict_of(payload: Mapping, source: str) -> dict[str, torch.Tensor]:
    if _is_ours(payload):
        if payload.get("version") != _CHECKPOINT_VERSION:
            raise ValueError(f"{source}: backbone checkpoint version {payload.get('version')} is not {_CHECKPOINT_VERSION}")
        state = payload["state_dict"]
    elif "state_dict" in payload and isinstance(payload["state_dict"], Mapping):
        state = payload["state_dict"]
    else:
        state = payload
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{source} is not a state dict (entries that are not tensors: {_listing([str(k) for k in bad])})")
    return dict(state)


def _head_prefixes(classifier: Any) -> list[str]:
    if classifier is None:
        return []
    if isinstance(classifier, str):
        return [classifier]
    return [str(c) for c in classifier]


def load_backbone_state(backbone: nn.Module, checkpoint: Mapping, source: str = "checkpoint",
                        classifier: str | list[str] | None = None) -> list[str]:
    """Load ``checkpoint`` (a state dict, ``{"state_dict": ...}`` or a
    :func:`save_backbone` payload) into ``backbone`` exactly.

    Keys under ``classifier`` (a dotted module path, or several) are dropped and
    logged; so are the ``heads.*`` of a whole :class:`~mtl.MultiTaskModel`
    checkpoint, whose ``backbone.`` prefix is removed (as is ``module.`` from a
    ``DataParallel`` checkpoint).  Every other difference raises
    :class:`CheckpointMismatchError` before anything is copied.  Returns the
    dropped keys.
    """
    state = _state_dict_of(checkpoint, source)
    own = backbone.state_dict()
    dropped: list[str] = []
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in own):
        state = {k[len("module."):]: v for k, v in state.items()}
    if (any(k.startswith("backbone.") for k in state) and all(k.startswith(("backbone.", "heads.")) for k in state)
            and not any(k.startswith("backbone.") for k in own)):
        dropped += sorted(k for k in state if k.startswith("heads."))
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    for prefix in _head_prefixes(classifier):
        hits = sorted(k for k in state if k.startswith(prefix + ".") and k not in own)
        dropped += hits
        for key in hits:
            del state[key]
    if dropped:
        log.warning("%s: dropped %d classifier key(s) the backbone does not use: %s",
                    source, len(dropped), ", ".join(dropped))
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = {k: (tuple(state[k].shape), tuple(own[k].shape))
                  for k in sorted(own) if k in state and state[k].shape != own[k].shape}
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(source, missing, unexpected, mismatched)
    backbone.load_state_dict(state, strict=True)
    return dropped


def _check_plain(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}")
            _check_plain(item, f"{where}.{key}")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; only numbers, strings, lists and dicts load with weights_only=True")


def save_backbone(backbone: nn.Module, path: str | os.PathLike, *, name: str | None = None,
                  kwargs: Mapping[str, Any] | None = None) -> Path:
    """Write ``backbone``'s state dict atomically (temporary file, fsync, ``os.replace``).

    The file also records the backbone's ``name`` and constructor ``kwargs``
    (from ``backbone.backbone_spec`` when it was built by
    :func:`pretrained_backbone`, or as given here) and ``out_features``, so
    ``pretrained_backbone(path)`` rebuilds and loads it in one call.  Without a
    name, load it with ``pretrained_backbone(name, weights=path)``.
    """
    spec = getattr(backbone, "backbone_spec", None) or {}
    name = name if name is not None else spec.get("name")
    kwargs = dict(kwargs if kwargs is not None else spec.get("kwargs", {}))
    _check_plain(kwargs, "kwargs")
    state = backbone.state_dict()
    meta = [k for k, v in state.items() if v.is_meta]
    if meta:
        raise ValueError(f"cannot save a backbone on the meta device (no data): {_listing(meta)}")
    out = getattr(backbone, "out_features", None)
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "version": _CHECKPOINT_VERSION,
        "name": name,
        "kwargs": kwargs,
        "out_features": out if isinstance(out, int) else None,
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
    }
    return atomic_torch_save(path, payload)
