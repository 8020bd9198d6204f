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
