"""torch.accelerator: the device-neutral view of "the" accelerator.

disttorch's only accelerator is a CUDA GPU driven through CuPy; without CuPy or a GPU every query
answers "no accelerator" exactly as PyTorch's CPU build does (``current_accelerator()`` is None,
``device_count()`` is 0, and the device / memory calls raise PyTorch's RuntimeError).
"""
from __future__ import annotations

from . import cuda as _cuda
from ._device import device as _device

__all__ = ["current_accelerator", "current_device_idx", "current_device_index", "device_count", "device_index",
           "empty_cache", "is_available", "max_memory_allocated", "max_memory_reserved", "memory_allocated",
           "memory_reserved", "memory_stats", "reset_peak_memory_stats", "set_device_idx", "set_device_index",
           "synchronize"]


def is_available() -> bool:
    """True when a GPU is usable through CuPy."""
    return _cuda.is_available()


def device_count() -> int:
    """Number of accelerator devices (0 without one)."""
    return _cuda.device_count() if is_available() else 0


def current_accelerator(check_available: bool = False):
    """``device("cuda")`` when a GPU is present, else None (PyTorch's answer on a CPU-only build)."""
    if is_available():
        return _device("cuda")
    return None


def _require(what=None):
    if not is_available():
        raise RuntimeError("Cannot access accelerator device when none is available.")


def current_device_index() -> int:
    """Index of the current GPU (RuntimeError without an accelerator, as PyTorch)."""
    _require()
    return _cuda.current_device()


current_device_idx = current_device_index


def set_device_index(device) -> None:
    """Makes ``device`` (an index, "cuda:N" or a device) the current GPU."""
    _require()
    _cuda.set_device(device)


set_device_idx = set_device_index


def synchronize(device=None) -> None:
    """Waits for all work queued on the GPU."""
    _require()
    _cuda.synchronize(device)


class device_index:
    """Context manager: ``device`` is the current GPU inside the block; None leaves it unchanged."""

    def __init__(self, device, /):
        self.idx = device
        self.prev = None

    def __enter__(self):
        if self.idx is not None:
            _require()
            self.prev = _cuda.current_device()
            _cuda.set_device(self.idx)
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            _cuda.set_device(self.prev)
        return False


# The memory queries, like PyTorch's, need an accelerator (RuntimeError without one).

def empty_cache() -> None:
    _require()
    _cuda.empty_cache()


def memory_allocated(device_index=None) -> int:
    _require()
    return _cuda.memory_allocated(device_index)


def max_memory_allocated(device_index=None) -> int:
    _require()
    return _cuda.max_memory_allocated(device_index)


def memory_reserved(device_index=None) -> int:
    _require()
    return _cuda.memory_reserved(device_index)


def max_memory_reserved(device_index=None) -> int:
    _require()
    return _cuda.max_memory_reserved(device_index)


def memory_stats(device_index=None) -> dict:
    _require()
    return _cuda.memory_stats(device_index)


def reset_peak_memory_stats(device_index=None) -> None:
    _require()
    _cuda.reset_peak_memory_stats(device_index)
