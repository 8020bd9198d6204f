"""Continue shorter runs to a longer budget: the machinery behind ``mtlda extend``.

When nothing a run computes depends on its length — the learning rate follows the
absolute step (``optim.lr_schedule`` constant, inverse or multistep), the method's
coefficient ramps over absolute steps (``method.args.ramp_steps``) or not at all, and
no fine-tuning phases are laid out over ``train.epochs`` — the first k epochs of an
N-epoch run are exactly a k-epoch run (same seed, same data stream, same updates).
A finished k-epoch run's ``last.pt`` is then the N-epoch run's state after epoch k, and
training can go on from it instead of starting again.

:func:`plan_extensions` checks every run before anything is written: the long
configuration must not depend on its length (:func:`budget_dependence` names the key
that does), the short run's checkpoint must have been written by this very
configuration with a smaller ``train.epochs`` (the config hash says so; the short run
may itself be unfinished), and the destination must hold no run yet.  :func:`seed_extension` then writes the
destination's ``checkpoints/last.pt`` (and ``best.pt``): the short run's state under
the long configuration's hash, with ``extended_from`` naming where it came from; that
note is kept in every later checkpoint and lands in the finished run's
``record.json``.  ``mtlda run`` with the same arguments then resumes and finishes
the runs; ``train_seconds`` counts both parts.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from adapt.methods.base import AdaptationMethod
from mtl._io import CheckpointReadError, atomic_torch_save, load_weights_only

from . import registry
from .config import ConfigError
from .engine import CHECKPOINT_VERSION
from .experiment import RECORD_NAME, run_identity
from .suite import PlannedRun

#: lr schedules that run over the fraction of the run done (benchmarks.engine.lr_factor)
PROGRESS_LR_SCHEDULES = ("cosine", "dann")


def training_hooks(cls: type) -> dict:
    """The training hooks (``alignment_terms``, ``update``) that method class ``cls`` defines, itself or through a
    parent other than the base class: hook name → function."""
    hooks = {}
    for hook in ("alignment_terms", "update"):
        owner = next((k for k in cls.__mro__ if hook in vars(k)), None)
        if owner is not None and owner is not AdaptationMethod:
            hooks[hook] = vars(owner)[hook]
    return hooks


def _overrides_progress_hook(cls: type) -> bool:
    """Whether one of ``cls``'s own training hooks names ``progress``."""
    return any("progress" in inspect.signature(function).parameters for function in training_hooks(cls).values())


def method_reads_progress(name: str, args) -> bool:
    """Whether method ``name`` with ``args`` computes anything from the fraction of the run done.

    A method can only read it through a training hook that names ``progress``; such a method
    is still length-free when its coefficient schedule is constant or ramps over
    ``ramp_steps`` absolute steps (:func:`adapt.schedules.ramp_input`).
    """
    if name not in registry.METHOD_CLASSES:
        return False  # "source_only" and other non-adapting entries have no hooks
    cls = registry.METHOD_CLASSES[name]
    if not _overrides_progress_hook(cls):
        return False
    given = OmegaConf.to_container(args, resolve=True) if isinstance(args, DictConfig) else dict(args or {})
    parameters = inspect.signature(cls.__init__).parameters
    settings = {**{k: p.default for k, p in parameters.items() if p.default is not p.empty}, **given}
    absolute_ramp = "ramp_steps" in parameters and settings.get("ramp_steps") is not None
    constant = "schedule" in parameters and settings.get("schedule") == "constant"
    return not (absolute_ramp or constant)


def budget_dependence(cfg: DictConfig) -> list[str]:
    """The settings of ``cfg`` through which a run's first epochs depend on ``train.epochs`` (empty: none)."""
    reasons = []
    if cfg.optim.lr_schedule in PROGRESS_LR_SCHEDULES:
        reasons.append(f"optim.lr_schedule={cfg.optim.lr_schedule} runs over the fraction of the run done")
    if cfg.train.get("phases"):
        reasons.append("train.phases are laid out over train.epochs")
    if method_reads_progress(cfg.method.name, cfg.method.get("args")):
        reasons.append(
            f"method.name={cfg.method.name} ramps its coefficient over the fraction of the run done "
            "(set method.args.ramp_steps, or method.args.schedule=constant)"
        )
    return reasons


@dataclass
class Extension:
    run: PlannedRun
    source_dir: Path
    #: the epochs the source run has finished
    source_epochs: int
    #: the source checkpoint's state (read once, written under the long run's hash)
    state: dict


def _with_epochs(cfg: DictConfig, epochs: int) -> DictConfig:
    short = cfg.copy()
    short.train.epochs = epochs
    return short


def check_extension(run: PlannedRun, source_dir: Path) -> Extension:
    """The extension of ``run`` from the shorter run in ``source_dir``, or a ConfigError naming what forbids it."""
    where = f"experiment '{run.experiment}' seed {run.seed}"
    reasons = budget_dependence(run.config)
    if reasons:
        raise ConfigError(f"{where} cannot be extended: its first epochs depend on train.epochs ({'; '.join(reasons)})")
    last = source_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        raise ConfigError(f"{last} does not exist: --from must be the --output of the shorter runs")
    try:
        state = load_weights_only(last)
    except CheckpointReadError as error:
        raise ConfigError(str(error)) from error
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{last}: not a checkpoint of format {CHECKPOINT_VERSION}; it cannot be extended")
    epochs = int(state["epoch"])
    if epochs >= run.config.train.epochs:
        raise ConfigError(
            f"{last} has {epochs} epochs already, not fewer than train.epochs={run.config.train.epochs} of {where}"
        )
    # the shorter run may itself be unfinished: it had train.epochs = some k ≥ the epochs it has done
    if not any(state.get("config_hash") == run_identity(_with_epochs(run.config, k)) for k in range(epochs, run.config.train.epochs)):
        raise ConfigError(
            f"{last} was not written by {where} with a smaller train.epochs (configuration hash differs): "
            "give the same config, overrides and --data-root as the shorter runs, with only train.epochs raised"
        )
    for taken in (run.run_dir / RECORD_NAME, run.run_dir / "checkpoints" / "last.pt"):
        if taken.exists():
            raise ConfigError(f"{taken} exists: {where} has started already; extend into an empty --output")
    return Extension(run, source_dir, epochs, state)


def plan_extensions(runs: list[PlannedRun], source_root: Path, output: Path) -> list[Extension]:
    """Every run's extension, all checked before the first is written."""
    extensions = []
    for run in runs:
        relative = run.run_dir.relative_to(Path(output))
        extensions.append(check_extension(run, Path(source_root) / relative))
    return extensions


def seed_extension(extension: Extension) -> Path:
    """Write the long run's ``checkpoints/last.pt`` (and ``best.pt``) from the short run's; returns last.pt."""
    run, source_checkpoints = extension.run, extension.source_dir / "checkpoints"
    new_hash = run_identity(run.config)
    note = {
        "run_dir": str(extension.source_dir),
        "epochs": extension.source_epochs,
        "config_hash": extension.state["config_hash"],
    }
    destination = run.run_dir / "checkpoints"
    best = source_checkpoints / "best.pt"
    if best.is_file():  # older checkpoints keep the selected weights only there
        exported = load_weights_only(best)
        if exported.get("config_hash") == extension.state["config_hash"]:
            atomic_torch_save(destination / "best.pt", {**exported, "config_hash": new_hash})
    return atomic_torch_save(destination / "last.pt", {**extension.state, "config_hash": new_hash, "extended_from": note})
