"""The one adapter between tensors and the arrays the collective layer works on.

``disttorch.Tensor`` keeps its array in ``_data`` (NumPy, or CuPy on a GPU); the layer also takes
plain NumPy arrays. Collectives write results into the caller's array object itself, so views and
parameters stay valid. A CuPy array or a non-contiguous array is staged through a contiguous host
copy and written back when the operation completes; the tensor's version counter is bumped after
an in-place result (``Tensor._bump()``), as PyTorch does.
"""
from __future__ import annotations

import numpy as np

from .. import _backend


def _array_of(x):
    """The array behind ``x`` (a disttorch Tensor or a NumPy / CuPy array)."""
    if isinstance(x, np.ndarray):
        return x
    data = getattr(x, "_data", None)
    if data is not None:
        return data
    if _backend.is_cuda_array(x):
        return x
    raise TypeError(f"expected a disttorch.Tensor or a numpy.ndarray, got {type(x).__name__}")


class Staged:
    """A contiguous host array for ``x``; ``commit()`` writes it back and bumps the version."""

    __slots__ = ("obj", "array", "host", "writable")

    def __init__(self, x, writable: bool, what: str = "tensor", keep_device: bool = False):
        arr = _array_of(x)
        self.obj, self.array, self.writable = x, arr, writable
        if _backend.is_cuda_array(arr):  # an NCCL group takes the device array itself
            host = arr if keep_device else np.ascontiguousarray(_backend.to_host(arr))
        elif arr.flags.c_contiguous:
            host = arr
        else:
            host = np.ascontiguousarray(arr)
        if writable and isinstance(arr, np.ndarray) and not arr.flags.writeable:
            raise ValueError(f"the output {what} is read-only (shape {arr.shape}, dtype {arr.dtype})")
        self.host = host

    def commit(self) -> None:
        arr, host = self.array, self.host
        if host is not arr:
            if _backend.is_cuda_array(arr):
                arr[...] = _backend.array_module(arr).asarray(host)
            else:
                np.copyto(arr, host)
        obj = self.obj
        if obj is not arr:
            bump = getattr(obj, "_bump", None)  # disttorch.Tensor: the counter is shared with its views
            if bump is not None:
                bump()
            elif hasattr(obj, "_version"):
                try:
                    obj._version += 1
                except (AttributeError, TypeError):  # a read-only counter: nothing to bump
                    pass


def commit_all(staged: list[Staged]):
    def after():
        for s in staged:
            s.commit()
    return after
