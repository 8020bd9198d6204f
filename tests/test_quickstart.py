"""The quick start (make demo): its pictures, its TensorBoard command, and a reduced run that keeps the orderings."""
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.config import load_experiment
from benchmarks.experiment import build_trainer
from benchmarks.quickstart import tensorboard_command
from benchmarks.quickstart.boundaries import Panel, class_one_probability, decision_boundary_figure
from benchmarks.quickstart.tradeoff import Point, tradeoff_figure

ROOT = Path(__file__).resolve().parents[1]
DA = ROOT / "configs/experiments/quickstart/moons_da.yaml"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_tensorboard_command_runs_as_printed_from_a_fresh_shell(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    command = tensorboard_command(Path("runs/quickstart"))
    executable, *rest = command.split()
    assert rest == ["--logdir", "runs/quickstart"]
    assert not os.path.isabs(executable) and executable.endswith("tensorboard")  # the venv's, relative to the repo
    # a login-free shell whose PATH does not hold the virtual environment still finds it
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["/bin/sh", "-c", f"{executable} --version_tb"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip()[0].isdigit()


def test_decision_boundary_is_the_models_own_prediction(tmp_path):
    cfg = load_experiment(DA, ["train.threads=1", "data.batch_size=64", "data.args.moons.n_samples=100",
                               "data.args.moons-rotated.n_test=80"])
    problem = build_trainer(cfg, tmp_path / "run").problem  # untrained: any network will do
    xs, ys = np.linspace(-1.0, 2.0, 7), np.linspace(-0.5, 1.0, 5)
    probability = class_one_probability(problem, xs, ys)
    assert probability.shape == (5, 7)
    point = torch.tensor([[xs[3], ys[1]]], dtype=torch.float32).view(1, 2, 1, 1)
    problem.model.eval()
    with torch.no_grad():
        expected = problem.model(problem.preprocess(point))["moon"].softmax(1)[0, 1].item()
    assert probability[1, 3] == pytest.approx(expected, abs=1e-6)
    figure = decision_boundary_figure([Panel("a", problem), Panel("b", problem)], resolution=20)
    assert len(figure.axes) == 2 and figure.axes[1].get_title() == "b"
    rows = decision_boundary_figure([[Panel("a", problem), Panel("b", problem)], [Panel("c", problem)]], resolution=20)
    assert [ax.get_title() for ax in rows.axes if ax.get_visible()] == ["a", "b", "c"]  # a row per seed


def test_tradeoff_figure_draws_each_strategy_and_puts_low_errors_up():
    points = [Point("equal", [90.0, 91.0], [1.2, 1.3]), Point("uncertainty", [97.0, 97.5], [1.6, 1.5])]
    figure = tradeoff_figure(points, Point("single-task", [98.0, 98.2], [1.1, 1.2]), "accuracy", "MAE")
    (ax,) = figure.axes
    assert ax.yaxis_inverted()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["equal", "uncertainty", "single-task"]
    with pytest.raises(ValueError, match="no strategies"):
        tradeoff_figure([], points[0], "x", "y")


# A reduced demo: seed 0 only, 600 steps per run instead of 3000 (moons) and 1000 (multidigits-sum).
REDUCED = ["train.threads=1", "train.epochs=2", "train.steps_per_epoch=300"]


@pytest.mark.slow
def test_reduced_demo_keeps_the_orderings_and_writes_both_pictures(tmp_path):
    from benchmarks.quickstart import BOUNDARIES_PNG, TRADEOFF_PNG, run_demo
    from benchmarks.report import DELTA_M

    result = run_demo(tmp_path, seeds=[0], overrides=REDUCED, progress=False)
    metrics = {r["name"]: r["metrics"] for r in result.records}
    target = {name[3:]: m["test/target/moon/accuracy"] for name, m in metrics.items() if name.startswith("da/")}
    # alignment fixes the rotation: DANN and Deep CORAL above source-only, on the same data and initialisation seed
    assert target["dann"] > target["source_only"] + 0.01, target
    assert target["coral"] > target["source_only"] + 0.01, target
    # the weightings differ: equal weighting lets the regression in tenths take the shared layers from the
    # classifiers; GLS (log-losses) gives them back at the regression's expense; DB-MTL balances both
    joint = {n[4:]: m for n, m in metrics.items() if n.startswith("mtl/") and not n.startswith("mtl/single/")}
    accuracy = {n: (m["test/left/accuracy"] + m["test/right/accuracy"]) / 2 for n, m in joint.items()}
    mae = {n: m["test/sum/mae"] for n, m in joint.items()}
    assert accuracy["gls"] > accuracy["equal"] + 0.2 and accuracy["db_mtl"] > accuracy["equal"] + 0.2, accuracy
    assert mae["gls"] > mae["db_mtl"] and mae["gls"] > mae["equal"], mae
    # Δm (independent formula): mean relative gain over the single-task networks, errors counted as gains when lower
    single = {t: metrics[f"mtl/single/{t}"] for t in ("left", "right", "sum")}
    gains = {
        n: (m["test/left/accuracy"] / single["left"]["test/left/accuracy"] - 1
            + m["test/right/accuracy"] / single["right"]["test/right/accuracy"] - 1
            + 1 - m["test/sum/mae"] / single["sum"]["test/sum/mae"]) / 3
        for n, m in joint.items()
    }
    assert gains["db_mtl"] > gains["equal"] + 0.1 and gains["db_mtl"] == max(gains.values()), gains
    # both tables, Δm against the single-task networks of the same harness, and the pictures beside them
    assert "### Domain adaptation" in result.tables and "### Multi-task learning" in result.tables
    assert DELTA_M in result.tables and "| mtl/single/sum | 1 |" in result.tables
    assert (result.suite_dir / "results.md").read_text().startswith("### Domain adaptation")
    assert [p.name for p in result.pictures] == [BOUNDARIES_PNG, TRADEOFF_PNG]
    widths = [png_size(p)[0] for p in result.pictures]
    assert widths[0] > 3 * png_size(result.pictures[0])[1] // 2  # the panels sit side by side
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(result.suite_dir / "figures"))
    events.Reload()
    assert set(events.Tags()["images"]) == {"quickstart/decision_boundaries", "quickstart/multitask_tradeoff"}
    assert result.tensorboard.endswith(f"--logdir {result.suite_dir}")


def test_the_quick_start_and_its_companion_suites_plan(tmp_path):
    """quickstart at 20°; the 30° CORAL study and the digits hard case the README quotes stay runnable."""
    from benchmarks.suite import plan_suite

    _, runs = plan_suite(ROOT / "configs/suites/quickstart.yaml", tmp_path, seeds=[0])
    angles = {r.config.data.args["moons-rotated"].angle for r in runs if r.experiment.startswith("da/")}
    assert angles == {20}
    uncertainty = next(r for r in runs if r.experiment == "mtl/uncertainty")
    assert uncertainty.config.optim.weighting_lr == 0.05
    _, runs = plan_suite(ROOT / "configs/suites/moons_da_study.yaml", tmp_path, seeds=[0])
    assert {r.config.data.args["moons-rotated"].angle for r in runs} == {30}
    _, runs = plan_suite(ROOT / "configs/suites/digits_hard_case.yaml", tmp_path, seeds=[0])
    assert {(r.config.data.source, r.config.data.target) for r in runs} == {("digits", "digits-m")}
    assert sorted(r.experiment for r in runs) == ["adabn", "bnm", "coral", "dann", "source_only"]
