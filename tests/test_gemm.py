"""disttorch/_gemm.py: float products through MKL's GEMM (when the mkl wheel is installed) give
NumPy's results for every layout they accept, split over threads or not, and fall back to NumPy
for everything else."""
import os
import subprocess
import sys

import numpy as np
import pytest

from disttorch import _gemm, _threads

needs_mkl = pytest.mark.skipif(not _gemm.mkl_available(),
                               reason="the mkl wheel is not installed (pip install disttorch[mkl])")


def _reference(a, b):
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


def _close(got, a, b):
    ref = _reference(a, b)
    k = a.shape[-1]
    # float32 sums of k products: error grows like sqrt(k) * eps * |a||b|
    eps = 1e-15 if a.dtype == np.float64 else 4e-7
    tol = 10 * eps * np.sqrt(k) * np.abs(a).max() * np.abs(b).max()
    assert got.shape == ref.shape and got.dtype == a.dtype
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol)


def _layout(rng, rows, cols, dtype, transposed, padded):
    """A rows x cols matrix stored row-major, transposed (a .T view) and/or inside a wider buffer."""
    if transposed:
        store = rng.standard_normal((cols, rows + 3 if padded else rows)).astype(dtype)
        return store[:, :rows].T
    store = rng.standard_normal((rows, cols + 5 if padded else cols)).astype(dtype)
    return store[:, :cols]


@needs_mkl
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_2d_layouts_match_numpy(dtype, ta, tb, padded):
    rng = np.random.default_rng(0)
    a = _layout(rng, 67, 129, dtype, ta, padded)
    b = _layout(rng, 129, 45, dtype, tb, padded)
    _close(_gemm.matmul(a, b), a, b)


@needs_mkl
@pytest.mark.parametrize("shapes", [((6, 40, 50), (6, 50, 30)),        # bmm
                                    ((2, 3, 40, 50), (2, 3, 50, 30)),  # 4-D stacks (attention)
                                    ((5, 40, 50), (50, 30)),           # a stack times one matrix
                                    ((40, 50), (5, 50, 30)),           # one matrix times a stack
                                    ((1, 4, 40, 50), (1, 4, 50, 30))])
def test_stacks_match_numpy(shapes):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shapes[0]).astype(np.float32)
    b = rng.standard_normal(shapes[1]).astype(np.float32)
    _close(_gemm.matmul(a, b), a, b)
    # transposed views of the stacks (q @ k^T in attention)
    bt = np.ascontiguousarray(np.swapaxes(b, -1, -2))
    _close(_gemm.matmul(a, np.swapaxes(bt, -1, -2)), a, b)


@needs_mkl
def test_out_is_written_and_returned():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((64, 96)).astype(np.float32)
    b = rng.standard_normal((96, 80)).astype(np.float32)
    out = np.full((64, 80), np.nan, np.float32)
    assert _gemm.matmul(a, b, out=out) is out
    _close(out, a, b)
    # a row block of a bigger C-contiguous buffer (DDP writes a gradient into its bucket this way)
    big = np.zeros((3, 64, 80), np.float32)
    assert _gemm.matmul(a, b, out=big[1]) is not None
    _close(big[1], a, b)
    assert not big[0].any() and not big[2].any()


