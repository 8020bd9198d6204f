"""Source pretraining before a domain-adaptation method (``train.source_pretraining_epochs``).

Some reference recipes do not start the adaptation from random weights: Transfer-Learning-Library's
``bsp.py`` first trains the classifier (backbone, bottleneck, head) on the labelled source alone for
3 epochs with its own SGD at ``--pretrain-lr 0.001`` and the same ``lr·(1 + γi)^−0.75`` schedule,
then loads those weights and starts BSP with a fresh optimiser and the schedule back at step 0.

Here that first stage is an ordinary run of the same config with ``method.name=source_only``
(source batches only, so batch norm sees no target data), ``optim.lr`` set to
``train.source_pretraining_lr``, ``train.source_pretraining_epochs`` epochs and the last epoch
kept. It lives in ``<run dir>/source_pretraining/`` with its own checkpoints, so a killed run
resumes inside it too; its summary goes into the run's record as ``source_pretraining``. Once the
main run has a checkpoint of its own, the stage is never looked at again.
"""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .config import ConfigError
from .distributed import world_size
from .records import atomic_write_json

#: the stage's folder inside the run directory, and the summary it leaves there (not a record.json, so
#: reports and suites never take it for a run of its own)
FOLDER = "source_pretraining"
SUMMARY = "summary.json"


def pretraining_config(cfg: DictConfig) -> DictConfig:
    """The config of the source-only stage: ``cfg`` with the method, lr, length and selection replaced
    (a ConfigError when the config cannot have one)."""
    if world_size() > 1:
        raise ConfigError("train.source_pretraining_epochs is not supported under torchrun; run it on one process")
    if cfg.problem != "domain_adaptation":
        raise ConfigError(
            f"train.source_pretraining_epochs={cfg.train.source_pretraining_epochs} applies to domain adaptation "
            f"only (problem is {cfg.problem!r}); remove it"
        )
    if cfg.train.phases:
        raise ConfigError("train.source_pretraining_epochs cannot be combined with train.phases; use one of them")
    stage = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    lr = cfg.train.source_pretraining_lr
    stage.method = {"name": "source_only", "args": {}}
    stage.optim.lr = cfg.optim.lr if lr is None else lr
    stage.train.epochs = cfg.train.source_pretraining_epochs
    stage.train.select = "last"
    stage.train.patience = None
    stage.train.save_backbone = False
    stage.train.source_pretraining_epochs = 0
    stage.train.source_pretraining_lr = None
    return stage


def pretrain_on_source(cfg: DictConfig, run_dir: Path, build_trainer) -> dict | None:
    """Run (or resume, or read back) the source-only stage of ``cfg`` in ``run_dir/source_pretraining``
    and leave its summary there (:func:`read_summary`).

    Returns the model weights, or None when the config has no stage. ``build_trainer`` is
    :func:`benchmarks.experiment.build_trainer` (passed in to avoid a circular import).
    """
    if not cfg.train.source_pretraining_epochs:
        return None
    folder = Path(run_dir) / FOLDER
    trainer = build_trainer(pretraining_config(cfg), folder)
    result = trainer.fit()  # resumes from folder/checkpoints/last.pt; a finished stage only re-evaluates
    summary = {
        "epochs": result["epochs_run"],
        "steps": result["steps"],
        "lr": trainer.base_lrs[0],
        "train_seconds": result["train_seconds"],
        "metrics": result["metrics"],
        "history": result["history"],
    }
    atomic_write_json(folder / SUMMARY, summary)
    return trainer.problem.model.state_dict()


def read_summary(run_dir: Path) -> dict | None:
    """The stage's summary that :func:`pretrain_on_source` left in a run directory (None if absent)."""
    path = Path(run_dir) / FOLDER / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else None
