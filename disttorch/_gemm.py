"""Matrix products of NumPy arrays through Intel oneMKL's GEMM when it is installed.

NumPy's wheels link OpenBLAS; PyTorch's CPU wheels link oneMKL. On this project's Intel machine
MKL's sgemm is 10-35% faster than OpenBLAS's at the shapes training steps use (a 256x784 @ 784x512
product: 1.15 ms against 1.30 ms, one core; ``benchmarks/gemm.py``), and those products are most of
an MLP's, a CNN's and a transformer's step. So when the ``mkl`` wheel is present
(``pip install disttorch[mkl]``), ``matmul`` sends float32 / float64 products of NumPy arrays to
``cblas_sgemm`` / ``cblas_dgemm`` (stacks of matrices to ``cblas_?gemm_batch_strided``) through
ctypes, and everything else (CuPy arrays, integers, complex, vectors, tiny or oddly strided
operands) to ``np.matmul``. ``DISTTORCH_BLAS=numpy`` turns it off; ``mkl`` makes a missing MKL an
error instead of a silent fallback.

How it stays invisible:

- Nothing loads at import. MKL (a few hundred MB of libraries, mapped lazily) is opened on the first
  product large enough to use it, so a tiny job, and the fork server's template, never map it.
- MKL runs in its sequential layer: no OpenMP runtime joins the process, so nothing spins on the
  cores other ranks use. Products are split over disttorch's own intra-op threads
  (``_intra_op.run``, sized by ``set_num_threads``) by rows or columns of the result; ctypes releases
  the GIL during the call, so the pieces run in parallel. The reduction dimension is never split.
- Transposed views (``w.T``, ``swapaxes``) go in as BLAS transpose flags with their leading
  dimension, as NumPy would pass them, so no operand is copied.
"""
from __future__ import annotations

import ctypes
import glob
import os
from importlib import metadata
import re
import sys
import threading

import numpy as np

from disttorch_launcher import settings

from . import _intra_op, _threads

__all__ = ["matmul", "Product", "backend", "mkl_available"]

#: products below this many multiply-adds go to NumPy: a ctypes call and the layout checks cost
#: about 3 us, which a 32x32x32 product (about 4 us in either library) does not repay
MIN_MACS = 1 << 15
#: products of at least this many multiply-adds are split over the intra-op threads (about 0.1 ms
#: of work on one core, several times the 15-30 us a hand-off to a pool thread costs)
SPLIT_MACS = 1 << 21
#: row (or column) chunks are multiples of this many, so every chunk starts on the same alignment
#: as the whole product's rows do and MKL picks the same kernels for each
_SPLIT_ALIGN = 16

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_INT_MAX = 2**31 - 1
_MKL_THREADING_SEQUENTIAL = 1

_lock = threading.Lock()
_state = {"lib": None, "decided": False}
_KINDS = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}


def _library_paths():
    """Where the ``mkl`` wheel may have put ``libmkl_rt``: the environment's ``lib`` folder (the
    wheel installs its libraries there, beside the interpreter's prefix), then the loader's path."""
    seen = []
    for prefix in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(sys.executable))):
        for path in sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*"))):
            if path not in seen:
                seen.append(path)
    try:
        for f in metadata.files("mkl") or ():
            if f.name.startswith("libmkl_rt.so"):
                path = os.path.normpath(str(f.locate()))
                if path not in seen:
                    seen.append(path)
    except metadata.PackageNotFoundError:  # no mkl distribution: the paths above are all there is
        pass
    seen.append("libmkl_rt.so.2")  # a system-wide MKL on the loader's path
    return seen


