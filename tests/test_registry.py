"""Components register themselves: the registry is built from the classes, with no list of names.

The README's "Adding a method" says a method is one new file in ``adapt/methods/`` (and a weighting one
new file in ``mtl/weighting/``) plus its own test.  The throw-away tests below prove it: they write such
a file into a temporary folder on the package's path, run the package's own discovery, and train with
the new component through the harness, without touching any other file.
"""
from __future__ import annotations

import importlib
import inspect
import sys

import pytest
import torch

import adapt.methods
import mtl.weighting
from adapt._registry import import_modules as import_adapt_modules
from adapt.methods import DANN, AdaptationMethod
from adapt.validators import VALIDATORS
from benchmarks import registry
from benchmarks.config import ConfigError, load_experiment
from benchmarks.experiment import build_trainer, check_config
from mtl._registry import import_modules as import_mtl_modules
from mtl.aggregators import AGGREGATORS
from mtl.weighting import Weighting

DA = "configs/experiments/digits_da.yaml"
MTL = "configs/experiments/multidigits_mtl.yaml"
ONE_STEP = ["train.epochs=1", "train.steps_per_epoch=1", "train.progress_bar=false", "data.batch_size=16"]

#: the names configs, suites and records use, in the order ``mtlda list`` shows them; they must not change
#: (new components are listed after them)
TODAY = {
    "METHODS": ["source_only", "dann", "coral", "cdan", "cdan_e", "dan", "jan", "mcc", "bsp", "afn", "entropy_min",
                "info_max", "bnm", "adabn", "mcd"],
    "WEIGHTINGS": ["equal", "static", "uncertainty", "dwa", "rlw", "gradnorm", "famo", "gls", "db_mtl", "mgda",
                   "pcgrad", "graddrop", "gradvac", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl", "upgrad"],
    "SELFSUP": ["rotation", "contrastive"],
    "REGULARIZERS": ["l2_sp", "bss", "delta"],
    "ARCHITECTURES": ["hps", "mmoe", "cross_stitch", "mtan"],
    "BACKBONE_ENTRIES": ["dann_digits", "dann_svhn", "lenet", "mlp", "multilenet", "small_convnet"],
}
REGISTRIES = {kind: getattr(registry, kind) for kind in TODAY}


@pytest.mark.parametrize("kind", sorted(TODAY))
def test_todays_names_are_registered_in_todays_order(kind):
    assert list(REGISTRIES[kind])[: len(TODAY[kind])] == TODAY[kind]


def test_the_validators_names_and_order_are_todays():
    assert list(VALIDATORS)[:7] == ["source_accuracy", "entropy", "im", "snd", "bnm", "dev", "oracle"]
    assert all(cls.name == name for name, cls in VALIDATORS.items())


@pytest.mark.parametrize("kind", sorted(TODAY))
def test_every_entry_comes_from_its_class(kind):
    """Name, summary (the docstring's first line) and the harness's arguments are the class's own."""
    for name, entry in REGISTRIES[kind].items():
        owner = getattr(entry.factory, "__self__", entry.factory)  # an architecture is built by its classmethod
        if kind == "WEIGHTINGS" and name in AGGREGATORS:
            assert entry.summary == "[gradient] " + registry.summary(AGGREGATORS[name])
            continue
        assert owner.name == name
        marker = "[gradient] " if getattr(owner, "combines_term_gradients", False) else ""
        assert entry.summary == marker + owner.__doc__.strip().splitlines()[0]
        assert entry.supplied == tuple(owner.derived_arguments)
        assert set(entry.supplied) <= set(inspect.signature(entry.factory).parameters), name


def test_weighting_classes_and_gradient_aggregators_do_not_share_a_name():
    assert not set(mtl.weighting.WEIGHTINGS) & set(AGGREGATORS)
    # the sum and the mean are equal weighting (up to 1/K) at a Jacobian's cost: not offered as weightings
    assert {n for n, cls in AGGREGATORS.items() if cls.fixed_weights} == {"sum", "mean"}
    assert not {"sum", "mean"} & set(registry.WEIGHTINGS)


def test_a_second_class_claiming_a_registered_name_is_refused():
    with pytest.raises(TypeError, match="both register as 'dann'"):

        class Impostor(AdaptationMethod):  # noqa: F841 - refused while being defined
            name = "dann"

    assert registry.METHODS["dann"].factory is DANN


def test_a_subclass_that_keeps_its_parents_name_is_not_registered():
    class Tweaked(DANN):
        pass

    assert registry.METHODS["dann"].factory is DANN and Tweaked not in adapt.methods.METHODS.values()


def test_refusals_read_capabilities():
    assert not registry.method_adapts("source_only")
    assert all(registry.method_adapts(name) for name in registry.METHODS if name != "source_only")
    assert registry.method_adapts("no_such_method")  # refused as "method.* applies to domain_adaptation ..."
    plain = [n for n, e in registry.WEIGHTINGS.items() if getattr(e.factory, "is_plain_sum", False)]
    assert plain == ["equal"]  # the only weighting a method that owns its update (MCD) accepts


def test_a_method_that_owns_its_update_refuses_any_weighting_but_the_plain_sum(tmp_path):
    cfg = load_experiment(DA, [*ONE_STEP, "method.name=mcd", "weighting.name=uncertainty"])
    with pytest.raises(ConfigError, match="method 'mcd' performs its own multi-step update, so weighting.name must be 'equal'"):
        build_trainer(cfg, tmp_path)


# ------------------------------------------------------------------ the README's claim, with throw-away files

THROWAWAY_METHOD = '''
"""A throw-away method written by tests/test_registry.py: nothing else names it."""
from __future__ import annotations

import torch

from .base import AdaptationMethod


class TargetFeatureShrinkage(AdaptationMethod):
    """Shrink the target features' mean squared value (a throw-away test method, Nobody et al. 2099).

    Default: ``trade_off = 1``.  Counts its calls in a buffer, so the test sees it trained.
    """

    name = "throwaway_shrinkage"
    derived_arguments = ("feature_dim",)
    term_names = ("shrinkage",)
    reads_logits = False

    def __init__(self, feature_dim: int, trade_off: float = 1.0):
        super().__init__()
        self.trade_off = float(trade_off)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def alignment_terms(self, *, target_features, **_):
        self.calls += 1
        return {"shrinkage": self.trade_off * target_features.pow(2).mean()}
'''

THROWAWAY_WEIGHTING = '''
"""A throw-away weighting written by tests/test_registry.py: nothing else names it."""
from __future__ import annotations

import torch

from .base import LossWeighting


class ScaledSum(LossWeighting):
    """The sum of the terms times a constant (a throw-away test weighting, Nobody et al. 2099).

    Default: ``scale = 0.5``.
    """

    name = "throwaway_scaled_sum"

    def __init__(self, scale: float = 0.5):
        super().__init__()
        self.scale = float(scale)

    def combine(self, losses):
        return self.scale * torch.stack(list(losses.values())).sum(), {name: self.scale for name in losses}
'''


@pytest.fixture
def new_module(tmp_path, monkeypatch):
    """``new_module(package, registry, name, source)`` writes ``source`` as module ``name`` in a temporary folder
    on ``package.__path__``; afterwards the path, the registry, ``sys.modules`` and the package are restored."""
    restore = []

    def add(package, package_registry, name, source):
        folder = tmp_path / "modules"
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.py").write_text(source)
        monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
        importlib.invalidate_caches()
        saved = dict(package_registry)
        qualified = f"{package.__name__}.{name}"

        def undo():
            package_registry.clear()
            package_registry.update(saved)
            sys.modules.pop(qualified, None)
            if hasattr(package, name):
                delattr(package, name)

        restore.append(undo)

    yield add
    for undo in restore:
        undo()


def test_a_new_method_is_one_new_file_in_adapt_methods(new_module, tmp_path):
    new_module(adapt.methods, adapt.methods.METHODS, "throwaway_shrinkage", THROWAWAY_METHOD)
    assert "throwaway_shrinkage" not in registry.METHODS
    import_adapt_modules(adapt.methods.__name__, adapt.methods.__path__)  # what adapt/methods/__init__.py runs

    entry = registry.METHODS["throwaway_shrinkage"]
    assert entry.summary.startswith("Shrink the target features' mean squared value")
    assert entry.supplied == ("feature_dim",)
    assert "throwaway_shrinkage" in registry.feature_level_methods()  # its capability flag is read, not its name
    with pytest.raises(ConfigError, match="method 'throwaway_shrinkage' has no argument 'trade_of'; valid arguments: trade_off"):
        check_config(load_experiment(DA, ["method.name=throwaway_shrinkage", "method.args.trade_of=2"]))

    overrides = [*ONE_STEP, "train.validators=[source_accuracy]", "method.name=throwaway_shrinkage", "method.args.trade_off=0.5"]
    trainer = build_trainer(load_experiment(DA, overrides), tmp_path / "run")
    result = trainer.fit()
    method = trainer.problem.method
    assert type(method).__name__ == "TargetFeatureShrinkage" and method.trade_off == 0.5
    assert result["steps"] == 1 and method.calls.item() == 1  # it computed its term in the training step
    assert "shrinkage" in trainer.problem.term_names()


def test_a_new_weighting_is_one_new_file_in_mtl_weighting(new_module, tmp_path):
    new_module(mtl.weighting, mtl.weighting.WEIGHTINGS, "throwaway_scaled_sum", THROWAWAY_WEIGHTING)
    assert "throwaway_scaled_sum" not in registry.WEIGHTINGS
    import_mtl_modules(mtl.weighting.__name__, mtl.weighting.__path__)  # what mtl/weighting/__init__.py runs

    entry = registry.WEIGHTINGS["throwaway_scaled_sum"]
    assert entry.summary.startswith("The sum of the terms times a constant")
    trainer = build_trainer(load_experiment(MTL, [*ONE_STEP, "weighting.name=throwaway_scaled_sum", "weighting.args.scale=0.25"]),
                            tmp_path / "run")
    before = [p.detach().clone() for p in trainer.problem.model.parameters()]
    assert trainer.fit()["steps"] == 1
    assert isinstance(trainer.weighting, Weighting) and trainer.weighting.scale == 0.25
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.problem.model.parameters()))
