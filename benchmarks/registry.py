"""The one place that maps config names to classes.

Adding a method: write the class in ``adapt/methods`` (or a weighting in
``mtl/weighting``), then add one entry here.  Constructor arguments come from
the config's ``args`` block and are checked against the signature, so a typo
is an error that lists the valid arguments.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
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



def _gradient_weighting(aggregator_cls) -> Callable:
    """A factory taking the aggregator's own arguments plus ``target`` and ``jacobian``."""

    def factory(target=None, jacobian="auto", **args):
        return GradientAggregation(aggregator_cls(**args), target=target, jacobian=jacobian)

    own = [p for p in inspect.signature(aggregator_cls).parameters.values() if p.kind is not p.VAR_KEYWORD]
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


def checked_arguments(registry: Mapping[str, Entry], kind: str, name: str, args: Mapping,
                      supplied: Mapping | None = None) -> tuple[Entry, dict]:
    """``(entry, keyword arguments)`` for ``registry[name]``: config ``args`` checked against its
    signature plus the harness-``supplied`` ones it takes; a ConfigError names any problem."""
    if name not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; available: {', '.join(sorted(registry))}")
    entry = registry[name]
    args = dict(args or {})
    supplied = dict(supplied or {})
    parameters = inspect.signature(entry.factory).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    settable = [n for n in parameters if n not in entry.supplied and n != "self" and parameters[n].kind is not inspect.Parameter.VAR_KEYWORD]
    for key in args:
        if key in entry.supplied:
            raise ConfigError(f"{kind} '{name}': argument '{key}' is set by the harness, not the config")
        if key not in parameters and not accepts_any:
            raise ConfigError(
                f"{kind} '{name}' has no argument '{key}'; valid arguments: {', '.join(settable) or '(none)'}"
            )
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