class _MKL:
    """The few entry points of ``libmkl_rt`` this module calls, with their C signatures."""

    def __init__(self, lib, path):
        self.path = path
        self.lib = lib  # _vector.py binds its BLAS-1 and VML routines on this same handle
        # Must come before any other MKL call: the sequential layer never starts OpenMP threads.
        lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
        lib.MKL_Set_Threading_Layer(_MKL_THREADING_SEQUENTIAL)
        i, p = ctypes.c_int, ctypes.c_void_p
        version = ctypes.create_string_buffer(256)
        lib.mkl_get_version_string.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.mkl_get_version_string(version, 256)
        text = version.value.decode(errors="replace")
        found = re.search(r"Version ([0-9][0-9.]*[0-9])", text)
        self.version = found.group(1) if found else text.strip()
        self.gemm, self.gemm_batch = {}, {}
        for kind, scalar in (("s", ctypes.c_float), ("d", ctypes.c_double)):
            gemm = getattr(lib, f"cblas_{kind}gemm")
            gemm.restype = None
            gemm.argtypes = [i, i, i, i, i, i, scalar, p, i, p, i, scalar, p, i]
            self.gemm[kind] = gemm
            batch = getattr(lib, f"cblas_{kind}gemm_batch_strided")
            batch.restype = None
            batch.argtypes = [i, i, i, i, i, i, scalar, p, i, i, p, i, i, scalar, p, i, i, i]
            self.gemm_batch[kind] = batch


def _open_mkl(required: bool):
    errors = []
    for path in _library_paths():
        try:
            lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
            return _MKL(lib, path)
        except (OSError, AttributeError) as exc:
            errors.append(f"{path}: {exc}")
    if required:
        raise RuntimeError("DISTTORCH_BLAS=mkl but Intel MKL could not be loaded (pip install disttorch[mkl]); "
                           "tried: " + "; ".join(errors))
    return None


def _mkl():
    """The loaded MKL, or None (not installed, or ``DISTTORCH_BLAS=numpy``). Decided once."""
    if _state["decided"]:
        return _state["lib"]
    with _lock:
        if not _state["decided"]:
            choice = settings.get("DISTTORCH_BLAS")
            _state["lib"] = None if choice == "numpy" else _open_mkl(required=choice == "mkl")
            _state["decided"] = True
            narrow_other_blas()
    return _state["lib"]


def narrow_other_blas() -> None:
    """Once MKL computes the products, NumPy's own BLAS (OpenBLAS) only gets the small leftovers
    (matrix-vector products, tiny or oddly strided operands): it keeps one thread. Its idle
    threads otherwise spin for up to ~0.1 s after every threaded call, on the very core the
    intra-op pool's split of the next product needs (2 threads, quiet machine: a 256x784 @ 784x512
    product took 1.24 ms split against 1.13 ms on one thread)."""
    if _state["lib"] is None:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _threads.intra_op_threads()  # the count is read from the pools before they are narrowed
    _state["limiter"] = threadpool_limits(limits=1, user_api="blas")
    _threads.pools_narrowed()


def backend() -> str:
    """``"mkl 2026.2"`` (the version) when products go to MKL, else ``"numpy"`` (NumPy's own BLAS)."""
    lib = _mkl()
    return f"mkl {lib.version}" if lib is not None else "numpy"


def mkl_available() -> bool:
    """Whether float products of NumPy arrays go to MKL (``torch.backends.mkl.is_available``)."""
    return _mkl() is not None


def _reset_for_tests():
    """Forgets the decision so a test can change ``DISTTORCH_BLAS`` (the library stays mapped)."""
    with _lock:
        _state["decided"], _state["lib"] = False, None


def _matrix_layout(strides, rows, cols, itemsize):
    """(transpose flag, leading dimension) that make BLAS read a ``rows x cols`` matrix with these
    byte strides in row-major order, or None when no flag can (a copy would be needed)."""
    s0, s1 = strides
    if (s1 == itemsize or cols == 1) and s0 > 0 and s0 % itemsize == 0 and s0 // itemsize >= cols:
        return _NO_TRANS, s0 // itemsize
    if rows == 1 and (s1 == itemsize or cols == 1):
        return _NO_TRANS, cols
    if (s0 == itemsize or rows == 1) and s1 > 0 and s1 % itemsize == 0 and s1 // itemsize >= rows:
        return _TRANS, s1 // itemsize
    return None


def _batch_stride(x):
    """The one element stride between consecutive matrices of ``x``'s leading dims, or None when
    they do not collapse into one evenly strided run (a broadcast 2-D operand has stride 0)."""
    if x.ndim == 2:
        return 0
    stride = None
    expected = None
    for size, step in zip(reversed(x.shape[:-2]), reversed(x.strides[:-2])):
        if size == 1:
            continue
        if stride is None:
            stride = step
        elif step != expected:
            return None
        expected = step * size
    stride = 0 if stride is None else stride
    if stride < 0 or stride % x.itemsize:
        return None
    return stride // x.itemsize


