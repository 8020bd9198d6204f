import os

import pytest
import torch

# two cores on CI: keep each test process to one intra-op thread so runs stay predictable
torch.set_num_threads(1)


@pytest.fixture
def tiny_overrides():
    """Overrides that make any quick-start experiment run in about a second."""
    return [
        "train.epochs=2",
        "train.steps_per_epoch=3",
        "train.progress_bar=false",
        "train.log_every=2",
        "data.batch_size=16",
    ]


@pytest.fixture
def data_root():
    root = os.environ.get("MTLDA_DATA")
    if not root or not os.path.isdir(root):
        pytest.skip("real data not available: set MTLDA_DATA to the folder holding MNIST/, USPS/, mnist_m.tar.gz")
    return root


class _Interrupt(Exception):
    pass


def _same(a, b) -> bool:
    """Equal state: tensors bit for bit, containers item by item (``get_extra_state`` gives dicts)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture
def fit_and_resume(tmp_path):
    """``fit_and_resume(cfg)`` trains ``cfg`` straight, then again interrupted after its first epoch and
    resumed by a fresh trainer (with another global RNG state, as a new process would have), checks that
    both end in the same model, weighting state and history, and returns ``(initial problem state, the
    straight run's result, its trainer)``.  Needs ``train.epochs`` ≥ 2."""
    from benchmarks.experiment import build_trainer

    def run(cfg):
        straight = build_trainer(cfg, tmp_path / "straight")
        initial = {k: v.detach().clone() for k, v in straight.problem.state_dict().items() if isinstance(v, torch.Tensor)}
        result = straight.fit()

        def interrupt(trainer, epoch):
            if epoch == 1:
                raise _Interrupt

        with pytest.raises(_Interrupt):
            build_trainer(cfg, tmp_path / "resumed", callbacks=[interrupt]).fit()
        torch.manual_seed(12345)
        resumed = build_trainer(cfg, tmp_path / "resumed")
        resumed.fit()
        for part in ("problem", "weighting"):
            expected, got = getattr(straight, part).state_dict(), getattr(resumed, part).state_dict()
            assert expected.keys() == got.keys(), part
            for key in expected:
                assert _same(expected[key], got[key]), f"{part}: {key} differs after resuming"
        assert straight.history == resumed.history
        return initial, result, straight

    return run
