"""train.forward_domains_separately: source and target through the model in two passes (TLLib's afn.py, dan.py)."""
from __future__ import annotations

import pytest
import torch

from benchmarks.config import ConfigError, config_hash, load_experiment
from benchmarks.experiment import build_trainer

DA = "configs/experiments/digits_da.yaml"


def _problem(tiny_overrides, tmp_path, name, *more):
    cfg = load_experiment(DA, [*tiny_overrides, "method.name=coral", *more])
    return build_trainer(cfg, tmp_path / name).problem


def _terms_and_batches(problem):
    """One training step's terms and features, and the (preprocessed) batches it drew."""
    source_state, target_state = problem.source_batches.state_dict(), problem.target_batches.state_dict()
    source_images, _ = problem.source_batches.next()
    target_images, _ = problem.target_batches.next()
    problem.source_batches.load_state_dict(source_state)
    problem.target_batches.load_state_dict(target_state)
    torch.manual_seed(0)
    terms, features = problem.training_terms(0.5, step=0)
    return terms, features, problem.preprocess(source_images), problem.preprocess(target_images)


def test_each_domain_is_normalised_by_its_own_batch(tiny_overrides, tmp_path):
    """The features are exactly those of two train-mode passes, and differ from the joint pass where batch
    norm mixes the domains (small_convnet has batch norm)."""
    problem = _problem(tiny_overrides, tmp_path, "separate", "train.forward_domains_separately=true")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in problem.model.modules())
    problem.train()
    before = {k: v.clone() for k, v in problem.model.state_dict().items()}
    _, features, source, target = _terms_and_batches(problem)
    problem.model.load_state_dict(before)  # running statistics back as they were
    with torch.no_grad():
        _, expected_source = problem.model(source, return_features=True)
        _, expected_target = problem.model(target, return_features=True)
        _, joint = problem.model(torch.cat([source, target]), return_features=True)
    n = source.shape[0]
    torch.testing.assert_close(features[:n].detach(), expected_source)
    torch.testing.assert_close(features[n:].detach(), expected_target)
    assert not torch.allclose(features.detach(), joint, atol=1e-4)


def test_without_batch_statistics_the_two_passes_equal_the_joint_one(tiny_overrides, tmp_path):
    """In eval mode nothing depends on the batch, so both settings give the same terms: the option changes
    normalisation only."""
    results = []
    for name, flag in (("joint", "false"), ("separate", "true")):
        problem = _problem(tiny_overrides, tmp_path, name, f"train.forward_domains_separately={flag}")
        problem.eval()
        terms, features, _, _ = _terms_and_batches(problem)
        results.append((terms, features))
    (joint_terms, joint_features), (separate_terms, separate_features) = results
    torch.testing.assert_close(separate_features, joint_features)
    assert joint_terms.keys() == separate_terms.keys()
    for key in joint_terms:
        torch.testing.assert_close(separate_terms[key], joint_terms[key])


def test_the_default_keeps_config_hashes_and_bad_uses_are_refused(tiny_overrides, tmp_path):
    plain = load_experiment(DA, tiny_overrides)
    assert config_hash(plain) == config_hash(load_experiment(DA, [*tiny_overrides, "train.forward_domains_separately=false"]))
    with pytest.raises(ConfigError, match="no effect with method 'mcd'"):
        build_trainer(load_experiment(DA, [*tiny_overrides, "method.name=mcd", "train.forward_domains_separately=true"]), tmp_path / "mcd")
    with pytest.raises(ConfigError, match="applies to domain adaptation only"):
        build_trainer(load_experiment("configs/experiments/multidigits_mtl.yaml",
                                      [*tiny_overrides, "train.forward_domains_separately=true"]), tmp_path / "mt")
