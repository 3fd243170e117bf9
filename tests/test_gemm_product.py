"""disttorch/_gemm.Product: a product planned once and run at stack offsets gives NumPy's values for
every run (through MKL's GEMM, and through NumPy's matmul where MKL is off), adds into ``out`` with
``accumulate``, and refuses runs outside the planned arrays."""
import numpy as np
import pytest

from disttorch import _gemm


def _tolerance(a, b):
    eps = 1e-15 if a.dtype == np.float64 else 4e-7
    return 10 * eps * np.sqrt(a.shape[-1]) * np.abs(a).max() * np.abs(b).max()


@pytest.fixture(params=["mkl", "numpy"])
def backend(request, monkeypatch):
    if request.param == "mkl" and not _gemm.mkl_available():
        pytest.skip("the mkl wheel is not installed (pip install disttorch[mkl])")
    if request.param == "numpy":
        monkeypatch.setenv("DISTTORCH_BLAS", "numpy")
        _gemm._reset_for_tests()
    yield request.param
    monkeypatch.undo()
    _gemm._reset_for_tests()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_runs_of_a_shared_matrix_times_a_transposed_stack_write_their_slices_only(backend, dtype):
    # the convolution's forward: out[s:e] = W @ cols[i].T, with cols a reused buffer of 3 samples
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 40)).astype(dtype)
    cols = rng.standard_normal((3, 72, 40)).astype(dtype)
    out = np.full((10, 16, 72), 7.0, dtype)
    product = _gemm.Product(w, cols.transpose(0, 2, 1), out)
    assert (product._call is not None) == (backend == "mkl")
    product(2, b_at=1, out_at=4)
    product(1, b_at=0, out_at=9)
    expected = np.full_like(out, 7.0)
    expected[4:6] = np.matmul(w.astype(np.float64), cols[1:3].transpose(0, 2, 1).astype(np.float64))
    expected[9] = w.astype(np.float64) @ cols[0].T.astype(np.float64)
    np.testing.assert_allclose(out, expected, rtol=0, atol=_tolerance(w, cols))


def test_accumulated_runs_into_one_matrix_sum_the_products(backend):
    # the weight gradient: gw += y[i] @ cols[i], one run per sample
    rng = np.random.default_rng(1)
    y = rng.standard_normal((5, 8, 30)).astype(np.float32)
    cols = rng.standard_normal((5, 30, 12)).astype(np.float32)
    gw = np.ones((8, 12), np.float32)
    product = _gemm.Product(y, cols, gw, accumulate=True)
    for i in range(5):
        product(1, a_at=i, b_at=i)
    expected = 1 + np.einsum("nik,nkj->ij", y.astype(np.float64), cols.astype(np.float64))
    np.testing.assert_allclose(gw, expected, rtol=0, atol=5 * _tolerance(y, cols))


def test_out_may_be_a_strided_window_of_a_wider_buffer(backend):
    # the shifted input gradient: products added into columns off..off+span of each sample's grid
    rng = np.random.default_rng(2)
    wk = rng.standard_normal((4, 6)).astype(np.float32)
    ys = rng.standard_normal((3, 6, 20)).astype(np.float32)
    grid = np.zeros((3, 4, 25), np.float32)
    _gemm.Product(wk, ys, grid[:, :, 3:23], accumulate=True)(3)
    _gemm.Product(wk, ys, grid[:, :, 5:25], accumulate=True)(2)
    expected = np.zeros((3, 4, 25))
    full = np.matmul(wk.astype(np.float64), ys.astype(np.float64))
    expected[:, :, 3:23] += full
    expected[:2, :, 5:25] += full[:2]
    np.testing.assert_allclose(grid, expected, rtol=0, atol=5 * _tolerance(wk, ys))


@pytest.mark.parametrize("run", [dict(count=3, b_at=1), dict(count=1, a_at=1), dict(count=2, out_at=-1),
                                 dict(count=4), dict(count=1, out_at=6)])
def test_a_run_outside_the_planned_arrays_is_an_index_error(run):
    w = np.ones((4, 5), np.float32)
    stack = np.ones((3, 5, 6), np.float32)
    out = np.zeros((6, 4, 6), np.float32)
    product = _gemm.Product(w, stack, out)
    with pytest.raises(IndexError, match="outside the planned stacks of \\(None, 3, 6\\)"):
        product(**run)
    assert not out.any()


def test_a_single_matrix_out_takes_runs_of_one():
    product = _gemm.Product(np.ones((2, 3, 4), np.float32), np.ones((4, 5), np.float32), np.zeros((3, 5), np.float32))
    with pytest.raises(IndexError):
        product(2)
    product(1, a_at=1)
    np.testing.assert_array_equal(product.out, np.full((3, 5), 4.0))


def test_operands_that_do_not_fit_are_refused_when_planned():
    with pytest.raises(ValueError, match=r"Product of shapes \(4, 5\) and \(6, 2\) does not fit out \(4, 2\)"):
        _gemm.Product(np.ones((4, 5)), np.ones((6, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2-D or 3-D operands"):
        _gemm.Product(np.ones((2, 2, 4, 5)), np.ones((5, 2)), np.zeros((2, 2, 4, 2)))


def test_an_out_overlapping_an_operand_is_left_to_numpy():
    # GEMM would read rows it had already written; NumPy buffers the product
    base = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6) / 50
    a, out = base[:, :, :], base[:, :, :]
    w = np.eye(6, dtype=np.float32)[::-1].copy()
    expected = np.matmul(a.copy(), w)
    product = _gemm.Product(a, w, out)
    assert product._call is None
    product()
    np.testing.assert_allclose(base, expected, rtol=1e-6)