def _out_layout(out, m, n, count, itemsize):
    """(ldc, matrix stride) in elements for a result ``out`` of ``count`` m x n matrices, or None
    where GEMM cannot write it: rows of a wider buffer are fine (conv_shifted writes into a padded
    grid), columns that are not unit-stride, sizes past LP64 or overlapping matrices are not."""
    if out.flags.c_contiguous:
        return n, m * n
    lc = _matrix_layout(out.strides[-2:], m, n, itemsize)
    stride_c = _batch_stride(out) if count > 1 else 0
    if lc is None or lc[0] != _NO_TRANS or stride_c is None or max(lc[1], stride_c) > _INT_MAX:
        return None
    if count > 1 and stride_c < m * lc[1]:
        return None  # the matrices of out overlap
    return lc[1], stride_c


def matmul(a, b, out=None, accumulate=False):
    """``np.matmul(a, b, out=out)``; float32 / float64 NumPy products of at least ``MIN_MACS``
    multiply-adds through MKL when it is installed (see the module docstring).

    ``accumulate=True`` adds the product into ``out`` (GEMM's beta = 1) instead of overwriting it."""
    if (type(a) is np.ndarray and type(b) is np.ndarray and a.ndim >= 2 and b.ndim >= 2
            and a.dtype in _KINDS and b.dtype == a.dtype):
        m, k = a.shape[-2:]
        n = b.shape[-1]
        if b.shape[-2] == k and m * n * k >= MIN_MACS:
            lib = _mkl()
            if lib is not None:
                result = _mkl_matmul(lib, a, b, m, k, n, out, 1.0 if accumulate else 0.0)
                if result is not None:
                    return result
    if accumulate:
        if out is None:
            raise ValueError("matmul(accumulate=True) needs out")
        out += matmul(a, b)
        return out
    if out is None:
        return a @ b
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return np.matmul(a, b, out=out)
    from ._backend import array_module

    return array_module(a).matmul(a, b, out=out)


def _mkl_matmul(lib, a, b, m, k, n, out, beta):
    """The product (plus ``beta`` times ``out``) through MKL, or None when its operands need
    something GEMM cannot express (then the caller uses NumPy)."""
    if a.ndim == 2 and b.ndim == 2:
        batch_shape, count = (), 1
    else:
        batch_shape = a.shape[:-2] if b.ndim == 2 else b.shape[:-2] if a.ndim == 2 else None
        if batch_shape is None:
            if a.shape[:-2] != b.shape[:-2]:
                return None  # broadcasting between two stacks: NumPy's business
            batch_shape = a.shape[:-2]
        count = 1
        for s in batch_shape:
            count *= s
        if count == 0:
            return None
    itemsize = a.itemsize
    la = _matrix_layout(a.strides[-2:], m, k, itemsize)
    lb = _matrix_layout(b.strides[-2:], k, n, itemsize)
    if la is None or lb is None:
        return None
    stride_a, stride_b = _batch_stride(a), _batch_stride(b)
    if stride_a is None or stride_b is None:
        return None
    if max(m, n, k, la[1], lb[1], stride_a, stride_b, m * n, count) > _INT_MAX:
        return None  # MKL's LP64 interface takes 32-bit sizes
    shape = batch_shape + (m, n)
    if out is None:
        if beta:
            return None
        result = np.empty(shape, dtype=a.dtype)
        ldc, stride_c = n, m * n
    elif (type(out) is np.ndarray and out.shape == shape and out.dtype == a.dtype
          and not np.may_share_memory(out, a) and not np.may_share_memory(out, b)):
        result = out
        layout = _out_layout(out, m, n, count, itemsize)
        if layout is None:
            return None
        ldc, stride_c = layout
    else:
        return None
    if (count > 1 and stride_b == 0 and la[0] == _NO_TRANS and stride_a == m * la[1] and stride_c == m * ldc
            and m * count <= _INT_MAX):
        # a stack times one matrix, the stack's rows (and the result's) evenly spaced: one tall product
        m, count, stride_a = m * count, 1, 0
    kind = _KINDS[a.dtype]
    pa, pb, pc = a.ctypes.data, b.ctypes.data, result.ctypes.data
    gemm = lib.gemm[kind]
    size = a.itemsize
    if count == 1:
        parts = _intra_op.parts_for(m * n * k, SPLIT_MACS)
        if parts <= 1:
            gemm(_ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, pa, la[1], pb, lb[1], beta, pc, ldc)
            return result
        _split_product(gemm, la, lb, m, n, k, pa, pb, pc, ldc, size, parts, beta)
        return result
    batch = lib.gemm_batch[kind]
    parts = min(_intra_op.parts_for(m * n * k * count, SPLIT_MACS), count)
    if parts <= 1:
        batch(_ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, pa, la[1], stride_a, pb, lb[1], stride_b,
              beta, pc, ldc, stride_c, count)
        return result
    bounds = _intra_op.chunk_bounds(count, parts, 1)

    def piece(i):
        lo, hi = bounds[i]
        if hi > lo:
            batch(_ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, pa + lo * stride_a * size, la[1], stride_a,
                  pb + lo * stride_b * size, lb[1], stride_b, beta, pc + lo * stride_c * size, ldc, stride_c, hi - lo)

    _intra_op.run(piece, len(bounds))
    return result


