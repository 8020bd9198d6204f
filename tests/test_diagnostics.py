"""Gradient agreement between loss terms, standalone and in TensorBoard."""
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from benchmarks.config import load_experiment
from benchmarks.experiment import run_experiment
from mtl.diagnostics import gradient_agreement


def test_cosine_and_norm_ratio_on_hand_made_gradients():
    j = torch.tensor([[3.0, 0.0], [0.0, 2.0], [-6.0, 0.0]])
    out = gradient_agreement(j, ["a", "b", "c"])
    assert out["cosine/a|b"] == pytest.approx(0.0)
    assert out["cosine/a|c"] == pytest.approx(-1.0)
    assert out["norm_ratio/a|c"] == pytest.approx(0.5)
    assert out["norm/b"] == pytest.approx(2.0)
    assert not any(math.isnan(v) for v in gradient_agreement(torch.zeros(2, 3), ["x", "y"]).values())
    with pytest.raises(ValueError, match="Jacobian"):
        gradient_agreement(torch.zeros(3, 2), ["x"])


def test_engine_logs_gradient_agreement(tmp_path, tiny_overrides):
    cfg = load_experiment(
        "configs/experiments/multidigits_mtl.yaml", [*tiny_overrides, "train.gradient_diagnostics_every=2"]
    )
    run_experiment(cfg, tmp_path)
    tags = set()
    for path in (tmp_path / "tb").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(path))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"gradients/cosine/left|right", "gradients/norm_ratio/left|right", "gradients/norm/left"} <= tags