@pytest.mark.parametrize("case", ["2d", "split", "stack", "fallback"])
def test_accumulate_adds_the_product_into_out(case):
    # GEMM's beta = 1 (conv_shifted adds kh*kw products into one grid); without MKL's path
    # (a strided out here) the same sum through NumPy
    rng = np.random.default_rng(6)
    shape_a, shape_b = {"2d": ((64, 96), (96, 80)), "split": ((512, 784), (784, 512)),
                        "stack": ((4, 64, 96), (4, 96, 80)), "fallback": ((64, 96), (96, 80))}[case]
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    start = rng.standard_normal(shape_a[:-1] + shape_b[-1:]).astype(np.float32)
    if case == "fallback":
        store = np.zeros(start.shape[:-1] + (2 * start.shape[-1],), np.float32)
        out = store[..., ::2]
        out[...] = start
    else:
        out = start.copy()
    previous = _threads.get_num_threads()
    try:
        _threads.set_num_threads(2 if case == "split" else 1)
        assert _gemm.matmul(a, b, out=out, accumulate=True) is out
    finally:
        _threads.set_num_threads(previous)
    k = a.shape[-1]
    tol = 10 * 4e-7 * np.sqrt(k) * np.abs(a).max() * np.abs(b).max()
    np.testing.assert_allclose(out, start + _reference(a, b), rtol=0, atol=tol)
    with pytest.raises(ValueError, match="needs out"):
        _gemm.matmul(a, b, accumulate=True)


def test_out_overlapping_an_operand_gives_numpys_answer():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 64)).astype(np.float32)
    b = rng.standard_normal((64, 64)).astype(np.float32)
    expected = a @ b
    _gemm.matmul(a, b, out=a)  # NumPy buffers the aliased product; so must we
    np.testing.assert_array_equal(a, expected)


@pytest.mark.parametrize("make", [
    lambda r: (r.integers(0, 9, (64, 64)), r.integers(0, 9, (64, 64))),                 # integers
    lambda r: (r.standard_normal((64, 64)) + 1j, r.standard_normal((64, 64)) + 0j),     # complex
    lambda r: (r.standard_normal((64, 128))[:, ::2].astype(np.float32),                 # strided columns
               r.standard_normal((64, 64)).astype(np.float32)),
    lambda r: (r.standard_normal((64, 64)).astype(np.float32), r.standard_normal(64).astype(np.float32)),  # mv
    lambda r: (r.standard_normal((4, 4)).astype(np.float32), r.standard_normal((4, 4)).astype(np.float32)),  # tiny
    lambda r: (r.standard_normal((2, 1, 40, 50)).astype(np.float32),                    # broadcast stacks
               r.standard_normal((1, 3, 50, 30)).astype(np.float32)),
    lambda r: (r.standard_normal((64, 64)).astype(np.float32), r.standard_normal((64, 64))),  # mixed dtypes
])
def test_everything_else_is_numpys_matmul(make):
    a, b = make(np.random.default_rng(4))
    np.testing.assert_array_equal(_gemm.matmul(a, b), np.matmul(a, b))


@needs_mkl
def test_split_over_two_threads_matches_one():
    rng = np.random.default_rng(5)
    cases = [(rng.standard_normal((256, 784)).astype(np.float32), rng.standard_normal((784, 512)).astype(np.float32)),
             (rng.standard_normal((784, 256)).astype(np.float32).T, rng.standard_normal((784, 512)).astype(np.float32)),
             (rng.standard_normal((8, 300)).astype(np.float32), rng.standard_normal((300, 4000)).astype(np.float32)),
             (rng.standard_normal((16, 64, 256)).astype(np.float32), rng.standard_normal((16, 256, 64)).astype(np.float32))]
    previous = _threads.get_num_threads()
    try:
        _threads.set_num_threads(1)
        single = [_gemm.matmul(a, b) for a, b in cases]
        _threads.set_num_threads(2)
        double = [_gemm.matmul(a, b) for a, b in cases]
    finally:
        _threads.set_num_threads(previous)
    for (a, b), one, two in zip(cases, single, double):
        _close(two, a, b)
        np.testing.assert_allclose(two, one, rtol=1e-6, atol=1e-5)


