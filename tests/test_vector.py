"""disttorch/_vector.py: each elementwise kernel through MKL gives NumPy's values to a few ulp in
float32 and float64, and every case MKL cannot take (strided views, integers, small arrays,
overlapping operands, ``DISTTORCH_BLAS=numpy``) gives NumPy's expression exactly."""
import numpy as np
import psutil
import pytest

from disttorch import _gemm, _vector as V

needs_mkl = pytest.mark.skipif(not _gemm.mkl_available(),
                               reason="the mkl wheel is not installed (pip install disttorch[mkl])")

N = V.MIN_ELEMENTS + 1003  # above the MKL threshold, not a multiple of any SIMD width: tails run too
DTYPES = [np.float32, np.float64]


def _arrays(dtype, n=N, count=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for _ in range(count)]


def _assert_ulps(got, want64, dtype, ulps):
    """``got`` within ``ulps`` units in the last place of the exact (float64-or-better) value,
    measured at the scale of the operands (``want64`` near zero after cancellation has no ulp of
    its own worth the name)."""
    assert got.dtype == dtype
    scale = np.maximum(np.abs(want64), 1.0)
    err = np.abs(got.astype(np.float64) - want64) / (np.finfo(dtype).eps * scale)
    assert err.max() <= ulps, f"{err.max():.2f} ulp"


# every kernel: (call on arrays x, y, z in place / into out, its float64 reference, ulps allowed)
KERNELS = {
    "axpby_": (lambda x, y, z: V.axpby_(y, 0.3, x, 0.9), lambda x, y, z: 0.3 * x + 0.9 * y, 2),
    "axpy_": (lambda x, y, z: V.axpy_(y, -0.01, x), lambda x, y, z: y - 0.01 * x, 1),
    "scal_": (lambda x, y, z: V.scal_(x, 0.999), lambda x, y, z: 0.999 * x, 1),
    "sqr": (lambda x, y, z: V.sqr(x, z), lambda x, y, z: x * x, 1),
    "sqrt": (lambda x, y, z: V.sqrt(np.abs(x, out=x), z), lambda x, y, z: np.sqrt(np.abs(x)), 1),
    "linear_frac": (lambda x, y, z: V.linear_frac(x, np.abs(y, out=y), -0.05, 0.1, 1 / 0.3, 1e-3, z),
                    lambda x, y, z: (-0.05 * x + 0.1) / (np.abs(y) / 0.3 + 1e-3), 4),
}


def _reference(name, x, y, z):
    exact = KERNELS[name][1]
    return exact(*(a.astype(np.float64) for a in (x, y, z)))


def _outputs(name, x, y, z):
    return {"axpby_": y, "axpy_": y, "scal_": x}.get(name, z)


@needs_mkl
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_each_kernel_through_mkl_matches_numpy(name, dtype):
    x, y, z = _arrays(dtype)
    want = _reference(name, x, y, z)
    result = KERNELS[name][0](x, y, z)
    assert result is _outputs(name, x, y, z)
    _assert_ulps(result, want, dtype, KERNELS[name][2])


@needs_mkl
def test_the_kernels_take_mkl_for_these_arrays():
    x, y, z = _arrays(np.float32)
    assert V.accelerated(x, y, z)
    assert not V.accelerated(x[::2], y[::2])
    assert not V.accelerated(x.astype(np.int32))
    assert not V.accelerated(x[:V.MIN_ELEMENTS - 1])
    assert not V.accelerated(x, y.astype(np.float64))
    assert not V.accelerated(x, y[:-1])
    y.flags.writeable = False
    assert not V.accelerated(x, y)


def test_a_read_only_output_is_numpys_error():
    x, y, _ = _arrays(np.float32)
    y.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        V.axpby_(y, 0.5, x, 0.9)


def _numpy_expression(name, x, y, z):
    """What each kernel computes on the NumPy path, written out."""
    if name == "axpby_":
        return y * 0.9 + 0.3 * x
    if name == "axpy_":
        return y + -0.01 * x
    if name == "scal_":
        return x * 0.999
    if name == "sqr":
        return x * x
    if name == "sqrt":
        return np.abs(x) ** 0.5
    return (x * -0.05 + 0.1) / (np.abs(y) * (1 / 0.3) + 1e-3)