def _split_product(gemm, la, lb, m, n, k, pa, pb, pc, ldc, size, parts, beta):
    """One 2-D product cut into ``parts`` blocks of result rows (or of columns, for a wide, short
    result), each block one GEMM call on its own thread; the sum over ``k`` is never cut."""
    if m >= n:
        bounds = [(lo, hi) for lo, hi in _intra_op.chunk_bounds(m, parts, _SPLIT_ALIGN, _intra_op.CALLER_LEAD) if hi > lo]

        def piece(i):
            lo, hi = bounds[i]
            # row lo of op(A): row lo of A, or column lo of the stored (k x m) matrix
            off_a = lo * la[1] if la[0] == _NO_TRANS else lo
            gemm(_ROW_MAJOR, la[0], lb[0], hi - lo, n, k, 1.0, pa + off_a * size, la[1], pb, lb[1], beta,
                 pc + lo * ldc * size, ldc)
    else:
        bounds = [(lo, hi) for lo, hi in _intra_op.chunk_bounds(n, parts, _SPLIT_ALIGN, _intra_op.CALLER_LEAD) if hi > lo]

        def piece(i):
            lo, hi = bounds[i]
            off_b = lo if lb[0] == _NO_TRANS else lo * lb[1]
            gemm(_ROW_MAJOR, la[0], lb[0], m, hi - lo, k, 1.0, pa, la[1], pb + off_b * size, lb[1], beta,
                 pc + lo * size, ldc)
    if len(bounds) <= 1:
        gemm(_ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, pa, la[1], pb, lb[1], beta, pc, ldc)
        return
    _intra_op.run(piece, len(bounds))


