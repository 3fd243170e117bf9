"""GELU: the float32 kernel (PyTorch's float32 erf formula, chunked, derivative from the forward)
against float64 exact values and PyTorch, across chunk boundaries and for strided input; the tanh
form against PyTorch; float64 still exact (finite differences); create_graph on float32."""
import math
import warnings

import numpy as np
import pytest

import disttorch as dt
import disttorch.nn.functional as F
from disttorch.autograd import gradcheck, gradgradcheck
from disttorch.ops import _gelu_float32

rng = np.random.default_rng(31)


def _exact(x):
    """GELU and its derivative in float64 with math.erf."""
    x = x.astype(np.float64)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return x * cdf, cdf + x * pdf


def test_float32_kernel_is_within_float32_rounding_of_the_exact_values():
    # two whole chunks and a ragged tail, values from -9 to 9 (both tails of the cdf)
    n = 2 * _gelu_float32._CHUNK + 37
    x = np.concatenate([np.linspace(-9, 9, 4001), rng.standard_normal(n - 4001) * 3]).astype(np.float32)
    out, deriv = _gelu_float32.gelu_float32(x, with_derivative=True)
    value, slope = _exact(x)
    assert out.dtype == deriv.dtype == np.float32
    np.testing.assert_allclose(out, value, rtol=0, atol=5e-7 + 2e-7 * np.abs(value).max())
    np.testing.assert_allclose(deriv, slope, rtol=0, atol=1e-6)
    assert (out[x < -6] <= 0).all() and (out[x < -6] > -1e-7).all()  # the far tail stays tiny, not noise
    assert _gelu_float32.gelu_float32(x, with_derivative=False)[1] is None


def test_float32_gelu_matches_torch_forward_and_backward_on_strided_input():
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
    base = (rng.standard_normal((40, 600)) * 2.5).astype(np.float32)
    g = rng.standard_normal((40, 300)).astype(np.float32)
    results = []
    for lib in (torch, dt):
        x = lib.tensor(base, requires_grad=True)
        y = lib.nn.functional.gelu(x[:, ::2])  # a strided view
        y.backward(lib.tensor(g))
        results.append((y.detach().numpy(), x.grad.numpy()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=0, atol=2e-6)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=0, atol=2e-6)


def test_float32_far_negative_tail_cancels_to_zero_as_torch_and_no_grad_gives_the_same_values():
    # PyTorch forms 0.5 * (1 + erf) first, so below about -7 the cdf cancels to 0 and GELU is -0.0;
    # the kernel forms Phi(x) first too, and its values do not depend on whether a gradient is kept
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
    x = np.array([-13.0, -10.5, -9.5, -8.0, -7.5, -5.0, -1e-8, 0.0, 1e-8, 3.0, 1e20], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # x*x overflowing for 1e20 is no warning to the user
        out, _ = _gelu_float32.gelu_float32(x, with_derivative=True)
    expected = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    assert (out[x <= -8] == 0).all() and (expected[x <= -8] == 0).all()
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=4e-7)
    assert out[-1] == np.float32(1e20)
    np.testing.assert_array_equal(_gelu_float32.gelu_float32(x, with_derivative=False)[0], out)


@pytest.mark.parametrize("blas", ["mkl", "numpy"])
def test_both_kernels_agree_on_tails_overflow_and_nan_across_chunks(blas, monkeypatch):
    # Arrays of at least _vector.MIN_ELEMENTS go through MKL's erf and exp when MKL is there;
    # DISTTORCH_BLAS=numpy keeps them on the NumPy formula. Both cancel the far negative tail to
    # -0.0 as PyTorch does, pass 1e20 and NaN through, and agree with the exact values.
    from disttorch import _gemm, _vector

    if blas == "mkl" and not _gemm.mkl_available():
        pytest.skip("the mkl wheel is not installed (pip install disttorch[mkl])")
    monkeypatch.setenv("DISTTORCH_BLAS", blas)
    _gemm._reset_for_tests()
    try:
        n = _gelu_float32._CHUNK + 4099
        x = (rng.standard_normal(n) * 3).astype(np.float32)
        special = np.array([-13.0, -9.5, -8.0, -1e-8, 0.0, 3.0, 1e20, np.nan], np.float32)
        x[_gelu_float32._CHUNK - 4:_gelu_float32._CHUNK + 4] = special  # across the chunk boundary
        assert (_vector.routines(x, x) is not None) == (blas == "mkl")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out, deriv = _gelu_float32.gelu_float32(x, with_derivative=True)
    finally:
        monkeypatch.undo()
        _gemm._reset_for_tests()
    where = slice(_gelu_float32._CHUNK - 4, _gelu_float32._CHUNK + 4)
    got, slope = out[where], deriv[where]
    assert (got[:3] == 0).all() and np.signbit(got[:3]).all()
    assert got[6] == np.float32(1e20) and slope[6] == 1 and np.isnan(got[7]) and np.isnan(slope[7])
    finite = np.isfinite(x) & (np.abs(x) < 1e6)
    value, exact_slope = _exact(x[finite])
    np.testing.assert_allclose(out[finite], value, rtol=0, atol=5e-7 + 2e-7 * np.abs(value).max())
    np.testing.assert_allclose(deriv[finite], exact_slope, rtol=0, atol=1e-6)


def test_a_read_only_input_gives_the_same_bits_as_a_writeable_one():
    x = (rng.standard_normal(3 * _gelu_float32._CHUNK) * 3).astype(np.float32)
    frozen = x.copy()
    frozen.setflags(write=False)
    for a, b in zip(_gelu_float32.gelu_float32(frozen, True), _gelu_float32.gelu_float32(x, True)):
        np.testing.assert_array_equal(a, b)


def test_tanh_gelu_matches_torch():
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for parity tests")
    base = (rng.standard_normal((8, 50)) * 3).astype(np.float32)
    results = []
    for lib in (torch, dt):
        x = lib.tensor(base, requires_grad=True)
        y = lib.nn.functional.gelu(x, approximate="tanh")
        y.sum().backward()
        results.append((y.detach().numpy(), x.grad.numpy()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_float64_gelu_gradcheck_and_gradgradcheck(approximate):
    x = dt.tensor(rng.standard_normal((3, 4)) * 2, requires_grad=True)
    fn = lambda t: F.gelu(t, approximate=approximate)  # noqa: E731
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


def test_float32_create_graph_gives_the_same_gradient_and_a_second_derivative():
    x = dt.tensor((rng.standard_normal(64) * 2).astype(np.float32), requires_grad=True)
    plain, = dt.autograd.grad(F.gelu(x).sum(), x)
    graph, = dt.autograd.grad(F.gelu(x).sum(), x, create_graph=True)
    np.testing.assert_allclose(graph.detach().numpy(), plain.numpy(), rtol=0, atol=1e-6)
    second, = dt.autograd.grad(graph.sum(), x)
    xs = x.detach().numpy().astype(np.float64)
    expected = np.exp(-0.5 * xs * xs) / math.sqrt(2 * math.pi) * (2 - xs * xs)  # d2/dx2 of x * Phi(x)
    np.testing.assert_allclose(second.numpy(), expected, rtol=0, atol=1e-5)


def test_no_grad_keeps_no_derivative():
    with dt.no_grad():
        y = F.gelu(dt.tensor(rng.standard_normal(10).astype(np.float32)))
    assert y.grad_fn is None