@pytest.mark.parametrize("name", sorted(KERNELS))
@pytest.mark.parametrize("case", ["strided", "small", "float16"])
def test_what_mkl_cannot_take_is_numpys_expression(name, case):
    n = {"strided": 2 * N, "small": V.MIN_ELEMENTS - 1, "float16": N}[case]
    x, y, z = _arrays(np.float16 if case == "float16" else np.float32, n=n)
    if case == "strided":
        x, y, z = x[::2], y[::2], z[::2]
    want = _numpy_expression(name, x.copy(), y.copy(), z.copy())
    result = KERNELS[name][0](x, y, z)
    np.testing.assert_array_equal(result, want)


def test_sizes_past_mkls_32_bit_counts_take_numpy(monkeypatch):
    x, y, z = _arrays(np.float32)
    monkeypatch.setattr(V, "_INT_MAX", N - 1)  # as if these N elements were 2**31 of them
    assert not V.accelerated(x, y, z)
    for name in sorted(KERNELS):
        a, b, c = (v.copy() for v in (x, y, z))
        want = _numpy_expression(name, a.copy(), b.copy(), c.copy())
        np.testing.assert_array_equal(KERNELS[name][0](a, b, c), want)


def test_integer_arrays_take_numpys_rules():
    x = np.arange(N, dtype=np.int64)
    y = np.ones(N, dtype=np.int64)
    np.testing.assert_array_equal(V.sqr(x, np.empty_like(x)), x * x)
    with pytest.raises(TypeError, match="Cannot cast ufunc 'add' output"):
        V.axpy_(y, 0.5, x)  # float into an integer array in place: NumPy's own casting error


@needs_mkl
def test_output_may_be_an_input_but_not_overlap_one():
    x, y, _ = _arrays(np.float32)
    b = np.abs(y)
    into_b = b.copy()
    V.linear_frac(x, into_b, 2.0, 0.5, 3.0, 1.0, into_b)  # out is b itself: elementwise, allowed
    separate = V.linear_frac(x, b, 2.0, 0.5, 3.0, 1.0, np.empty_like(b))
    np.testing.assert_array_equal(into_b, separate)
    # out shifted one element against x: MKL would read values it already overwrote; NumPy buffers
    store = x.copy()
    v = np.concatenate([store, [1.0]]).astype(np.float32)
    want = v[:-1] * 0.9 + 0.5 * v[1:]
    np.testing.assert_array_equal(V.axpby_(v[:-1], 0.5, v[1:], 0.9), want)


def test_blas_numpy_turns_the_kernels_to_numpy(monkeypatch):
    monkeypatch.setenv("DISTTORCH_BLAS", "numpy")
    _gemm._reset_for_tests()
    try:
        x, y, z = _arrays(np.float32)
        assert not V.accelerated(x, y, z)
        for name in sorted(KERNELS):
            a, b, c = (v.copy() for v in (x, y, z))
            want = _numpy_expression(name, a.copy(), b.copy(), c.copy())
            np.testing.assert_array_equal(KERNELS[name][0](a, b, c), want)
    finally:
        monkeypatch.undo()
        _gemm._reset_for_tests()


@needs_mkl
def test_sqrt_is_pytorchs_to_the_bit():
    """PyTorch's CPU sqrt is MKL's vmsSqrt in the same mode; NumPy's differs by an ulp here and there."""
    torch = pytest.importorskip("torch", reason="PyTorch is the reference")
    if not torch.backends.mkl.is_available():
        pytest.skip("this PyTorch build computes sqrt without MKL")
    x = np.abs(_arrays(np.float32, n=100_003)[0])
    np.testing.assert_array_equal(V.sqrt(x, np.empty_like(x)), torch.from_numpy(x).sqrt().numpy())


@needs_mkl
def test_kernels_start_no_threads():
    """MKL's sequential layer: the vector routines start no OpenMP pool."""
    before = {t.id for t in psutil.Process().threads()}
    for dtype in DTYPES:
        for name in KERNELS:
            KERNELS[name][0](*_arrays(dtype, n=1 << 20))
    started = {t.id for t in psutil.Process().threads()} - before  # threads that ended meanwhile are fine
    assert not started
