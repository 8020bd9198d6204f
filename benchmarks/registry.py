"""The one place that maps config names to classes, for the harness.

It holds no list of names: every component registers itself.  A class that
sets ``name`` is in its package's own dict as soon as its module exists
(``adapt.methods.METHODS``, ``mtl.weighting.WEIGHTINGS``,
``mtl.backbones.BACKBONES``, ``mtl.architectures.ARCHITECTURES``,
``mtl.selfsup.OBJECTIVES``, ``mtl.regularizers.REGULARIZERS``; the
validators' ``adapt.validators.VALIDATORS`` is read directly), and the
mappings here read those dicts at each use.  From the class come:

* the summary ``mtlda list`` shows: the first line of its docstring (the
  method and its paper); ``[gradient]`` marks a weighting that combines one
  gradient per term;
* the arguments a config may set: the constructor's (an architecture's
  ``build``), checked against its signature and annotations, so a typo or a
  wrong type is an error that lists the valid arguments;
* the arguments the harness supplies (the feature size, the number of
  classes, ...): its ``derived_arguments``; a config cannot set them;
* what it supports or needs: capability attributes on the class
  (``reads_logits``, ``owns_update``, ``adapts``, ``is_plain_sum``, ...), which
  the harness reads instead of checking names.

Every gradient aggregator of ``mtl.aggregators`` is also a weighting (through
``GradientAggregation``), except those with fixed weights: equal weighting is
their sum without the Jacobian's cost.

Adding a method is one file in ``adapt/methods/`` (a weighting: one file in
``mtl/weighting/``) plus its own test; nothing here changes.  See the README's
"Adding a method".
"""
from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from adapt.methods import METHODS as METHOD_CLASSES
from mtl.aggregators import AGGREGATORS
from mtl.architectures import ARCHITECTURES as ARCHITECTURE_CLASSES
from mtl.backbones import BACKBONES
from mtl.regularizers import REGULARIZERS as REGULARIZER_CLASSES
from mtl.selfsup import OBJECTIVES
from mtl.weighting import WEIGHTINGS as WEIGHTING_CLASSES
from mtl.weighting import GradientAggregation

from .config import ConfigError


@dataclass(frozen=True)
class Entry:
    factory: Callable
    summary: str
    #: constructor arguments the harness supplies (the class's ``derived_arguments``; not settable from configs)
    supplied: tuple[str, ...] = ()


class _Registered(Mapping[str, Entry]):
    """``name → Entry``, read from the packages' own registries at each use (so a class registered
    after this module was imported, by a module imported later or in a test, is listed too)."""

    def __init__(self, read: Callable[[], dict[str, Entry]]):
        self._read = read

    def __getitem__(self, name: str) -> Entry:
        return self._read()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)})"


def summary(cls: type) -> str:
    """The first line of ``cls``'s own docstring (empty without one)."""
    return next(iter((cls.__doc__ or "").strip().splitlines()), "")


@functools.cache
def _entry(cls: type, factory: str | None = None) -> Entry:
    """The entry of a registered class, built by the class or by its classmethod ``factory``."""
    marker = "[gradient] " if getattr(cls, "combines_term_gradients", False) else ""
    build = getattr(cls, factory) if factory else cls
    return Entry(build, marker + summary(cls), tuple(cls.derived_arguments))


@functools.cache
def _gradient_entry(aggregator_cls: type) -> Entry:
    return Entry(_gradient_weighting(aggregator_cls), f"[gradient] {summary(aggregator_cls)}")


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


def _weightings() -> dict[str, Entry]:
    entries = {name: _entry(cls) for name, cls in WEIGHTING_CLASSES.items()}
    gradient = {name: _gradient_entry(cls) for name, cls in AGGREGATORS.items() if not cls.fixed_weights}
    return {**entries, **gradient}


METHODS = _Registered(lambda: {name: _entry(cls) for name, cls in METHOD_CLASSES.items()})
WEIGHTINGS = _Registered(_weightings)
#: self-supervised loss terms (config list ``selfsup``; mtl/selfsup)
SELFSUP = _Registered(lambda: {name: _entry(cls) for name, cls in OBJECTIVES.items()})
#: fine-tuning regularisers (config list ``regularizers``; mtl/regularizers); those with supplied
#: arguments read the pretrained starting point, so they need model.weights
REGULARIZERS = _Registered(lambda: {name: _entry(cls) for name, cls in REGULARIZER_CLASSES.items()})
#: multi-task architectures: the harness supplies the backbone factory, the task specs and one sample's shape
ARCHITECTURES = _Registered(lambda: {name: _entry(cls, "build") for name, cls in ARCHITECTURE_CLASSES.items()})
BACKBONE_ENTRIES = _Registered(lambda: {name: _entry(BACKBONES[name]) for name in sorted(BACKBONES)})


def method_adapts(name: str) -> bool:
    """Whether method ``name`` changes training or evaluation (an unknown name counts as one): a problem
    without a target domain accepts only the no-adaptation baseline."""
    entry = METHODS.get(name)
    return entry is None or entry.factory.adapts


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


def multi_task_methods() -> list[str]:
    """The methods a multi-task source admits: the feature-level ones (:func:`feature_level_methods`) and
    those that read every task's logits (``reads_every_task``, e.g. ``cdan_per_task``)."""
    every_task = [name for name, entry in METHODS.items() if entry.factory.reads_every_task and entry.factory.reads_logits]
    return [*feature_level_methods(), *every_task]


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