class Product:
    """``out[i] = a[i] @ b[i]`` (``+ out[i]`` with ``accumulate``) for a run of stack indices,
    planned once and then run many times: each run is integer arithmetic and one BLAS call.

    Why: ``matmul`` checks layouts and makes ctypes pointers on every call (8-10 us, GIL held). A
    convolution's chunk loop calls GEMMs hundreds of times per op, from several intra-op threads at
    once, and each of those checks is time one thread holds the GIL while the other may wait for it
    (on a VM a waiting thread sleeps, and takes 60-90 us to wake). Planned, a run costs about 3 us
    besides the GEMM (a 64x64 @ 64x8 run: 4.8 us, against 11.7 us through matmul).

    ``a``, ``b`` and ``out`` are 2-D matrices or 3-D stacks (a 2-D operand is the same matrix for
    every index; a 2-D ``out`` takes runs of one product, which ``accumulate`` makes a sum over
    runs). A run ``product(count, a_at, b_at, out_at)`` multiplies ``count`` matrices from index
    ``a_at`` of ``a`` (and ``b_at``, ``out_at``); a run outside the planned arrays is an IndexError.
    Where MKL cannot take the product (not installed, CuPy arrays, a layout GEMM cannot express)
    each run is NumPy's ``matmul`` on the same slices.
    """

    __slots__ = ("a", "b", "out", "accumulate", "count", "_lengths", "_call", "_one", "_args", "_strides")

    def __init__(self, a, b, out, accumulate=False):
        if a.ndim not in (2, 3) or b.ndim not in (2, 3) or out.ndim not in (2, 3):
            raise ValueError(f"Product takes 2-D or 3-D operands, got {a.ndim}, {b.ndim} and {out.ndim} dimensions")
        m, k = a.shape[-2:]
        n = b.shape[-1]
        if b.shape[-2] != k or out.shape[-2:] != (m, n):
            raise ValueError(f"Product of shapes {a.shape} and {b.shape} does not fit out {out.shape}")
        self.a, self.b, self.out, self.accumulate = a, b, out, accumulate
        self.count = out.shape[0] if out.ndim == 3 else 1  # a run's default count: all of out
        self._lengths = tuple(x.shape[0] if x.ndim == 3 else None for x in (a, b, out))
        self._call = None
        lib = _mkl() if type(a) is np.ndarray and type(b) is np.ndarray and type(out) is np.ndarray else None
        if lib is None or a.dtype not in _KINDS or b.dtype != a.dtype or out.dtype != a.dtype:
            return
        if np.may_share_memory(out, a) or np.may_share_memory(out, b):
            return  # NumPy buffers an overlapping product; GEMM would read what it wrote
        size = a.itemsize
        la = _matrix_layout(a.strides[-2:], m, k, size)
        lb = _matrix_layout(b.strides[-2:], k, n, size)
        layout = _out_layout(out, m, n, out.shape[0] if out.ndim == 3 else 1, size)
        stride_a, stride_b = _batch_stride(a), _batch_stride(b)
        if la is None or lb is None or layout is None or stride_a is None or stride_b is None:
            return
        ldc, stride_c = layout
        strides = [stride_a, stride_b, stride_c if out.ndim == 3 else 0]
        if max(m, n, k, la[1], lb[1], *strides) > _INT_MAX:
            return
        self._strides = [s * size for s in strides]
        self._call = lib.gemm_batch[_KINDS[a.dtype]]
        self._one = lib.gemm[_KINDS[a.dtype]]  # runs of one product (MKL's batch call refuses a zero stride of C)
        self._args = (la[0], lb[0], m, n, k, la[1], lb[1], ldc, strides,
                      a.ctypes.data, b.ctypes.data, out.ctypes.data, 1.0 if accumulate else 0.0)

    def __call__(self, count=None, a_at=0, b_at=0, out_at=0):
        count = self.count if count is None else count
        lengths = self._lengths
        if (count < 0 or min(a_at, b_at, out_at) < 0 or (lengths[2] is None and (out_at or count > 1))
                or any(length is not None and at + count > length for at, length in zip((a_at, b_at, out_at), lengths))
                or (lengths[0] is None and a_at) or (lengths[1] is None and b_at)):
            raise IndexError(f"Product run of {count} from {(a_at, b_at, out_at)} is outside the planned "
                                 f"stacks of {self._lengths} (None: one matrix)")
        if self._call is None:
            if self.out.ndim == 2:  # one product into one matrix
                a = self.a if self.a.ndim == 2 else self.a[a_at]
                b = self.b if self.b.ndim == 2 else self.b[b_at]
                out = self.out
            else:
                a = self.a if self.a.ndim == 2 else self.a[a_at:a_at + count]
                b = self.b if self.b.ndim == 2 else self.b[b_at:b_at + count]
                out = self.out[out_at:out_at + count]
            if self.accumulate:
                out += matmul(a, b)
            else:
                matmul(a, b, out=out)
            return
        ta, tb, m, n, k, lda, ldb, ldc, (sa, sb, sc), pa, pb, pc, beta = self._args
        da, db, dc = self._strides
        if count == 1:
            self._one(_ROW_MAJOR, ta, tb, m, n, k, 1.0, pa + a_at * da, lda, pb + b_at * db, ldb, beta,
                      pc + out_at * dc, ldc)
            return
        self._call(_ROW_MAJOR, ta, tb, m, n, k, 1.0, pa + a_at * da, lda, sa, pb + b_at * db, ldb, sb,
                   beta, pc + out_at * dc, ldc, sc, count)
