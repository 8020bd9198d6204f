"""Self-supervised terms and fine-tuning regularisers from configs (benchmarks/objectives.py):
pretraining that writes a backbone.pt, rotation prediction as an auxiliary term of domain
adaptation under a learned weighting, regularisers in every fine-tuning phase, exact resume,
one ConfigError per bad value before training, and unchanged hashes of earlier records."""
import glob
import json
from pathlib import Path

import pytest
import torch

from benchmarks.config import ConfigError, config_hash, config_to_dict, load_experiment
from benchmarks.experiment import build_trainer, run_experiment

DA = "configs/experiments/digits_da.yaml"
MTL = "configs/experiments/multidigits_mtl.yaml"
PRETRAIN = [  # self-supervised pretraining on the embedded source digits plus the target's images
    "problem=self_supervised",
    "data.dataset=digits",
    "data.unlabelled=[digits-m]",
    "data.channels=3",
    "model.backbone=small_convnet",
    "selfsup=[{name: rotation}, {name: contrastive, args: {flip: false, projection_dim: 16}}]",
    "train.selection_metric=val/rotation/accuracy",
    "train.select=last",
]
TARGET = [  # fine-tuning on the embedded colour digits
    "problem=multitask",
    "data.dataset=digits-m",
    "model.backbone=small_convnet",
    "train.selection_metric=val/digit/accuracy",
]


