"""benchmarks.analysis: proxy A-distance, per-class metrics, and `analyze` on a finished run."""
import argparse
import json

import numpy as np
import pytest

from benchmarks.analysis import analyze_run, confusion_matrix, per_class_accuracy, proxy_a_distance
from benchmarks.commands.analyze import add_parser
from benchmarks.config import load_experiment
from benchmarks.experiment import run_experiment

DA = "configs/experiments/digits_da.yaml"


def test_proxy_a_distance_of_separated_and_identical_gaussians():
    rng = np.random.default_rng(0)
    source = rng.normal(0.0, 1.0, size=(400, 5))
    far = rng.normal(0.0, 1.0, size=(400, 5)) + 10.0
    same = rng.normal(0.0, 1.0, size=(400, 5))
    assert proxy_a_distance(source, far, seed=0) == pytest.approx(2.0, abs=0.02)
    assert abs(proxy_a_distance(source, same, seed=0)) < 0.3
    assert proxy_a_distance(source, same, seed=0) == proxy_a_distance(source, same, seed=0)  # seeded


def test_confusion_matrix_and_per_class_accuracy():
    labels = [0, 0, 1, 1, 1, 2]
    predictions = [0, 1, 1, 1, 0, 2]
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 4), [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert per_class_accuracy(labels, predictions, 4) == [0.5, pytest.approx(2 / 3), 1.0, None]


def test_analyze_run_writes_every_output(tmp_path, tiny_overrides):
    run_dir = tmp_path / "run"
    cfg = load_experiment(DA, [*tiny_overrides, "train.validators=[entropy]"])
    run_experiment(cfg, run_dir)
    before = set((run_dir / "tb").iterdir())
    result = analyze_run(run_dir, max_samples=60)
    out = run_dir / "analysis"
    for name in ("analysis.json", "tsne.png", "confusion.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "tsne.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "analysis.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["checkpoint"] == "last"  # digits_da.yaml reports the last epoch
    assert -2.0 <= saved["proxy_a_distance"] <= 2.0
    assert saved["samples"]["a_distance_and_tsne_per_domain"] == [60, 60]
    matrix = np.array(saved["confusion_matrix"]["target"])
    assert matrix.shape == (10, 10) and matrix.sum() == saved["samples"]["target_test"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(saved["accuracy"]["target"])
    assert len(saved["per_class_accuracy"]["source"]) == 10
    assert set((run_dir / "tb").iterdir()) - before  # figures went to TensorBoard

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["analyze", str(run_dir), "--checkpoint", "best", "--max-samples", "40", "--output", str(tmp_path / "o")])
    assert args.handler(args) == 0
    assert json.loads((tmp_path / "o" / "analysis.json").read_text())["checkpoint"] == "best"
