"""The CuPy stand-in is as strict as CuPy where disttorch could go wrong: these pin its behaviour down,
so a lenient stand-in cannot hide a host/device mix-up in the device suites."""
from __future__ import annotations

import numpy as np
import pytest

import disttorch
from _fake_cupy import make_fake_cupy
from _on_device import assert_on


@pytest.fixture
def cp():
    return make_fake_cupy(device_count=2)


def test_no_implicit_host_conversion(cp):
    a = cp.arange(6.0).reshape(2, 3)
    for convert in (np.asarray, np.array, lambda x: np.zeros(3)[...].__setitem__(Ellipsis, x[0])):
        with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
            convert(a)
    assert not isinstance(a, np.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(a), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(a.get(), np.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("mix", [lambda a: a + np.ones(3), lambda a: np.ones(3) * a, lambda a: a + np.array(1.0),
                                 lambda a: np.maximum(a, np.zeros(3)), lambda a: np.concatenate([a, np.ones(3)]),
                                 lambda a: np.where(np.ones(3, bool), a, a)])
def test_host_operands_are_refused(cp, mix):
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        mix(cp.ones(3))


def test_scalars_reductions_and_views(cp):
    a = cp.arange(6.0).reshape(2, 3)
    s = a.sum()
    assert isinstance(s, cp.ndarray) and s.ndim == 0 and float(s) == 15.0
    assert isinstance(a[0, 1], cp.ndarray) and int(a[0, 1]) == 1
    v = a[1]
    v[0] = 100.0
    assert float(a[1, 0]) == 100.0  # views share device memory
    a[0] = np.float32(7)  # NumPy scalars are fine
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        a[0] = np.ones(3)
    assert (a * 2.0 + 1).dtype == np.float64 and (np.float32(2) * a).shape == (2, 3)


def test_ufunc_at_only_where_cupy_has_it(cp):
    a = cp.zeros(3)
    np.add.at(a, np.array([0, 0, 2]), 1.0)  # host index arrays are copied over, as CuPy does
    assert a.get().tolist() == [2.0, 0.0, 1.0]
    with pytest.raises(NotImplementedError):
        np.multiply.at(a, np.array([0]), 2.0)


def test_devices_and_current_device(cp):
    a = cp.ones(2)
    with cp.cuda.Device(1):
        b = cp.ones(2)
        assert (b + 1).device.id == 1
        assert (a.reshape(1, 2)).device.id == 0  # a view stays with its memory
    assert a.device.id == 0 and b.device.id == 1
    with pytest.raises(ValueError, match="Peer access is unavailable"):
        a + b
    with pytest.raises(Exception):
        cp.cuda.Device(5).use()
    used = cp.get_default_memory_pool().used_bytes()
    c = cp.zeros(1000)
    assert cp.get_default_memory_pool().used_bytes() == used + 8000
    del c
    assert cp.get_default_memory_pool().used_bytes() == used


def test_ops_follow_the_current_device(fake_cupy):
    """As in CuPy, new results land on the current GPU: a process computes on one GPU at a time."""
    x = disttorch.ones(3, device="cuda:1")
    with disttorch.cuda.device(1):
        y = (x * 2).exp()
        assert_on(y, "cuda:1")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device, but found at least two "
                                           "devices, cuda:1 and cuda:0!"):
        x + disttorch.ones(3, device="cuda:0")