def _tiny(overrides, epochs=2):
    return [f"train.epochs={epochs}", "train.steps_per_epoch=3", "train.progress_bar=false", "train.log_every=2",
            "data.batch_size=16", *overrides]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A backbone pretrained with rotation + contrastive terms, and its record."""
    run_dir = tmp_path_factory.mktemp("pretrain")
    record = run_experiment(load_experiment(None, _tiny([*PRETRAIN, "train.save_backbone=true"])), run_dir)
    return run_dir / record["backbone_path"], record


def test_self_supervised_pretraining_writes_a_backbone_that_model_weights_loads(pretrained, tmp_path):
    path, record = pretrained
    metrics = record["metrics"]
    for name in ("rotation", "contrastive"):
        assert 0 <= metrics[f"val/{name}/accuracy"] <= 1 and metrics[f"test/{name}/loss"] > 0
    assert 0 <= metrics["test/probe/digit/accuracy"] <= 1  # a linear probe on the frozen features
    trainer = build_trainer(load_experiment(None, _tiny([*TARGET, f"model.weights={path}"])), tmp_path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    loaded = trainer.problem.model.backbone.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_pretraining_reads_one_batch_per_dataset_and_resumes_exactly(tmp_path):
    cfg = load_experiment(None, _tiny(PRETRAIN, epochs=2))
    straight = build_trainer(cfg, tmp_path / "straight")
    assert set(straight.problem.batches) == {"digits", "digits-m"}
    assert straight.problem.term_names() == ["rotation", "contrastive"]
    straight.fit()

    class Stop(Exception):
        pass

    def stop(trainer, epoch):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        build_trainer(cfg, tmp_path / "resumed", callbacks=[stop]).fit()
    torch.manual_seed(123)  # the checkpoint restores the random streams the augmentations draw from
    resumed = build_trainer(cfg, tmp_path / "resumed")
    resumed.fit()
    a, b = straight.problem.state_dict(), resumed.problem.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_rotation_on_both_domains_is_a_term_of_domain_adaptation_under_uncertainty_weighting(tmp_path):
    cfg = load_experiment(DA, _tiny(["method.name=dann", "weighting.name=uncertainty",
                                     "selfsup=[{name: rotation, args: {all_rotations: false}}]"]))
    trainer = build_trainer(cfg, tmp_path)
    assert trainer.problem.term_names() == ["digit", "domain", "rotation"]
    assert trainer.problem.extra_terms.domains["rotation"] == ("source", "target")
    head = trainer.problem.extra_terms.selfsup["rotation"].head.weight.detach().clone()
    record = trainer.fit()
    assert not torch.equal(head, trainer.problem.extra_terms.selfsup["rotation"].head.weight)  # it trained
    assert set(trainer.weighting.log_vars) == {"digit", "domain", "rotation"}  # a learned weight per term
    assert 0 <= record["metrics"]["test/target/digit/accuracy"] <= 1
    # source-only DA with rotation on the target: target batches are drawn for the rotation term alone
    only = load_experiment(DA, _tiny(["selfsup=[{name: rotation, domains: [target], args: {all_rotations: false}}]"]))
    terms, _ = build_trainer(only, tmp_path / "source_only").problem.training_terms(0.0)
    assert set(terms) == {"digit", "rotation"}


def test_regularizers_work_in_every_fine_tuning_phase(pretrained, tmp_path):
    path, _ = pretrained
    cfg = load_experiment(None, _tiny([
        *TARGET, f"model.weights={path}", "optim.lr=0.01",
        "regularizers=[{name: l2_sp}, {name: bss}, {name: delta, args: {layers: [conv.2], attention_batches: 1}}]",
        "train.phases=[{epochs: 1, train_blocks: 0}, {epochs: 1, train_blocks: -1, lr_scale: 0.1}]",
    ]))
    snapshots = []
    trainer = build_trainer(cfg, tmp_path, callbacks=[lambda t, e: snapshots.append(
        {k: v.clone() for k, v in t.problem.model.backbone.state_dict().items()})])
    assert trainer.problem.term_names() == ["digit", "l2_sp", "bss", "delta"]
    delta = trainer.problem.extra_terms.regularizers["delta"]
    assert bool(delta.attention_fitted) and delta.channel_weights()[0].std() > 0  # fitted before training
    terms, _ = trainer.problem.training_terms(0.0)
    heads = sum(float(p.detach().pow(2).sum()) for p in trainer.problem.model.heads.parameters())
    assert float(terms["l2_sp"].detach()) == pytest.approx(0.01 * 0.5 * heads, rel=1e-4)  # at w0: β/2 ||heads||² only
    start = {k: v.clone() for k, v in trainer.problem.model.backbone.state_dict().items()}  # (after that forward's BN update)
    trainer.fit()
    frozen, trained = snapshots
    assert all(torch.equal(start[k], frozen[k]) for k in start)  # phase 1: the terms never move a frozen backbone
    assert any(not torch.equal(frozen[k], trained[k]) for k in start)  # phase 2: everything trains, regularised
    assert trainer.history[-1]["epoch"] == 2


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["selfsup=[{name: jigsaw}]"], "unknown selfsup\\[0\\] 'jigsaw'; available: contrastive, rotation"),
        (["selfsup=[{name: contrastive, args: {temprature: 0.5}}]"], "selfsup\\[0\\] 'contrastive' has no argument 'temprature'"),
        (["selfsup=[{name: contrastive, args: {temperature: -1}}]"], "selfsup\\[0\\] 'contrastive': temperature must be positive"),
        (["selfsup=[{name: rotation, domains: [tgt]}]"], "selfsup\\[0\\].domains=\\['tgt'\\]: this domain_adaptation problem's domains are source, target"),
        (["selfsup=[{name: rotation}, {name: rotation}]"], "repeated: rotation"),
        (["regularizers=[{name: l2_sp}]"], "regularizers\\[0\\]: l2_sp keeps the network close to its pretrained starting point, but model.weights is null"),
        (["regularizers=[{name: delta}]"], "regularizers\\[0\\]: delta keeps"),
        (["regularizers=[{name: bss, args: {k: 0}}]"], "regularizers\\[0\\] 'bss': k must be at least 1"),
        (["regularizers=[{name: bss, args: {k: 1.5}}]"], "regularizers\\[0\\].args.k is 1.5; it must be an integer"),
        (["selfsup=[{name: contrastive, args: {temperature: abc}}]"], "selfsup\\[0\\].args.temperature is 'abc'; it must be a number"),
        (["regularizers=[{name: l1}]"], "unknown regularizers\\[0\\] 'l1'; available: bss, delta, l2_sp"),
        (["data.unlabelled=[digits-m]"], "data.unlabelled=\\['digits-m'\\] applies to problem self_supervised only"),
        (["selfsup=[{name: rotation}]", "weighting.name=mgda", "weighting.args.target=representation"],
         "differentiates a shared representation"),
    ],
)
def test_bad_values_are_one_config_error_naming_the_key(tmp_path, overrides, message):
    cfg = load_experiment(DA, _tiny(overrides))
    with pytest.raises(ConfigError, match=message):
        build_trainer(cfg, tmp_path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["selfsup=[]"], "needs at least one selfsup entry"),
        (["regularizers=[{name: bss}]"], "regularizers apply to fine-tuning"),
        (["data.unlabelled=[digits]"], "lists a dataset twice"),
        (["selfsup=[{name: rotation, domains: [source]}]"], "this self_supervised problem's domains are digits, digits-m"),
        (["model.architecture=mmoe"], "model.architecture=hps"),
    ],
)
def test_bad_pretraining_configs_are_config_errors(tmp_path, overrides, message):
    cfg = load_experiment(None, _tiny([*PRETRAIN, *overrides]))
    with pytest.raises(ConfigError, match=message):
        build_trainer(cfg, tmp_path)


def test_the_new_keys_leave_earlier_config_hashes_unchanged():
    cfg = load_experiment(DA)
    explicit = load_experiment(DA, ["selfsup=[]", "regularizers=[]", "data.unlabelled=[]"])
    assert config_hash(explicit) == config_hash(cfg)
    older = config_to_dict(cfg)
    for key in ("selfsup", "regularizers"):
        older.pop(key)
    older["data"].pop("unlabelled")
    assert config_hash(older) == config_hash(cfg)  # a record written before these keys existed
    assert config_hash(load_experiment(DA, ["selfsup=[{name: rotation}]"])) != config_hash(cfg)
    records = sorted(glob.glob("benchmarks/results/transfer_digits/records/**/record.json", recursive=True))
    assert records
    for path in records[::8]:  # committed records of the transfer study keep their identity
        record = json.loads(Path(path).read_text())
        assert config_hash(record["config"]) == record["config_hash"], path


def test_mtlda_list_shows_the_objectives_and_regularizers_with_their_papers(capsys):
    from benchmarks.cli import main
    from benchmarks.registry import REGULARIZERS, SELFSUP

    for section, registry in (("selfsup", SELFSUP), ("regularizers", REGULARIZERS)):
        assert main(["list", section]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        listed = {line.split()[0]: line for line in lines[1:]}
        assert set(listed) == set(registry)
        assert all(any(year in line for year in ("2018", "2019", "2020")) for line in listed.values())


@pytest.mark.real_data
def test_the_study_configs_build_and_step_on_real_data(data_root, tmp_path):
    """configs/experiments/transfer/pretrain_rotation_lenet.yaml on MNIST + USPS images, then to_usps.yaml
    from its backbone with L2-SP, as the study runs them: one training step each (no evaluation)."""
    from benchmarks.experiment import save_trained_backbone

    pretrain = load_experiment("configs/experiments/transfer/pretrain_rotation_lenet.yaml",
                               [f"data.root={data_root}", "data.unlabelled=[usps-esl]"])
    trainer = build_trainer(pretrain, tmp_path / "pretrain")
    assert set(trainer.problem.batches) == {"mnist", "usps-esl"}
    terms, _ = trainer.problem.training_terms(0.0)
    assert list(terms) == ["rotation"] and 0 < float(terms["rotation"].detach()) < 3
    path = tmp_path / save_trained_backbone(trainer.problem.model.backbone, tmp_path)
    finetune = load_experiment("configs/experiments/transfer/to_usps.yaml", [
        f"data.root={data_root}", "data.labels_per_class=10", f"model.weights={path}", "regularizers=[{name: l2_sp}]",
    ])
    trainer = build_trainer(finetune, tmp_path / "finetune")
    terms, _ = trainer.problem.training_terms(0.0)
    heads = sum(float(p.detach().pow(2).sum()) for p in trainer.problem.model.heads.parameters())
    assert float(terms["l2_sp"].detach()) == pytest.approx(0.01 * 0.5 * heads, rel=1e-4)  # at the pretrained start
