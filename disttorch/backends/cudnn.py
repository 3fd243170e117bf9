"""torch.backends.cudnn: the flags PyTorch programs set (``benchmark``, ``deterministic``, ...).

disttorch drives GPUs through CuPy and never calls cuDNN's convolution autotuner, so the flags only
record the program's choice; ``is_available()`` says whether CuPy can load cuDNN.
"""
from __future__ import annotations

import contextlib

enabled = True
benchmark = False
benchmark_limit = 10
deterministic = False
allow_tf32 = True


def is_available() -> bool:
    """True when CuPy with a GPU and its cuDNN bindings are importable."""
    from .. import cuda
    if not cuda.is_available():
        return False
    try:
        from cupy import cudnn as _cudnn  # noqa: F401
    except Exception:
        return False
    return True


def version():
    """cuDNN's version number, or None without cuDNN (PyTorch's CPU build answers None)."""
    if not is_available():
        return None
    from cupy import cudnn as _cudnn
    return int(_cudnn.get_build_version())


def is_acceptable(tensor) -> bool:
    return bool(enabled) and is_available() and tensor.is_cuda


@contextlib.contextmanager
def flags(enabled=False, benchmark=False, benchmark_limit=10, deterministic=False, allow_tf32=True):
    """Sets the flags inside the block and restores them after it."""
    g = globals()
    names = ("enabled", "benchmark", "benchmark_limit", "deterministic", "allow_tf32")
    saved = {n: g[n] for n in names}
    g.update(zip(names, (enabled, benchmark, benchmark_limit, deterministic, allow_tf32)))
    try:
        yield
    finally:
        g.update(saved)
