"""Tensor printing (disttorch._tensor_str) against PyTorch's own repr.

The Tensor class is not needed: a SimpleNamespace carrying ``_data``/``dtype``/``device``/
``requires_grad``/``grad_fn``/``is_leaf`` is printed and compared with ``repr(torch.tensor(...))``
of the same NumPy array. Literal expectations at the top run without torch.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from disttorch import _dtype
from disttorch import _tensor_str as ts
from disttorch._device import device as _device

try:
    import torch
except Exception:  # pragma: no cover - torch is optional for the test suite
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed; comparison skipped")


class AddBackward0:
    pass


class MulBackward0:
    pass


def fake(arr, dtype=None, dev="cpu", requires_grad=False, grad_fn=None):
    arr = np.asarray(arr)
    d = _dtype.from_numpy_dtype(arr.dtype) if dtype is None else dtype
    return SimpleNamespace(_data=arr, dtype=d, device=_device(dev), requires_grad=requires_grad,
                           grad_fn=grad_fn, is_leaf=grad_fn is None)


def ours(arr, **kw):
    return ts.tensor_repr(fake(arr, **kw))


def theirs(arr):
    return repr(torch.from_numpy(np.array(arr, copy=True)))


@pytest.fixture(autouse=True)
def _restore_options():
    old = ts.get_printoptions()
    old_torch = torch._tensor_str.get_printoptions() if torch is not None else None
    old_default = _dtype.get_default_dtype()
    yield
    ts.set_printoptions(**old)
    _dtype.set_default_dtype(old_default)
    if torch is not None:
        torch.set_printoptions(**old_torch)
        torch.set_default_dtype(torch.float32)


# ---------------------------------------------------------------------------------------------
# literal expectations (no torch needed)

LITERALS = [
    (np.array([1.0, 2.0, 3.0], np.float32), "tensor([1., 2., 3.])"),
    (np.array([1.5, -2.25], np.float32), "tensor([ 1.5000, -2.2500])"),
    (np.array([1, 2, 3], np.int64), "tensor([1, 2, 3])"),
    (np.array([1, -20], np.int32), "tensor([  1, -20], dtype=torch.int32)"),
    (np.array([True, False]), "tensor([ True, False])"),
    (np.array(3.5, np.float32), "tensor(3.5000)"),
    (np.array(7, np.int64), "tensor(7)"),
    (np.array([1.0, 2.0], np.float64), "tensor([1., 2.], dtype=torch.float64)"),
    (np.array([1e-5, 1.0], np.float32), "tensor([1.0000e-05, 1.0000e+00])"),
    (np.array([np.nan, np.inf, -np.inf, 1.0], np.float32), "tensor([nan, inf, -inf, 1.])"),
    (np.zeros((0,), np.float32), "tensor([])"),
    (np.zeros((0, 3), np.float32), "tensor([], size=(0, 3))"),
    (np.zeros((0,), np.int64), "tensor([], dtype=torch.int64)"),
    (np.array([[1, 2], [3, 4]], np.uint8), "tensor([[1, 2],\n        [3, 4]], dtype=torch.uint8)"),
    (np.array([0.0, -0.0], np.float32), "tensor([0., -0.])"),
    (np.arange(2000, dtype=np.int64), "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])"),
]


@pytest.mark.parametrize("arr,expected", LITERALS, ids=[e for _, e in LITERALS])
def test_literal(arr, expected):
    assert ours(arr) == expected


def test_literal_suffixes():
    a = np.array([1.0, 2.0], np.float32)
    assert ours(a, requires_grad=True) == "tensor([1., 2.], requires_grad=True)"
    assert ours(a, requires_grad=True, grad_fn=AddBackward0()) == "tensor([1., 2.], grad_fn=<AddBackward0>)"
    assert ours(a, dev="cuda:0") == "tensor([1., 2.], device='cuda:0')"
    assert ours(a, dev="cuda:1", requires_grad=True) == "tensor([1., 2.], device='cuda:1', requires_grad=True)"
    assert ours(np.array([1, 2], np.int16), dev="cuda:0") == "tensor([1, 2], device='cuda:0', dtype=torch.int16)"
    assert ts.parameter_repr(fake(a, requires_grad=True)) == \
        "Parameter containing:\ntensor([1., 2.], requires_grad=True)"


def test_literal_default_float64():
    a = np.array([1.0, 2.5], np.float32)
    assert ts.tensor_repr(fake(a), default_dtype="float64") == "tensor([1.0000, 2.5000], dtype=torch.float32)"
    _dtype.set_default_dtype(_dtype.float64)
    assert ours(a.astype(np.float64)) == "tensor([1.0000, 2.5000])"
    assert ours(np.zeros((0,), np.float64)) == "tensor([])"
    assert ours(np.zeros((0,), np.float32)) == "tensor([], dtype=torch.float32)"


def test_printoptions_api():
    assert ts.get_printoptions() == dict(precision=4, threshold=1000, edgeitems=3, linewidth=80, sci_mode=None)
    ts.set_printoptions(precision=2, sci_mode=True)
    assert ts.get_printoptions()["precision"] == 2 and ts.get_printoptions()["sci_mode"] is True
    ts.set_printoptions(precision=3)  # like torch, sci_mode resets to None when omitted
    assert ts.get_printoptions()["sci_mode"] is None
    ts.set_printoptions(profile="short")
    assert (ts.PRINT_OPTS.precision, ts.PRINT_OPTS.edgeitems) == (2, 2)
    ts.set_printoptions(profile="full")
    assert ts.PRINT_OPTS.threshold == float("inf")
    ts.set_printoptions(profile="default")
    with ts.printoptions(precision=1):
        assert ours(np.array([1.25], np.float32)) == "tensor([1.2])"
    assert ours(np.array([1.25], np.float32)) == "tensor([1.2500])"


def test_large_is_fast():
    a = np.random.default_rng(0).standard_normal((1000, 1000)).astype(np.float32)
    t = fake(a)
    ts.tensor_repr(t)
    start = time.perf_counter()
    s = ts.tensor_repr(t)
    assert time.perf_counter() - start < 0.05
    assert s.count("\n") == 6 and "..." in s


# ---------------------------------------------------------------------------------------------
# comparisons with torch


def _cases():
    rng = np.random.default_rng(1234)
    c = {}
    for dt in (np.float16, np.float32, np.float64):
        n = np.dtype(dt).name
        c[f"{n}-0d"] = np.array(1.2345678, dt)
        c[f"{n}-0d-int"] = np.array(-3.0, dt)
        c[f"{n}-0d-nan"] = np.array(np.nan, dt)
        c[f"{n}-0d-tiny"] = np.array(1e-7 if dt != np.float16 else 1e-7, dt)
        c[f"{n}-1d"] = rng.standard_normal(7).astype(dt)
        c[f"{n}-intvals"] = np.array([1, -2, 30, 400], dt)
        c[f"{n}-2d"] = rng.standard_normal((3, 4)).astype(dt)
        c[f"{n}-3d"] = rng.standard_normal((2, 3, 4)).astype(dt)
        c[f"{n}-4d"] = rng.standard_normal((2, 2, 2, 3)).astype(dt)
        c[f"{n}-nonfinite"] = np.array([np.nan, np.inf, -np.inf, 1.5, -0.0], dt)
        c[f"{n}-nonfinite-int"] = np.array([np.nan, np.inf, -np.inf, 2.0], dt)
        c[f"{n}-allzero"] = np.zeros((2, 3), dt)
        c[f"{n}-negzero"] = np.array([-0.0, 0.0, -0.0], dt)
        c[f"{n}-allnan"] = np.full(3, np.nan, dt)
        c[f"{n}-wide"] = rng.standard_normal(40).astype(dt)
        c[f"{n}-wide-2d"] = (rng.standard_normal((3, 25)) * 100).astype(dt)
        c[f"{n}-sci-small"] = np.array([1e-5, 0.5, 2.0], dt)
        c[f"{n}-ratio"] = np.array([0.01, 20.0], dt)
        c[f"{n}-sum-2000"] = rng.standard_normal(2000).astype(dt)
        c[f"{n}-sum-3d"] = rng.standard_normal((12, 10, 11)).astype(dt)
        c[f"{n}-empty"] = np.zeros((0,), dt)
        c[f"{n}-empty-03"] = np.zeros((0, 3), dt)
        c[f"{n}-empty-204"] = np.zeros((2, 0, 4), dt)
        c[f"{n}-rounding"] = np.array([9.99996, 0.00005, 1.0], dt)
        c[f"{n}-rounding-fixed"] = np.array([9.99996, 1.5, -0.99999], dt)
        c[f"{n}-0d-sci"] = np.array(-12345678.0 if dt != np.float16 else -0.00001, dt)
        c[f"{n}-0d-negzero"] = np.array(-0.0, dt)
        c[f"{n}-0d-inf"] = np.array(-np.inf, dt)
        c[f"{n}-column"] = rng.standard_normal((5, 1)).astype(dt)
        c[f"{n}-ones-5d"] = np.ones((1, 2, 1, 2, 1), dt)
    for dt in (np.float32, np.float64):
        n = np.dtype(dt).name
        c[f"{n}-big"] = np.array([1e9, 1.0, -3.0], dt)
        c[f"{n}-big-int"] = np.array([1e9, 2e9], dt)
        c[f"{n}-huge"] = np.array([1e30, -2.5e-30], dt)
        c[f"{n}-mixed"] = (rng.standard_normal((4, 5)) * np.logspace(-6, 6, 20).reshape(4, 5)).astype(dt)
        c[f"{n}-1000x1000"] = rng.standard_normal((1000, 1000)).astype(dt)
        c[f"{n}-1000x1000-int"] = np.round(rng.standard_normal((1000, 1000)) * 1000).astype(dt)
    for dt in (np.int8, np.int16, np.int32, np.int64, np.uint8):
        n = np.dtype(dt).name
        info = np.iinfo(dt)
        c[f"{n}-0d"] = np.array(5, dt)
        c[f"{n}-1d"] = rng.integers(info.min, info.max, 9, endpoint=True).astype(dt)
        c[f"{n}-2d"] = rng.integers(0, 100, (3, 4)).astype(dt)
        c[f"{n}-3d"] = rng.integers(0, 10, (2, 3, 2)).astype(dt)
        c[f"{n}-4d"] = rng.integers(0, 10, (2, 1, 2, 3)).astype(dt)
        c[f"{n}-wide"] = rng.integers(0, 100, 60).astype(dt)
        c[f"{n}-sum"] = rng.integers(0, 100, 1500).astype(dt)
        c[f"{n}-empty"] = np.zeros((0,), dt)
        c[f"{n}-empty-03"] = np.zeros((0, 3), dt)
        c[f"{n}-empty-204"] = np.zeros((2, 0, 4), dt)
    c["int64-extremes"] = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max], np.int64)
    c["int64-1000x1000"] = np.arange(10 ** 6, dtype=np.int64).reshape(1000, 1000)
    c["bool-0d"] = np.array(True)
    c["bool-1d"] = np.array([True, False, True])
    c["bool-true"] = np.array([True, True])
    c["bool-2d"] = rng.integers(0, 2, (3, 5)).astype(bool)
    c["bool-wide"] = rng.integers(0, 2, 30).astype(bool)
    c["bool-sum"] = rng.integers(0, 2, (40, 40)).astype(bool)
    c["bool-empty"] = np.zeros((0,), bool)
    c["bool-empty-03"] = np.zeros((0, 3), bool)
    c["complex64-1d"] = (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex64)
    c["complex128-2d"] = (rng.standard_normal((2, 3)) + 1j * rng.integers(-3, 3, (2, 3))).astype(np.complex128)
    c["complex64-0d"] = np.array(1 - 2j, np.complex64)
    c["complex64-negzero-imag"] = np.array([1 - 0j, complex(2, -0.0)], np.complex64)
    c["complex64-sum"] = (rng.standard_normal(1200) + 1j * rng.standard_normal(1200)).astype(np.complex64)
    c["complex128-wide"] = (rng.standard_normal(12) * 1e5 + 1j * rng.standard_normal(12)).astype(np.complex128)
    c["float32-noncontig"] = rng.standard_normal((4, 6)).astype(np.float32)[::2, ::-3]
    c["float32-f16-max"] = np.array([65504.0, 1e-3], np.float16)
    return c


CASES = _cases()


@needs_torch
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name):
    arr = CASES[name]
    assert ours(arr) == theirs(arr)


@needs_torch
def test_fuzz_matches_torch():
    rng = np.random.default_rng(7)
    for i in range(150):
        dt = [np.float16, np.float32, np.float64][i % 3]
        ndim = int(rng.integers(0, 4))
        shape = tuple(int(s) for s in rng.integers(1, 6, ndim))
        scale = 10.0 ** rng.integers(-6, 10)
        a = rng.standard_normal(shape) * scale
        if i % 4 == 0:
            a = np.round(a)
        if i % 5 == 0 and a.size:
            a.reshape(-1)[0] = [np.nan, np.inf, -np.inf, 0.0, -0.0][(i // 5) % 5]
        with np.errstate(over="ignore"):
            a = a.astype(dt)  # float16 may overflow to inf: printed like any inf
        assert ours(a) == theirs(a), (a.dtype, a.shape, a)


_OPTION_SETS = [
    dict(precision=2),
    dict(precision=8),
    dict(precision=0),
    dict(sci_mode=True),
    dict(sci_mode=False),
    dict(precision=2, sci_mode=True),
    dict(threshold=5),
    dict(threshold=5, edgeitems=1),
    dict(threshold=5, edgeitems=0),
    dict(edgeitems=0),
    dict(linewidth=40),
    dict(linewidth=10),
    dict(linewidth=200),
    dict(profile="short"),
    dict(profile="full"),
]


@needs_torch
@pytest.mark.parametrize("opts", _OPTION_SETS, ids=[str(o) for o in _OPTION_SETS])
def test_printoptions_match_torch(opts):
    rng = np.random.default_rng(3)
    arrays = [
        rng.standard_normal(12).astype(np.float32),
        np.array([1e-5, 1.0, 123.456], np.float32),
        np.array([1.0, 2.0, 3.0], np.float64),
        rng.standard_normal((4, 9)).astype(np.float32),
        rng.standard_normal((5, 4, 3)).astype(np.float64),
        np.arange(30, dtype=np.int64),
        np.arange(24, dtype=np.int32).reshape(2, 3, 4),
        rng.standard_normal(2000).astype(np.float32),
        rng.standard_normal((40, 40)).astype(np.float32),
        np.array([True, False] * 6),
        np.array(2.5, np.float32),
        np.array([np.nan, 1e10, 1.0], np.float32),
        (rng.standard_normal(8) + 1j * rng.standard_normal(8)).astype(np.complex64),
        np.zeros((0, 2), np.float32),
    ]
    ts.set_printoptions(**opts)
    torch.set_printoptions(**opts)
    for a in arrays:
        assert ours(a) == theirs(a), (opts, a.dtype, a.shape)


@needs_torch
@pytest.mark.parametrize("name", ["float32-1d", "float32-2d", "float32-wide-2d", "float32-sum-2000",
                                  "float32-0d", "float32-empty", "float32-empty-03"])
def test_autograd_suffixes_match_torch(name):
    arr = CASES[name]
    leaf = torch.tensor(arr, requires_grad=True)
    assert ours(arr, requires_grad=True) == repr(leaf)
    assert ours(arr, requires_grad=True, grad_fn=AddBackward0()) == repr(leaf + 0)
    assert ours(arr, requires_grad=True, grad_fn=MulBackward0()) == repr(leaf * 1)
    p = torch.nn.Parameter(torch.tensor(arr))
    assert ts.parameter_repr(fake(arr, requires_grad=True)) == repr(p)


@needs_torch
def test_long_suffix_wraps_like_torch():
    class AVeryLongBackwardFunctionNameForWrappingTestsBackward0:
        pass

    arr = np.arange(16, dtype=np.int16) * 1000
    got = ours(arr, dev="cuda:0", requires_grad=True,
               grad_fn=AVeryLongBackwardFunctionNameForWrappingTestsBackward0())
    # rebuild torch's string with the same suffix logic via its _add_suffixes
    body = repr(torch.from_numpy(arr)).rsplit(", dtype=", 1)[0]
    exp = torch._tensor_str._add_suffixes(
        body, ["device='cuda:0'", "dtype=torch.int16",
               "grad_fn=<AVeryLongBackwardFunctionNameForWrappingTestsBackward0>"], 7, False)
    assert got == exp


@needs_torch
@pytest.mark.parametrize("name", ["float64-1d", "float64-2d", "float32-1d", "float16-1d", "float64-empty",
                                  "float32-empty", "float64-empty-03", "int64-empty", "complex128-2d",
                                  "complex64-1d", "bool-empty"])
def test_default_float64_matches_torch(name):
    arr = CASES[name]
    _dtype.set_default_dtype(_dtype.float64)
    torch.set_default_dtype(torch.float64)
    assert ours(arr) == theirs(arr)
    assert ts.tensor_repr(fake(arr), default_dtype="float64") == theirs(arr)