@needs_mkl
def test_mkl_starts_no_threads():
    """The sequential layer: an MKL product leaves the process's thread count as it was (no
    OpenMP pool spinning on the cores other ranks use)."""
    code = ("import numpy as np, psutil, disttorch._gemm as g\n"
            "p = psutil.Process(); before = p.num_threads()\n"
            "a = np.ones((512, 512), np.float32); g.matmul(a, a)\n"
            "assert g.mkl_available(); print(before, p.num_threads())\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    assert after == before


@needs_mkl
def test_mkl_is_mapped_only_on_the_first_large_product():
    code = ("import numpy as np, disttorch\n"
            "maps = lambda: 'libmkl' in open('/proc/self/maps').read()\n"
            "a = disttorch.ones(8, 8); (a @ a).sum()\n"
            "small = maps()\n"
            "b = disttorch.ones(256, 256); (b @ b).sum()\n"
            "print(small, maps())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_blas_numpy_turns_mkl_off(monkeypatch):
    from disttorch.backends import mkl

    monkeypatch.setenv("DISTTORCH_BLAS", "numpy")
    _gemm._reset_for_tests()
    try:
        assert _gemm.backend() == "numpy" and not mkl.is_available()
        a = np.ones((128, 128), np.float32)
        np.testing.assert_array_equal(_gemm.matmul(a, a), a @ a)
    finally:
        monkeypatch.undo()
        _gemm._reset_for_tests()


def test_blas_mkl_without_mkl_is_an_error(monkeypatch):
    monkeypatch.setenv("DISTTORCH_BLAS", "mkl")
    monkeypatch.setattr(_gemm, "_library_paths", lambda: ["/nonexistent/libmkl_rt.so.3"])
    _gemm._reset_for_tests()
    try:
        a = np.ones((128, 128), np.float32)
        with pytest.raises(RuntimeError, match=r"DISTTORCH_BLAS=mkl but Intel MKL could not be loaded.*"
                                               r"/nonexistent/libmkl_rt\.so\.3"):
            _gemm.matmul(a, a)
    finally:
        monkeypatch.undo()
        _gemm._reset_for_tests()


def test_bad_blas_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("DISTTORCH_BLAS", "openblas")
    _gemm._reset_for_tests()
    try:
        with pytest.raises(ValueError, match="DISTTORCH_BLAS.*openblas"):
            _gemm.backend()
    finally:
        monkeypatch.undo()
        _gemm._reset_for_tests()


@needs_mkl
def test_linear_step_matches_torch_through_mkl():
    torch = pytest.importorskip("torch")
    import disttorch

    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 300)).astype(np.float32)
    w = rng.standard_normal((200, 300)).astype(np.float32) * 0.05
    outs = []
    for lib in (disttorch, torch):
        wt = lib.tensor(w, requires_grad=True)
        y = lib.nn.functional.linear(lib.tensor(x), wt).relu().sum()
        y.backward()
        outs.append((y.item(), wt.grad.numpy()))
    assert outs[0][0] == pytest.approx(outs[1][0], rel=1e-5)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-5)


@needs_mkl
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores for a 2-thread default")
@pytest.mark.parametrize("blas,openblas_threads", [("auto", 1), ("numpy", 2)])
@pytest.mark.parametrize("asked", [True, False], ids=["set_num_threads", "default"])
def test_numpys_blas_keeps_one_thread_once_mkl_takes_the_products(blas, openblas_threads, asked):
    """With MKL computing the products, OpenBLAS (NumPy's BLAS) keeps one thread: its idle
    threads would spin on the core the intra-op split needs. The thread count disttorch reports
    and splits by stays what was asked for, also in a forked child."""
    code = ("import os, numpy as np, threadpoolctl, disttorch, disttorch._gemm as g\n"
            + ("disttorch.set_num_threads(2)\n" if asked else "") +
            "a = np.ones((256, 256), np.float32); g.matmul(a, a)\n"
            "pools = [p['num_threads'] for p in threadpoolctl.threadpool_info() if p['internal_api'] == 'openblas']\n"
            "r, w = os.pipe()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.write(w, str(disttorch.get_num_threads()).encode()); os._exit(0)\n"
            "os.waitpid(pid, 0); child = os.read(r, 16).decode()\n"
            "print(min(pools), disttorch.get_num_threads(), child)\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env.update(DISTTORCH_BLAS=blas, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(openblas_threads), "2", "2"]
