"""The intra-op thread pool (disttorch/_intra_op.py): split ops and optimizer updates are bit-identical
to one thread, the pool starts only when a split needs it, never at import, and forgets its
threads in a forked child; with one thread nothing is split."""
import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

import disttorch
from disttorch import _intra_op

ROWS, COLS = 1280, 512  # 655,360 elements: above _intra_op.MIN_ELEMENTS, so two threads split it
assert ROWS * COLS >= _intra_op.MIN_ELEMENTS


@contextlib.contextmanager
def intra_op_threads(n):
    """``disttorch.set_num_threads(n)`` inside the block, the previous count restored after it."""
    old = disttorch.get_num_threads()
    disttorch.set_num_threads(n)
    try:
        yield
    finally:
        disttorch.set_num_threads(old)


@pytest.fixture
def two_threads():
    with intra_op_threads(2):
        yield


@pytest.fixture
def one_thread():
    with intra_op_threads(1):
        yield


class _Counting:
    """Counts the splits ``_intra_op.run`` performs (more than one part) while installed."""

    def __init__(self, monkeypatch):
        self.splits = 0
        real = _intra_op.run

        def counted(fn, parts):
            if parts > 1:
                self.splits += 1
            return real(fn, parts)

        monkeypatch.setattr(_intra_op, "run", counted)


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint8)


def _data(seed=0, shape=(ROWS, COLS)):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32)


# ---- elementwise ops ------------------------------------------------------------------------------
OPS = {
    "add": (lambda a, b, bias: a + b, lambda a, b, bias: np.add(a, b)),
    "add scalar": (lambda a, b, bias: a + 0.1, lambda a, b, bias: a + np.float32(0.1)),
    "mul": (lambda a, b, bias: a * b, lambda a, b, bias: np.multiply(a, b)),
    "mul bias row": (lambda a, b, bias: a * bias, lambda a, b, bias: a * bias),
    "relu": (lambda a, b, bias: disttorch.relu(a), lambda a, b, bias: np.maximum(a, 0)),
    "linear bias": (lambda a, b, bias: disttorch.nn.functional.linear(a, b[:COLS], bias),
                    lambda a, b, bias: a @ b[:COLS].T + bias),
}


@pytest.mark.parametrize("name", list(OPS))
def test_split_elementwise_ops_are_bit_identical_to_numpy_on_one_thread(name, two_threads, monkeypatch):
    ours, reference = OPS[name]
    a, b, bias = _data(0), _data(1), _data(2, (COLS,))
    counting = _Counting(monkeypatch)
    got = ours(disttorch.from_numpy(a), disttorch.from_numpy(b), disttorch.from_numpy(bias)).numpy()
    want = reference(a, b, bias)
    assert counting.splits >= 1, "the op was not split over the pool"
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(_bits(got), _bits(want))


def test_relu_backward_split_is_bit_identical(two_threads, monkeypatch):
    a, g = _data(3), _data(4)
    x = disttorch.from_numpy(a.copy()).requires_grad_()
    y = disttorch.relu(x)
    counting = _Counting(monkeypatch)
    y.backward(disttorch.from_numpy(g))
    assert counting.splits >= 1
    want = g * (np.maximum(a, 0) > 0)
    assert np.array_equal(_bits(x.grad.numpy()), _bits(want))


def test_ufunc_keeps_numpy_semantics_where_it_cannot_split(two_threads):
    a = _data(5)
    # overlapping in-place operands: NumPy buffers the whole op, so the split must not run
    x = a.copy()
    want = a.copy()
    np.add(want[1:], want[:-1], out=want[1:])
    _intra_op.ufunc(np.add, x[1:], x[:-1], out=x[1:])
    assert np.array_equal(x, want)
    # a transposed (non-contiguous) operand, integers, and the result larger than the first operand
    assert np.array_equal(_intra_op.add(a.T, a.T), a.T + a.T)
    ints = np.arange(ROWS * COLS, dtype=np.int64).reshape(ROWS, COLS)
    assert np.array_equal(_intra_op.mul(ints, ints), ints * ints)
    row = a[:1]
    assert np.array_equal(_intra_op.add(row, a), row + a)


