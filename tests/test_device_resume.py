"""Random-generator states restore from a checkpoint loaded onto any device.

``torch.load(map_location=<the training device>)`` puts every saved tensor on that device,
but numpy, ``torch.set_rng_state`` and ``torch.Generator.set_state`` only read CPU byte
tensors, so every restore must bring the state to the CPU first.  Without a GPU this is
simulated: :class:`Elsewhere` is a tensor whose own bytes are unusable (zeros: an invalid
Mersenne-Twister state, as a CUDA tensor's memory is to the CPU) and whose ``.cpu()`` is
the real state.  A restore that forgets ``.cpu()`` fails or draws different numbers.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from benchmarks.devices import rng_state, set_rng_state
from mtl.aggregators import GradDrop, GradVac, PCGrad
from mtl.weighting.rlw import RLW


class Elsewhere(torch.Tensor):
    """A saved state as ``map_location`` left it on another device: only ``.cpu()`` is meaningful."""

    def cpu(self, *args, **kwargs):  # noqa: D102 - the real bytes come back from the "device"
        return self._real.clone()

    def detach(self):  # noqa: D102
        return elsewhere(self._real)

    def to(self, *args, **kwargs):  # noqa: D102 - only a move to the CPU reads the real bytes
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None and device.type == "cpu":
            return self._real.to(dtype=dtype or self._real.dtype)
        raise RuntimeError("the simulated device tensor can only be moved to the CPU")


def elsewhere(tensor: torch.Tensor) -> torch.Tensor:
    moved = torch.Tensor._make_subclass(Elsewhere, torch.zeros_like(tensor))
    moved._real = tensor.clone()
    return moved


def _move_tensors(value):
    if isinstance(value, torch.Tensor):
        return elsewhere(value)
    if isinstance(value, dict):
        return {k: _move_tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_move_tensors(v) for v in value)
    return value


def test_the_simulation_is_unusable_without_cpu():
    with pytest.raises(RuntimeError):
        torch.Generator().set_state(elsewhere(torch.Generator().manual_seed(1).get_state()))


def test_process_rng_state_restores_from_tensors_on_another_device():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    saved = rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    set_rng_state(_move_tensors(saved))
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])


def _draws(aggregator, jacobians):
    return [aggregator(j) for j in jacobians]


@pytest.mark.parametrize("make", [lambda: PCGrad(seed=3), lambda: GradVac(seed=3), lambda: GradDrop(seed=3)])
def test_aggregator_generators_restore_from_tensors_on_another_device(make):
    """Run two steps, save, run three more; a fresh aggregator loaded from the moved state runs the same three."""
    g = torch.Generator().manual_seed(0)
    jacobians = [torch.randn(4, 9, generator=g, dtype=torch.float64) for _ in range(5)]
    first = make()
    _draws(first, jacobians[:2])
    state = first.state_dict()
    expected = _draws(first, jacobians[2:])
    second = make()
    second.load_state_dict(_move_tensors(state))
    for got, want in zip(_draws(second, jacobians[2:]), expected):
        assert torch.equal(got, want)


def test_rlw_generator_restores_from_a_tensor_on_another_device():
    first = RLW(seed=5)
    first.sample(3)
    state = first.state_dict()
    expected = first.sample(3)
    second = RLW(seed=0)
    second.load_state_dict(_move_tensors(state))
    assert torch.equal(second.sample(3), expected)
