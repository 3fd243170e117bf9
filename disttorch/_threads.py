"""torch.set_num_threads / get_num_threads over the BLAS and OpenMP pools NumPy already loaded.

Setting OMP_NUM_THREADS after NumPy imported changes nothing: OpenBLAS / MKL read it once, when
they load. threadpoolctl changes the running pools through each library's own API, so the limit
holds whenever it is called. The default (no call) is the launcher's OMP_NUM_THREADS, which it
sizes from the cores and the container's CPU quota before the worker starts.
"""
from __future__ import annotations

import builtins
import os

__all__ = ["set_num_threads", "get_num_threads"]

_requested: int | None = None
_default: int | None = None  # get_num_threads() without a set_num_threads call, read once
_limiter = None  # threadpoolctl's limiter; the limit holds while it is referenced


def set_num_threads(n) -> None:
    """Caps the intra-op (BLAS / OpenMP) threads of this process at ``n``, as torch's does."""
    global _requested, _limiter
    if isinstance(n, bool) or not isinstance(n, int):
        raise RuntimeError(f"set_num_threads expects an int, but got {type(n).__name__}")
    if n <= 0:
        raise RuntimeError("set_num_threads expects a positive integer")
    from threadpoolctl import threadpool_limits

    _limiter = threadpool_limits(limits=n)
    _requested = n
    from . import _gemm

    _gemm.narrow_other_blas()  # when MKL computes the products, NumPy's BLAS keeps one thread


def intra_op_threads() -> int:
    """The thread count elementwise splits use (``_intra_op.py``): cheap enough to ask per op.

    What set_num_threads set; without a call, get_num_threads() read once (asking the BLAS
    pools each time costs milliseconds)."""
    global _default
    if _requested is not None:
        return _requested
    if _default is None:
        _default = _pool_threads()
    return _default


_narrowed = False  # _gemm set NumPy's BLAS pools to one thread: they no longer tell the count


def pools_narrowed() -> None:
    """Called by ``_gemm`` after it narrowed the BLAS pools (``_default`` was read before)."""
    global _narrowed
    _narrowed = True


def _forget_default_in_child():
    global _default
    if not _narrowed:  # narrowed pools say 1 whatever the count: a child keeps its parent's
        _default = None  # a forked worker may be given other BLAS limits than its parent had


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_default_in_child)


def get_num_threads() -> int:
    """The intra-op thread count: what set_num_threads set, else the running BLAS pool's size (read
    once: ``_gemm`` narrows NumPy's own pool to one thread once MKL takes the products)."""
    if _requested is not None:
        return _requested
    return intra_op_threads()


def _pool_threads() -> int:
    """The largest BLAS pool's size, else ``OMP_NUM_THREADS``, else the core count."""
    try:
        from threadpoolctl import threadpool_info

        counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        if counts:
            return builtins.max(counts)
    except ImportError:
        pass
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else (os.cpu_count() or 1)