def test_chunk_bounds_cover_the_range_on_aligned_boundaries():
    bounds = _intra_op.chunk_bounds(1000, 3)
    assert bounds[0][0] == 0 and bounds[-1][1] == 1000
    assert all(hi == lo2 for (_, hi), (lo2, _) in zip(bounds, bounds[1:]))
    assert all(lo % _intra_op.ALIGN == 0 for lo, _ in bounds)


@pytest.mark.parametrize("numel,parts,align", [(256, 2, 16), (1000, 3, 64), (2_359_296, 2, 64), (64, 2, 64)])
def test_a_lead_gives_the_first_range_that_share_more_on_aligned_boundaries(numel, parts, align):
    lead = 0.03
    bounds = _intra_op.chunk_bounds(numel, parts, align, lead)
    assert len(bounds) == parts and bounds[0][0] == 0 and bounds[-1][1] == numel
    assert all(hi == lo2 for (_, hi), (lo2, _) in zip(bounds, bounds[1:]))
    assert all(lo % align == 0 for lo, _ in bounds)
    first = bounds[0][1]
    assert abs(first - numel * (1 / parts + lead)) <= align / 2 or first == numel
    rest = [hi - lo for lo, hi in bounds[1:]]
    assert max(rest) - min(rest) <= align  # the others share what is left evenly
    assert _intra_op.chunk_bounds(numel, parts, align, 0.0) == _intra_op.chunk_bounds(numel, parts, align)


def test_a_split_product_with_the_callers_lead_equals_the_whole_product(request):
    from disttorch import _gemm
    if not _gemm.mkl_available():
        pytest.skip("MKL is not installed: products go to NumPy, unsplit")
    rng = np.random.default_rng(3)
    a = rng.standard_normal((256, 784)).astype(np.float32)
    b = rng.standard_normal((784, 512)).astype(np.float32)
    with intra_op_threads(1):
        whole = _gemm.matmul(a, b)
    calls = request.getfixturevalue("split_parts")  # recorded from here on
    with intra_op_threads(2):
        split = _gemm.matmul(a, b)
        tall = _gemm.matmul(b.T.copy(), a.T.copy())  # 512 x 256: split by rows
    assert calls == [2, 2]
    # a wide result is cut by columns: 272 of 512 to the caller (53%), block edges on multiples
    # of 16, so MKL runs the same kernels on each block as on the whole
    assert _intra_op.chunk_bounds(512, 2, 16, _intra_op.CALLER_LEAD) == [(0, 272), (272, 512)]
    np.testing.assert_array_equal(split, whole)
    with intra_op_threads(1):
        np.testing.assert_array_equal(tall, _gemm.matmul(b.T.copy(), a.T.copy()))


def test_an_error_in_a_pool_thread_reaches_the_caller(two_threads):
    def fn(k):
        if k == 1:
            raise ValueError("chunk 1 failed")

    with pytest.raises(ValueError, match="chunk 1 failed"):
        _intra_op.run(fn, 2)
    done = []
    _intra_op.run(done.append, 2)  # the pool still works after the failure
    assert sorted(done) == [0, 1]


# ---- optimizers -----------------------------------------------------------------------------------
OPTIMIZERS = {
    "SGD momentum": lambda p: disttorch.optim.SGD(p, lr=0.05, momentum=0.9),
    "SGD nesterov wd": lambda p: disttorch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "SGD dampening maximize": lambda p: disttorch.optim.SGD(p, lr=0.05, momentum=0.5, dampening=0.3,
                                                            maximize=True),
    "SGD plain": lambda p: disttorch.optim.SGD(p, lr=0.05),
    "Adam": lambda p: disttorch.optim.Adam(p, lr=1e-2),
    "Adam wd amsgrad": lambda p: disttorch.optim.Adam(p, lr=1e-2, weight_decay=1e-2, amsgrad=True),
    "AdamW": lambda p: disttorch.optim.AdamW(p, lr=1e-2),
    "AdamW maximize": lambda p: disttorch.optim.AdamW(p, lr=1e-2, maximize=True, amsgrad=True),
}


