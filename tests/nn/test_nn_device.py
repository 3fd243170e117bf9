"""Module.cuda()/.to("cuda")/.cpu() move parameters in place and a training step runs on the
device arrays, exercised with a NumPy-backed stand-in for CuPy (no GPU needed)."""
from __future__ import annotations

import types

import numpy as np
import pytest

import disttorch
import disttorch.nn as dnn
from disttorch import _backend


class FakeDeviceArray(np.ndarray):
    """Stands in for cupy.ndarray (NumPy computes on it and keeps the subclass)."""

    @property
    def device(self):
        return types.SimpleNamespace(id=0)

    def get(self):
        return np.array(self).view(np.ndarray)


@pytest.fixture
def fake_cupy():
    mod = types.ModuleType("fake_cupy")

    class Device:
        def __init__(self, index=None):
            self.id = index or 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    mod.ndarray = FakeDeviceArray
    mod.asarray = lambda a, dtype=None: np.array(a, dtype=dtype, copy=True).view(FakeDeviceArray)
    mod.asnumpy = lambda a: np.array(a, copy=True).view(np.ndarray)
    mod.cuda = types.SimpleNamespace(Device=Device, runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    mod.__getattr__ = lambda name: getattr(np, name)
    _backend.set_cupy_for_testing(mod)
    yield mod
    _backend.set_cupy_for_testing(None)


def test_module_cuda_moves_in_place_and_trains(fake_cupy):
    disttorch.manual_seed(0)
    model = dnn.Sequential(dnn.Linear(6, 8), dnn.BatchNorm1d(8), dnn.ReLU(), dnn.Dropout(0.2), dnn.Linear(8, 3))
    params = list(model.parameters())
    before = [p.detach().numpy().copy() for p in params]
    assert model.cuda() is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert all(p.is_cuda for p in params) and model[1].running_mean.is_cuda
    x = disttorch.randn(5, 6).cuda()
    y = disttorch.tensor([0, 1, 2, 1, 0]).cuda()
    loss = dnn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad.is_cuda for p in params)
    model.to("cpu")
    assert all(not p.is_cuda and type(p._data) is np.ndarray for p in params)
    assert all(not p.grad.is_cuda for p in params)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.detach().numpy(), b)
    dnn.init.normal_(model.cuda()[0].weight)
    assert model[0].weight.is_cuda
