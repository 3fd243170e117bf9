"""Runs the CPU suites' case tables on a CUDA device and compares with the CPU run.

``OnDevice(dev)`` is a stand-in for the ``disttorch`` module inside a case's ``fn(M, ...)``: every
factory places new tensors on ``dev`` (as ``torch.set_default_device`` does), everything else is
disttorch's. The same expression then runs once on the host and once on the device, and the two
must give the same values, dtypes and shapes, with every result tensor on the device.
"""
from __future__ import annotations

import numpy as np

import disttorch

TOLERANCE_SCALE = 1.0  # widened by the ``gpu`` fixture on real hardware (cuBLAS / CUDA math rounding)

_FACTORIES = ("tensor", "as_tensor", "zeros", "ones", "empty", "full", "eye", "arange", "linspace", "logspace",
              "rand", "randn", "randint", "randperm", "normal")


class OnDevice:
    """``disttorch`` with factories defaulting to ``device``."""

    def __init__(self, device):
        self.device = device

    def __getattr__(self, name):
        fn = getattr(disttorch, name)
        if name in _FACTORIES:
            def make(*args, **kwargs):
                kwargs.setdefault("device", self.device)
                return fn(*args, **kwargs)
            return make
        return fn


def leaves(r):
    """Tensors (and other values) of a nested result, flattened."""
    if isinstance(r, (tuple, list)):
        out = []
        for x in r:
            out.extend(leaves(x))
        return out
    return [r]


def host(t):
    return None if t is None else t.detach().cpu().numpy()


def assert_on(t, device):
    """``t`` (a Tensor) lives on ``device``, its array is of the device's type."""
    from disttorch import _backend
    assert t.device == disttorch.device(device), (t.device, device)
    assert _backend.is_cuda_array(t._data) == (disttorch.device(device).type == "cuda")


def assert_same(got, want, device, rtol=1e-5, atol=1e-6, what=""):
    """Device result ``got`` equals host result ``want`` (values, dtype, shape) and sits on ``device``."""
    rtol, atol = rtol * TOLERANCE_SCALE, atol * TOLERANCE_SCALE
    g_leaves, w_leaves = leaves(got), leaves(want)
    assert len(g_leaves) == len(w_leaves), what
    for g, w in zip(g_leaves, w_leaves):
        if isinstance(w, disttorch.Tensor):
            assert isinstance(g, disttorch.Tensor), (what, type(g))
            assert_on(g, device)
            assert g.dtype == w.dtype and tuple(g.shape) == tuple(w.shape), (what, g.dtype, w.dtype, g.shape, w.shape)
            np.testing.assert_allclose(host(g).astype(np.float64), host(w).astype(np.float64), rtol=rtol, atol=atol,
                                       equal_nan=True, err_msg=what)
        elif w is None:
            assert g is None, what
        else:
            assert g == w or (isinstance(w, float) and np.isclose(g, w)), (what, g, w)
