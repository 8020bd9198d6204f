"""The two-moons domains, vector inputs through the image pipeline, the MLP backbone and data.args."""
import math

import numpy as np
import pytest
import torch

from benchmarks.batching import Preprocess
from benchmarks.config import ConfigError, load_experiment
from benchmarks.datasets import DATASETS, load_dataset
from benchmarks.datasets.base import ImageSplit
from benchmarks.datasets.moons import CENTRE, load_moons, load_moons_rotated, moon_points
from benchmarks.experiment import build_problem
from mtl.backbones import MLP

DA = "configs/experiments/quickstart/moons_da.yaml"


def test_rotation_is_a_rigid_turn_about_the_centre():
    plain, labels = moon_points(300, 0.1, random_state=5)
    turned, same_labels = moon_points(300, 0.1, random_state=5, angle=90.0)
    np.testing.assert_array_equal(labels, same_labels)
    centre = np.array(CENTRE)
    # distances to the centre are kept, and each point has turned by +90° (counter-clockwise)
    np.testing.assert_allclose(np.linalg.norm(turned - centre, axis=1), np.linalg.norm(plain - centre, axis=1))
    a, b = plain - centre, turned - centre
    np.testing.assert_allclose(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0], (a**2).sum(1), rtol=1e-9)  # sin = 1
    np.testing.assert_allclose((a * b).sum(1), 0.0, atol=1e-9)  # cos = 0


def test_domains_are_deterministic_independent_draws_with_balanced_classes():
    source, again = load_moons(3), load_moons(3)
    torch.testing.assert_close(source.train.images, again.train.images)
    assert not torch.equal(source.train.images, load_moons(4).train.images)
    target = load_moons_rotated(3, angle=30)
    assert source.train.images.dtype == torch.float32 and tuple(source.train.images.shape) == (600, 2, 1, 1)
    assert len(target.test) == 600 and target.tasks["moon"].num_classes == 2
    for split in (source.train, source.test, target.train, target.test):
        assert split.labels["moon"].bincount().tolist() == [300, 300]
    # no target point is a rotated copy of a source point: the rotation of the source train draw differs
    rotated_source = moon_points(600, 0.1, random_state=12, angle=30)[0]
    assert not np.allclose(rotated_source, target.train.images.view(-1, 2).double().numpy(), atol=1e-3)
    # angle 0 gives the source construction (other draws)
    flat = load_moons_rotated(3, angle=0).train.images.view(-1, 2)
    assert abs(float(flat[:, 1].mean()) - float(source.train.images.view(-1, 2)[:, 1].mean())) < 0.05


def test_a_larger_angle_moves_the_target_further_from_the_source():
    def mean_gap(angle):
        source = load_moons(0).train.images.view(-1, 2)
        target = load_moons_rotated(0, angle=angle).train.images.view(-1, 2)
        # nearest-neighbour distance from each target point to the source cloud
        return torch.cdist(target, source).min(dim=1).values.mean().item()

    assert mean_gap(0) < mean_gap(20) < mean_gap(45)


def test_float_points_pass_the_preprocessing_unscaled():
    split = load_moons(0).train
    x = Preprocess([0.5, 0.25], [2.0, 2.0], None, "cpu")(split.images[:4])
    torch.testing.assert_close(x, (split.images[:4] - torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)) / 2.0)
    with pytest.raises(ValueError, match="uint8 or float32"):
        ImageSplit(torch.zeros(3, 2, 1, 1, dtype=torch.float64), {})


def test_mlp_backbone_shapes_and_arguments():
    net = MLP(in_channels=2, image_size=1, hidden_sizes=[15])
    assert net.out_features == 15 and net(torch.randn(5, 2, 1, 1)).shape == (5, 15)
    assert MLP(in_channels=1, image_size=12).out_features == 64
    assert sum(isinstance(m, torch.nn.Linear) for m in MLP(hidden_sizes=[8, 8, 8]).modules()) == 3
    with pytest.raises(ValueError, match="hidden_sizes"):
        MLP(hidden_sizes=[])
    with pytest.raises(ValueError, match="hidden_sizes"):
        MLP(hidden_sizes=[4, 0])


def test_config_angle_reaches_the_target_and_bad_args_name_the_key():
    cfg = load_experiment(DA, ["data.args.moons-rotated.angle=90"])
    problem = build_problem(cfg, torch.device("cpu"))
    expected = load_moons_rotated(cfg.data.data_seed, angle=90).test.images
    torch.testing.assert_close(problem.target_test.images, expected)
    assert "angle" in DATASETS["moons-rotated"].parameter_names()

    bad = [
        (["data.args.moons-rotated.angel=40"], "data.args.moons-rotated.angel: dataset 'moons-rotated' has no parameter 'angel'; its parameters: angle"),
        (["data.args.digits.angle=40"], "data.args.digits: this experiment reads no dataset 'digits'"),
        (["data.args.moons.noise=-1"], "data.args.moons: noise must be non-negative"),
        (["data.args.moons-rotated.angle=abc"], "data.args.moons-rotated:"),
    ]
    for overrides, message in bad:
        with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
            build_problem(load_experiment(DA, overrides), torch.device("cpu"))
    with pytest.raises(ConfigError, match="data.args.mnist.x: dataset 'mnist' has no parameter 'x'; it takes no parameters"):
        build_problem(load_experiment(DA, ["data.source=mnist", "data.args.mnist.x=1"]), torch.device("cpu"))
    with pytest.raises(ValueError, match="takes no parameters"):
        load_dataset("digits", args={"angle": 3})


def test_multidigits_sum_adds_a_regression_of_the_digit_sum():
    data = load_dataset("multidigits-sum", data_seed=1)
    plain = load_dataset("multidigits", data_seed=1)
    torch.testing.assert_close(data.train.images, plain.train.images)
    labels = data.test.labels
    torch.testing.assert_close(labels["sum"], (labels["left"] + labels["right"]).float())
    assert data.tasks["sum"].higher_is_better is False and set(data.tasks) == {"left", "right", "sum"}
    scaled = load_dataset("multidigits-sum", data_seed=1, args={"sum_scale": 0.5})
    torch.testing.assert_close(scaled.test.labels["sum"], labels["sum"] * 0.5)
    with pytest.raises(ValueError, match="sum_scale"):
        load_dataset("multidigits-sum", args={"sum_scale": 0})
    assert math.isclose(float(labels["sum"].max()), 18.0)
