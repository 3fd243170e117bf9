"""The one place that knows about NumPy versus CuPy.

Every op asks ``array_module(array)`` for the module whose functions fit its arrays; array methods
are already polymorphic. Nothing else in disttorch imports CuPy. A test may install a stand-in
CuPy module with ``set_cupy_for_testing`` to exercise the dispatch without a GPU.
"""
from __future__ import annotations

import os
import sys
import threading

import numpy as np

from disttorch_launcher import settings

_cupy = None
_cupy_checked = False
_thread_state = threading.local()  # CUDA's current device is per thread, so is its first-use default


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
    global _cupy, _cupy_checked, _thread_state
    _cupy, _cupy_checked = module, module is not None
    _thread_state = threading.local()


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
    """The CuPy module (after this thread's default device is chosen); a clear error without CUDA."""
    cp = _load_cupy()
    if cp is None:
        raise RuntimeError(
            f"{what} is not available: disttorch needs CuPy and a working NVIDIA GPU for device 'cuda' "
            "(pip install 'disttorch[gpu]'); use device 'cpu' instead")
    if not getattr(_thread_state, "device_chosen", False):
        _choose_default_device(cp)
    return cp


def _choose_default_device(cp) -> None:
    """First CUDA use on this thread: GPU ``DISTTORCH_DEVICE_INDEX`` (set by disttorch-run), else
    ``LOCAL_RANK`` (torchrun's variable), becomes current, so each local rank works on its own GPU."""
    n = device_count()
    raw = settings.SETTINGS["DISTTORCH_DEVICE_INDEX"].raw() or ""  # parsed here: the error names the GPU count
    if raw:
        try:
            index = int(raw)
        except ValueError:
            index = -1
        if not 0 <= index < n:  # raised again on every use until fixed: never a silent wrong GPU
            raise RuntimeError(f"DISTTORCH_DEVICE_INDEX={raw!r} is not a GPU index of this machine "
                               f"(device_count() = {n})")
    else:
        try:
            index = int(os.environ.get("LOCAL_RANK", ""))
        except ValueError:
            index = -1
    _thread_state.device_chosen = True
    if 0 <= index < n:  # (a LOCAL_RANK beyond the GPUs: more local ranks than GPUs, the script chooses)
        cp.cuda.Device(index).use()


def mark_device_chosen() -> None:
    """An explicit ``disttorch.cuda.set_device`` wins over the environment's default."""
    _thread_state.device_chosen = True


def current_device_index() -> int:
    """Index of this thread's current GPU."""
    return int(require_cupy().cuda.Device().id)


def to_host(array) -> np.ndarray:
    """A NumPy view/copy of any array."""
    if is_cuda_array(array):
        return _cupy.asnumpy(array)
    return array


def to_cuda(array, index: int | None = None):
    """Copies a host or device array onto GPU ``index`` (None: the current GPU, as device "cuda")."""
    cp = require_cupy()
    if index is None:
        return cp.asarray(array)
    with cp.cuda.Device(index):
        return cp.asarray(array)


def is_array(obj) -> bool:
    """True for NumPy and CuPy arrays (index arrays, saved masks) alike."""
    return isinstance(obj, np.ndarray) or is_cuda_array(obj)


def data_ptr(array) -> int:
    """Address of the first element of a NumPy or CuPy array."""
    if is_cuda_array(array):
        return int(array.data.ptr)
    return int(array.__array_interface__["data"][0])


_RESHAPE_TAKES_COPY = np.lib.NumpyVersion(np.__version__) >= "2.1.0"


def reshape_view(array, shape):
    """``array`` reshaped without copying (PyTorch's ``view`` rule); ValueError when its memory
    layout would need a copy. NumPy >= 2.1 says so itself (``copy=False``); older NumPy and CuPy
    reshape as they like, and a result at another address means they copied."""
    if _RESHAPE_TAKES_COPY and type(array) is np.ndarray:
        return array.reshape(shape, copy=False)
    out = array.reshape(shape)
    if out.size and data_ptr(out) != data_ptr(array):
        raise ValueError(f"cannot reshape {tuple(array.shape)} to {tuple(shape)} without copying")
    return out


def like(array, reference):
    """``array`` (host data: array, scalar or list) on the device of ``reference`` (a no-op on the host)."""
    if type(reference) is np.ndarray or not is_cuda_array(reference):
        return array
    if is_cuda_array(array) and device_index_of(array) == device_index_of(reference):
        return array
    return to_cuda(array, device_index_of(reference))


def device_erf(array):
    """erf of a CuPy array on its GPU (cupyx.scipy.special); None where that is unavailable (a test
    stand-in, or a CuPy build without it) so the caller computes on the host instead."""
    if _cupy is None or _cupy is not sys.modules.get("cupy"):
        return None
    try:
        from cupyx.scipy.special import erf
    except ImportError:
        return None
    return erf(array)


def nccl_module():
    """``cupy.cuda.nccl`` (NCCL driven through CuPy); a clear error where CuPy has no NCCL."""
    cp = require_cupy("NCCL")
    mod = getattr(cp.cuda, "nccl", None)
    if mod is None and cp is sys.modules.get("cupy"):
        try:
            from cupy.cuda import nccl as mod  # noqa: F811  (a submodule CuPy does not import eagerly)
        except ImportError:
            mod = None
    if mod is None or not getattr(mod, "available", True):
        raise RuntimeError("the 'nccl' backend needs CuPy with the NCCL library (pip install 'disttorch[gpu]', then "
                           "python -m cupyx.tools.install_library --library nccl --cuda 12.x, or the system's "
                           "libnccl2); use backend 'zmq' to run GPU tensors through host memory instead")
    return mod


def current_stream_ptr() -> int:
    """The raw handle of this thread's current CUDA stream (NCCL kernels queue on it)."""
    return int(require_cupy().cuda.get_current_stream().ptr)