def _optimize(make, threads, steps=3):
    """Final parameters and optimizer state after ``steps`` updates with ``threads`` intra-op threads."""
    with intra_op_threads(threads):
        big = disttorch.from_numpy(_data(6)).requires_grad_()
        small = disttorch.from_numpy(_data(7, (COLS,))).requires_grad_()
        opt = make([big, small])
        for s in range(steps):
            big.grad = disttorch.from_numpy(_data(10 + s))
            small.grad = disttorch.from_numpy(_data(20 + s, (COLS,)))
            opt.step()
        state = [v.numpy().copy() for p in (big, small) for v in opt.state[p].values()
                 if isinstance(v, disttorch.Tensor) and v.ndim > 0]
        return [big.detach().numpy().copy(), small.detach().numpy().copy()] + state


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_split_optimizer_updates_are_bit_identical_to_one_thread(name, monkeypatch):
    one = _optimize(OPTIMIZERS[name], 1)
    counting = _Counting(monkeypatch)
    two = _optimize(OPTIMIZERS[name], 2)
    assert counting.splits == 3, "each step should split the large parameter's update once"
    assert len(one) == len(two) >= 2
    for a, b in zip(one, two):
        assert np.array_equal(_bits(a), _bits(b))
    assert not np.array_equal(one[0], _data(6))  # the updates did change the parameter


# ---- when the pool runs --------------------------------------------------------------------------
def test_one_thread_splits_nothing(one_thread, monkeypatch):
    def refuse(fn, parts):
        raise AssertionError("the pool was used with set_num_threads(1)")

    monkeypatch.setattr(_intra_op, "run", refuse)
    a = _data(8)
    x = disttorch.from_numpy(a.copy()).requires_grad_()
    y = disttorch.relu(x * 2.0 + 1.0)
    y.sum().backward()
    disttorch.optim.SGD([x], lr=0.1, momentum=0.9).step()
    assert _intra_op.parts_for(ROWS * COLS) == 1


def _python(code, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_no_pool_thread_at_import_and_a_forked_child_starts_its_own():
    code = f"""
import os, threading
import numpy as np
import disttorch
from disttorch import _intra_op
at_import = threading.active_count(), _intra_op.started_threads()
a = np.random.default_rng(0).standard_normal(({ROWS}, {COLS})).astype(np.float32)
want = np.maximum(a, 0)
got = disttorch.relu(disttorch.from_numpy(a)).numpy()  # two intra-op threads: the pool starts here
after_op = threading.active_count(), _intra_op.started_threads()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    forked = threading.active_count(), _intra_op.started_threads()
    again = disttorch.relu(disttorch.from_numpy(a)).numpy()
    child = forked + (_intra_op.started_threads(), int(np.array_equal(again, want)))
    os.write(w, " ".join(map(str, child)).encode())
    os._exit(0)
os.waitpid(pid, 0)
child = os.read(r, 100).decode()
print(*at_import, *after_op, int(np.array_equal(got, want)), child)
"""
    out = [int(v) for v in _python(code, 2)]
    at_import, after_op, equal, child_forked, child_later = out[0:2], out[2:4], out[4], out[5:7], out[7:]
    assert at_import == [1, 0]           # importing starts no thread
    assert after_op == [2, 1] and equal  # the first large op started one pool thread
    assert child_forked == [1, 0]        # the forked child has only its main thread, and knows it
    assert child_later == [1, 1]         # ... and starts its own pool when it needs it, same results


def test_one_thread_process_never_starts_a_thread():
    code = f"""
import threading
import numpy as np
import disttorch
from disttorch import _intra_op
x = disttorch.from_numpy(np.ones(({ROWS}, {COLS}), np.float32)).requires_grad_()
(disttorch.relu(x * 2.0) + x).sum().backward()
disttorch.optim.Adam([x]).step()
print(threading.active_count(), _intra_op.started_threads())
"""
    assert _python(code, 1) == ["1", "0"]
