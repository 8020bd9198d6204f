"""The one place that maps config names to classes.

Adding a method: write the class in ``adapt/methods`` (or a weighting in
``mtl/weighting``), then add one entry here.  Constructor arguments come from
the config's ``args`` block and are checked against the signature, so a typo
is an error that lists the valid arguments.
"""
from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from adapt.methods import (
    AFN,
    BNM,
    BSP,
    CDAN,
    CDANE,
    DAN,
    DANN,
    JAN,
    MCC,
    MCD,
    AdaBN,
    DeepCORAL,
    EntropyMinimization,
    InformationMaximization,
    SourceOnly,
)
from mtl.backbones import BACKBONES
from mtl.regularizers import DELTA, L2SP, BatchSpectralShrinkage
from mtl.selfsup import ContrastiveLearning, RotationPrediction
from mtl.aggregators import AGGREGATORS
from mtl.weighting import (
    DBMTL,
    DWA,
    FAMO,
    RLW,
    EqualWeighting,
    GeometricLoss,
    GradientAggregation,
    GradNorm,
    StaticWeighting,
    UncertaintyWeighting,
)

from .config import ConfigError


@dataclass(frozen=True)
class Entry:
    factory: Callable
    summary: str
    #: constructor arguments the harness supplies (not settable from configs)
    supplied: tuple[str, ...] = ()


METHODS: dict[str, Entry] = {
    "source_only": Entry(SourceOnly, "train on labelled source only (no adaptation)"),
    "dann": Entry(DANN, "domain-adversarial training with gradient reversal (Ganin et al. 2016)", ("feature_dim",)),
    "coral": Entry(DeepCORAL, "Deep CORAL: align second-order statistics (Sun & Saenko 2016)"),
    "cdan": Entry(CDAN, "conditional adversarial: discriminator on features ⊗ predictions (Long et al. 2018)", ("feature_dim", "num_classes")),
    "cdan_e": Entry(CDANE, "CDAN with entropy conditioning of the domain loss (Long et al. 2018)", ("feature_dim", "num_classes")),
    "dan": Entry(DAN, "DAN: multi-kernel MMD between feature distributions (Long et al. 2015)"),
    "jan": Entry(JAN, "JAN: joint MMD of features and predictions (Long et al. 2017)"),
    "mcc": Entry(MCC, "minimum class confusion on target predictions (Jin et al. 2020)"),
    "bsp": Entry(BSP, "DANN + batch spectral penalization of top singular values (Chen et al. 2019)", ("feature_dim",)),
    "afn": Entry(AFN, "stepwise adaptive feature norm: enlarge feature norms (Xu et al. 2019)"),
    "entropy_min": Entry(EntropyMinimization, "minimise target prediction entropy (Grandvalet & Bengio 2004)"),
    "info_max": Entry(InformationMaximization, "information maximisation on target predictions (Gomes et al. 2010; SHOT)"),
    "bnm": Entry(BNM, "batch nuclear-norm maximisation of target predictions (Cui et al. 2020)"),
    "adabn": Entry(AdaBN, "source-only training, target batch-norm statistics at test (Li et al. 2016)"),
    "mcd": Entry(MCD, "maximum classifier discrepancy, three-step update (Saito et al. 2018)", ("feature_dim", "num_classes")),
}

WEIGHTINGS: dict[str, Entry] = {
    "equal": Entry(EqualWeighting, "sum of the terms, weight 1 each"),
    "static": Entry(StaticWeighting, "fixed weight per term name"),
    "uncertainty": Entry(UncertaintyWeighting, "learned homoscedastic uncertainty (Kendall et al. 2018)"),
    "dwa": Entry(DWA, "dynamic weight average: softmax of loss-descent ratios over windows (Liu et al. 2019)"),
    "rlw": Entry(RLW, "random loss weighting: softmax of N(0, I) weights each step (Lin et al. 2022)"),
    "gradnorm": Entry(GradNorm, "GradNorm: learned weights equalising gradient norms of the last shared layer (Chen et al. 2018)"),
    "famo": Entry(FAMO, "FAMO: logits balancing the log-loss decrease rates (Liu et al. 2023)"),
    "gls": Entry(GeometricLoss, "geometric loss strategy: geometric mean of the terms (Chennupati et al. 2019)"),
    "db_mtl": Entry(DBMTL, "[gradient] dual balancing: log-losses, EMA gradients scaled to the max norm (Lin et al. 2023)"),
}

