"""The one place that knows about NumPy versus CuPy.

Every op asks ``array_module(array)`` for the module whose functions fit its arrays; array methods
are already polymorphic. Nothing else in disttorch imports CuPy. A test may install a stand-in
CuPy module with ``set_cupy_for_testing`` to exercise the dispatch without a GPU.
"""
from __future__ import annotations

import numpy as np

_cupy = None
_cupy_checked = False


def _load_cupy():
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy  # noqa: F401  (optional dependency)

            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
        except Exception:  # no CuPy, or CuPy without a working driver / device
            _cupy = None
    return _cupy


def set_cupy_for_testing(module) -> None:
    """Installs ``module`` as the CUDA array module (a NumPy-backed stand-in in tests); None resets."""
    global _cupy, _cupy_checked
    _cupy, _cupy_checked = module, module is not None


def cupy_module():
    """The CuPy module, or None when CuPy or a GPU is missing."""
    return _load_cupy()


def cuda_available() -> bool:
    return _load_cupy() is not None


def device_count() -> int:
    cp = _load_cupy()
    if cp is None:
        return 0
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:
        return 1


def is_cuda_array(array) -> bool:
    cp = _cupy
    # exact NumPy arrays are host arrays; anything of CuPy's array type (a test stand-in may subclass
    # NumPy's) is a device array
    return cp is not None and type(array) is not np.ndarray and isinstance(array, cp.ndarray)


def array_module(array):
    """numpy for NumPy arrays (and scalars), cupy for CuPy arrays."""
    if type(array) is np.ndarray:
        return np
    if is_cuda_array(array):
        return _cupy
    return np


def device_index_of(array) -> int | None:
    """GPU index of a CuPy array, None for host arrays."""
    if not is_cuda_array(array):
        return None
    dev = getattr(array, "device", None)
    return int(getattr(dev, "id", 0) or 0)


def require_cupy(what: str = "CUDA"):
    cp = _load_cupy()
    if cp is None:
        raise RuntimeError(
            f"{what} is not available: disttorch needs CuPy and a working NVIDIA GPU for device 'cuda' "
            "(pip install 'disttorch[gpu]'); use device 'cpu' instead")
    return cp


def to_host(array) -> np.ndarray:
    """A NumPy view/copy of any array."""
    if is_cuda_array(array):
        return _cupy.asnumpy(array)
    return array


def to_cuda(array, index: int = 0):
    """Copies a host or device array onto GPU ``index``."""
    cp = require_cupy()
    dev = getattr(cp.cuda, "Device", None)
    if dev is not None:
        with dev(index):
            return cp.asarray(array)
    return cp.asarray(array)
