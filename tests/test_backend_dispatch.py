"""CuPy dispatch through ``disttorch._backend``, exercised with a NumPy-backed stand-in for CuPy.

The stand-in's ``ndarray`` is a subclass of NumPy's, so NumPy's functions compute on it and keep
its type; ``asarray`` / ``asnumpy`` move data "to" and "from" the device by copying. What is under
test is the dispatch: ``.to("cuda")`` / ``.cpu()`` round trips, devices reported, ops and backward
running through ``array_module`` on device arrays, and the error without CuPy.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

import disttorch
from disttorch import _backend


class FakeDeviceArray(np.ndarray):
    """Stands in for cupy.ndarray."""

    @property
    def device(self):
        return types.SimpleNamespace(id=getattr(self, "_dev", 0))

    def get(self):
        return np.array(self).view(np.ndarray)


def _make_fake_cupy():
    mod = types.ModuleType("fake_cupy")
    current = {"id": 0}

    class Device:
        def __init__(self, index=None):
            self.id = current["id"] if index is None else index

        def __enter__(self):
            self.prev, current["id"] = current["id"], self.id
            return self

        def __exit__(self, *exc):
            current["id"] = self.prev

        def use(self):
            current["id"] = self.id

        def synchronize(self):
            pass

    def asarray(a, dtype=None):
        out = np.array(a, dtype=dtype, copy=True).view(FakeDeviceArray)
        out._dev = current["id"]
        mod.transfers += 1
        return out

    def asnumpy(a):
        mod.transfers += 1
        return np.array(a, copy=True).view(np.ndarray)

    mod.ndarray = FakeDeviceArray
    mod.asarray = asarray
    mod.asnumpy = asnumpy
    mod.transfers = 0
    mod.cuda = types.SimpleNamespace(Device=Device, runtime=types.SimpleNamespace(getDeviceCount=lambda: 2))
    mod.__getattr__ = lambda name: getattr(np, name)  # every other function: NumPy's, on the subclass
    return mod


@pytest.fixture
def fake_cupy():
    mod = _make_fake_cupy()
    _backend.set_cupy_for_testing(mod)
    yield mod
    _backend.set_cupy_for_testing(None)


def test_without_cupy_cuda_raises_clear_error(monkeypatch):
    _backend.set_cupy_for_testing(None)
    monkeypatch.setattr(_backend, "_cupy_checked", True)  # as if the import of cupy had failed
    monkeypatch.setattr(_backend, "_cupy", None)
    assert not disttorch.cuda.is_available() and disttorch.cuda.device_count() == 0
    for make in (lambda: disttorch.ones(2).to("cuda"), lambda: disttorch.ones(2).cuda(),
                 lambda: disttorch.zeros(2, device="cuda"), lambda: disttorch.tensor([1.0], device="cuda:0")):
        with pytest.raises(RuntimeError) as e:
            make()
        assert str(e.value) == ("CUDA is not available: disttorch needs CuPy and a working NVIDIA GPU for device "
                                "'cuda' (pip install 'disttorch[gpu]'); use device 'cpu' instead")
    x = disttorch.ones(2)
    assert x.to("cpu") is x and x.cpu() is x


def test_round_trip_and_devices(fake_cupy):
    assert disttorch.cuda.is_available() and disttorch.cuda.device_count() == 2
    x = disttorch.tensor([1.0, 2.0, 3.0])
    g = x.to("cuda")
    assert isinstance(g._data, FakeDeviceArray) and g.is_cuda and not x.is_cuda
    assert g.device == disttorch.device("cuda", 0) and str(g.device) == "cuda:0"
    assert g.type() == "torch.cuda.FloatTensor"
    assert g.to("cuda") is g and g.cuda() is g
    back = g.cpu()
    assert type(back._data) is np.ndarray and back.device == disttorch.device("cpu")
    assert back.tolist() == [1.0, 2.0, 3.0]
    g1 = x.to("cuda:1")
    assert g1.device == disttorch.device("cuda:1") and g1.device.index == 1
    assert x.cuda(1).device.index == 1
    with pytest.raises(TypeError):
        g.numpy()  # device memory is not NumPy memory
    assert g.tolist() == [1.0, 2.0, 3.0] and g.sum().item() == 6.0
    z = disttorch.zeros(2, 2, device="cuda")
    assert z.is_cuda and z.shape == (2, 2)
    assert disttorch.ones_like(g).is_cuda
    d = x.to("cuda", disttorch.float64)
    assert d.is_cuda and d.dtype is disttorch.float64


def test_ops_and_backward_dispatch_to_device_module(fake_cupy):
    seen = []
    real_exp = np.exp

    def spy_exp(*a, **k):  # the op must ask the device module, not NumPy directly
        seen.append("exp")
        return real_exp(*a, **k)

    fake_cupy.exp = spy_exp
    w = disttorch.tensor([[0.5, -1.0], [2.0, 0.25]]).cuda().requires_grad_()
    x = disttorch.tensor([[1.0, 2.0]], device="cuda")
    y = (x @ w).exp()
    loss = (y * 2 + w.sum(0)).mean()
    assert seen == ["exp"] and y.is_cuda and loss.is_cuda
    loss.backward()
    assert w.grad is not None and w.grad.is_cuda
    # reference on the host
    wc = disttorch.tensor([[0.5, -1.0], [2.0, 0.25]], requires_grad=True)
    ((disttorch.tensor([[1.0, 2.0]]) @ wc).exp() * 2 + wc.sum(0)).mean().backward()
    np.testing.assert_allclose(w.grad.cpu().numpy(), wc.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(y.detach().cpu().numpy(), (disttorch.tensor([[1.0, 2.0]]) @ wc).exp().detach().numpy())


def test_gradient_travels_back_across_devices(fake_cupy):
    a = disttorch.tensor([1.0, 2.0], requires_grad=True)
    g = a.to("cuda")
    assert type(g.grad_fn).__name__ == "ToCopyBackward0"
    (g * g).sum().backward()
    assert type(a.grad._data) is np.ndarray and a.grad.tolist() == [2.0, 4.0]
    b = disttorch.tensor([3.0], device="cuda", requires_grad=True)
    (b.cpu() * 2).sum().backward()
    assert b.grad.is_cuda and b.grad.tolist() == [2.0]


def test_mixing_devices_is_an_error(fake_cupy):
    with pytest.raises(RuntimeError) as e:
        disttorch.ones(2) + disttorch.ones(2).cuda()
    assert str(e.value) == ("Expected all tensors to be on the same device, but found at least two devices, "
                            "cpu and cuda:0!")