#: self-supervised loss terms (config list ``selfsup``; mtl/selfsup)
SELFSUP: dict[str, Entry] = {
    "rotation": Entry(RotationPrediction, "predict which of 4 rotations an image was given (Gidaris et al. 2018)", ("feature_dim",)),
    "contrastive": Entry(ContrastiveLearning, "SimCLR: two augmented views, NT-Xent loss, τ = 0.5 (Chen et al. 2020)", ("feature_dim",)),
}

#: fine-tuning regularisers (config list ``regularizers``; mtl/regularizers); those with supplied
#: arguments read the pretrained starting point, so they need model.weights
REGULARIZERS: dict[str, Entry] = {
    "l2_sp": Entry(L2SP, "L2 penalty towards the pretrained weights, weight decay on the heads (Li et al. 2018)", ("starting_point",)),
    "bss": Entry(BatchSpectralShrinkage, "shrink the smallest singular values of the batch features (Chen et al. 2019)"),
    "delta": Entry(DELTA, "feature-map distance to the pretrained network with channel attention (Li et al. 2019)", ("network", "input_shape")),
}


def _gradient_weighting(aggregator_cls) -> Callable:
    """A factory taking the aggregator's own arguments plus ``target`` and ``jacobian``."""

    def factory(target=None, jacobian="auto", **args):
        return GradientAggregation(aggregator_cls(**args), target=target, jacobian=jacobian)

    try:  # resolved annotations, so config values are type-checked against them
        signature = inspect.signature(aggregator_cls, eval_str=True)
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved here: leave them as text
        signature = inspect.signature(aggregator_cls)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    extra = [
        inspect.Parameter("target", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("jacobian", inspect.Parameter.KEYWORD_ONLY, default="auto"),
    ]
    factory.__signature__ = inspect.Signature(
        [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra
    )
    return factory


for _name, _cls in AGGREGATORS.items():
    if _name in ("sum", "mean"):
        continue  # equal weighting already is the sum, without the Jacobian cost
    _summary = (_cls.__doc__ or _name).strip().splitlines()[0]
    WEIGHTINGS[_name] = Entry(_gradient_weighting(_cls), f"[gradient] {_summary}")

BACKBONE_ENTRIES: dict[str, Entry] = {
    name: Entry(cls, (cls.__doc__ or "").strip().splitlines()[0], ("in_channels", "image_size"))
    for name, cls in BACKBONES.items()
}


def feature_level_methods() -> list[str]:
    """The methods that align only the shared features, so they work with a multi-task source.

    A method that needs an argument for that is listed with it (``coral (method.args.layer=features)``).
    """
    names = []
    for name, entry in METHODS.items():
        method = entry.factory
        if not method.reads_logits:
            names.append(name)
        elif method.features_only_with:
            names.append(f"{name} ({', '.join(f'method.args.{k}={v}' for k, v in method.features_only_with)})")
    return names


def build(registry: Mapping[str, Entry], kind: str, name: str, args: Mapping, supplied: Mapping | None = None):
    """Instantiate ``registry[name]`` with config ``args`` plus harness-``supplied`` ones."""
    entry, call = checked_arguments(registry, kind, name, args, supplied)
    try:
        return entry.factory(**call)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{kind} '{name}': {error}") from error


#: the config block that holds each kind's arguments (for error messages)
ARGS_KEYS = {"method": "method.args", "weighting": "weighting.args", "backbone": "model.args",
             "architecture": "model.architecture_args"}


def checked_arguments(registry: Mapping[str, Entry], kind: str, name: str, args: Mapping,
                      supplied: Mapping | None = None, args_key: str | None = None) -> tuple[Entry, dict]:
    """``(entry, keyword arguments)`` for ``registry[name]``: config ``args`` checked against its
    signature (names, and value types where it annotates them) plus the harness-``supplied`` ones it
    takes; a ConfigError names any problem (``args_key``: where the args are in the config)."""
    if name not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; available: {', '.join(sorted(registry))}")
    entry = registry[name]
    args = dict(args or {})
    supplied = dict(supplied or {})
    parameters = _parameters(entry.factory)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    settable = [n for n in parameters if n not in entry.supplied and n != "self" and parameters[n].kind is not inspect.Parameter.VAR_KEYWORD]
    for key in args:
        if key in entry.supplied:
            raise ConfigError(f"{kind} '{name}': argument '{key}' is set by the harness, not the config")
        if key not in parameters and not accepts_any:
            raise ConfigError(
                f"{kind} '{name}' has no argument '{key}'; valid arguments: {', '.join(settable) or '(none)'}"
            )
        if key in parameters:
            where = f"{args_key or ARGS_KEYS.get(kind, kind + '.args')}.{key}"
            _check_type(f"{kind} '{name}'", where, args[key], parameters[key].annotation)
    call = {**args, **{k: v for k, v in supplied.items() if k in entry.supplied}}
    missing = [
        n
        for n, p in parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in call
    ]
    if missing:
        raise ConfigError(f"{kind} '{name}' needs argument(s) {', '.join(missing)} in its args block")
    return entry, call


# multi-task architectures: the harness supplies the backbone factory, the task specs and one sample's shape
from mtl.architectures import MMoE, MTAN, CrossStitch, hard_parameter_sharing  # noqa: E402

_ARCHITECTURE_SUPPLIED = ("backbone_factory", "tasks", "input_shape")
ARCHITECTURES: dict[str, Entry] = {
    "hps": Entry(hard_parameter_sharing, "hard parameter sharing: one backbone, one head per task (Caruana 1997)", _ARCHITECTURE_SUPPLIED),
    "mmoe": Entry(MMoE.build, "multi-gate mixture-of-experts: shared experts, a softmax gate per task (Ma et al. 2018)", _ARCHITECTURE_SUPPLIED),
    "cross_stitch": Entry(CrossStitch.build, "cross-stitch networks: one column per task, mixed after every stage (Misra et al. 2016)", _ARCHITECTURE_SUPPLIED),
    "mtan": Entry(MTAN.build, "multi-task attention network: per-task attention masks on a shared backbone (Liu et al. 2019)", _ARCHITECTURE_SUPPLIED),
}


def check_config_arguments(registry: Mapping[str, Entry], kind: str, name: str, args: Mapping,
                           args_key: str | None = None) -> None:
    """:func:`checked_arguments` before anything is built: the name, the argument names and their value
    types (from the constructor's annotations); what the harness supplies later counts as given."""
    entry = registry.get(name)
    supplied = {n: None for n in entry.supplied} if entry is not None else {}
    checked_arguments(registry, kind, name, args, supplied, args_key)


def _parameters(factory: Callable) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(factory, eval_str=True).parameters
    except Exception:  # noqa: BLE001 - annotations that cannot be resolved: names are still checked
        return inspect.signature(factory).parameters


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
_PLURAL_WORDS = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def _check_type(owner: str, key: str, value, annotation) -> None:
    """A ConfigError naming ``key`` when ``value`` cannot be what the constructor's ``annotation`` asks for."""
    if _fits(value, annotation):
        return
    hint = ""
    if isinstance(value, str) and _is_number(value):
        hint = f" (YAML reads {value} as text: write it as a decimal, e.g. 0.001, or as 1.0e-3)"
    raise ConfigError(f"{owner}: {key} is {value!r}; it must be {_describe(annotation)}{hint}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _fits(value, annotation) -> bool:
    """Whether a config value can be ``annotation``; True for annotations this check does not know."""
    origin, parts = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in (inspect.Parameter.empty, typing.Any) or isinstance(annotation, str):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, part) for part in parts)
    if origin is typing.Literal:
        return value in parts
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    container = origin or annotation
    if container in (dict, Mapping) or (isinstance(container, type) and issubclass(container, Mapping)):
        if not isinstance(value, Mapping):
            return False
        key_type, value_type = parts if len(parts) == 2 else (typing.Any, typing.Any)
        return all(_fits(k, key_type) and _fits(v, value_type) for k, v in value.items())
    if container in (list, tuple, Sequence) or (isinstance(container, type) and issubclass(container, Sequence)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return False
        if container is tuple and parts and parts[-1] is not Ellipsis:
            return len(value) == len(parts) and all(_fits(v, t) for v, t in zip(value, parts))
        item = parts[0] if parts else typing.Any
        return all(_fits(v, item) for v in value)
    return True


def _describe(annotation, plural: bool = False) -> str:
    origin, parts = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(part, plural) for part in parts)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(p) for p in parts)
    if annotation in _TYPE_WORDS:
        return _PLURAL_WORDS.get(annotation, "null") if plural else _TYPE_WORDS[annotation]
    container = origin or annotation
    if isinstance(container, type) and issubclass(container, Mapping):
        described = f" from {_describe(parts[0], True)} to {_describe(parts[1], True)}" if len(parts) == 2 else ""
        return ("mappings" if plural else "a mapping") + described
    if container is tuple and parts and parts[-1] is not Ellipsis:
        return f"a list of {len(parts)} values ({', '.join(_describe(p) for p in parts)})"
    if isinstance(container, type) and issubclass(container, Sequence):
        return ("lists" if plural else "a list") + (f" of {_describe(parts[0], True)}" if parts else "")
    return getattr(annotation, "__name__", str(annotation))
