"""This process's BLAS thread count: ``disttorch.get_num_threads`` / ``set_num_threads``, also what
DDP's overlap decision counts as a rank's compute threads (one definition for both)."""
from __future__ import annotations

import os

_thread_limit = None  # threadpoolctl's limit object: the limit holds while it is referenced


def get_num_threads() -> int:
    """BLAS threads of this process (threadpoolctl's view when installed, else OMP_NUM_THREADS)."""
    try:
        from threadpoolctl import threadpool_info
        counts = [int(info.get("num_threads") or 1) for info in threadpool_info() if info.get("user_api") == "blas"]
        if counts:
            return max(counts)
    except ImportError:
        pass
    return int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))


def set_num_threads(n: int) -> None:
    """Caps BLAS threads for this process (through threadpoolctl when installed)."""
    global _thread_limit
    try:
        from threadpoolctl import threadpool_limits
        _thread_limit = threadpool_limits(n)
    except ImportError:
        os.environ["OMP_NUM_THREADS"] = str(n)
