"""``autocast``: mixed precision as PyTorch's, a context manager and a decorator.

Inside ``autocast("cpu", dtype=disttorch.bfloat16)`` (or ``"cuda"``, float16 by default) the ops of
PyTorch's *lower precision* list (matmul family, linear, conv) take their floating inputs rounded to
the autocast dtype and return a tensor of that dtype; the ops of the *float32* list (the losses)
compute in float32. The state is per thread and per device type, as PyTorch's.

Numerics: NumPy has no bfloat16 kernels, so a lower-precision op rounds its inputs to bfloat16
(``ml_dtypes``' round-to-nearest-even, as PyTorch), multiplies them in float32 (exact products of
bfloat16 values, float32 accumulation as PyTorch's CPU kernels), and rounds the result to
bfloat16. Ops that disttorch cannot run on bfloat16 arrays (softmax, gelu, pooling, mean, ...) run
in float32 on such inputs and return the input's dtype, as PyTorch returns.
"""
from __future__ import annotations

import functools
import threading
import warnings

from .. import _dtype

__all__ = ["autocast", "get_autocast_dtype", "is_autocast_available", "is_autocast_enabled", "set_autocast_dtype",
           "set_autocast_enabled"]

_DEVICE_TYPES = ("cpu", "cuda", "ipu", "xpu", "mkldnn", "opengl", "opencl", "ideep", "hip", "ve", "fpga", "maia",
                 "xla", "lazy", "vulkan", "mps", "meta", "hpu", "mtia", "privateuseone")
_DEFAULT_DTYPE = {"cpu": _dtype.bfloat16, "cuda": _dtype.float16}
_SUPPORTED = {"cpu": (_dtype.bfloat16, _dtype.float16), "cuda": (_dtype.bfloat16, _dtype.float16)}


class _State(threading.local):
    def __init__(self):
        self.enabled = {"cpu": False, "cuda": False}
        self.dtype = dict(_DEFAULT_DTYPE)
        self.nesting = 0


_state = _State()
# Autocast blocks entered with enabled=True, over all threads: the op wrappers read this one global
# first, so that with autocast unused they cost a module attribute read, not a thread-local lookup.
_active = 0
_active_lock = threading.Lock()


def is_autocast_available(device_type: str) -> bool:
    """True for the device types autocast supports here: "cpu" and "cuda"."""
    return device_type in ("cpu", "cuda")


def is_autocast_enabled(device_type: str | None = None) -> bool:
    """Whether autocast is on for ``device_type`` (no argument: "cuda", as PyTorch)."""
    return bool(_state.enabled.get(device_type or "cuda", False))


def set_autocast_enabled(device_type, enabled=None) -> None:
    if enabled is None:  # the one-argument legacy form sets cuda
        device_type, enabled = "cuda", device_type
    was = _state.enabled.get(device_type, False)
    _state.enabled[device_type] = bool(enabled)
    if bool(enabled) != was:
        _count(+1 if enabled else -1)


def get_autocast_dtype(device_type: str):
    return _state.dtype[device_type]


def set_autocast_dtype(device_type: str, dtype) -> None:
    _state.dtype[device_type] = dtype


def active_dtype(device_type: str):
    """The autocast dtype in force for tensors on ``device_type``, or None when autocast is off."""
    if _state.enabled.get(device_type):
        return _state.dtype[device_type]
    return None


def any_enabled() -> bool:
    """True when this thread has autocast on for some device type."""
    if not _active:
        return False
    enabled = _state.enabled
    return enabled["cpu"] or enabled["cuda"]


class autocast:
    """``autocast(device_type, dtype=None, enabled=True, cache_enabled=None)``.

    Use as ``with autocast("cpu"):`` or ``@autocast("cpu")``. ``enabled=False`` turns autocast off
    inside the block (a no-op when it was off). Backward passes run without autocast.
    """

    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        if not isinstance(device_type, str):
            raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
        base = device_type.split(":")[0]
        if base not in _DEVICE_TYPES:
            raise RuntimeError(f"Expected one of {', '.join(_DEVICE_TYPES)} device type at start of device string: "
                               f"{device_type}")
        self.device = base
        self.fast_dtype = dtype if dtype is not None else _state.dtype.get(base, _DEFAULT_DTYPE.get(base))
        self._enabled = bool(enabled)
        self._cache_enabled = cache_enabled
        if not is_autocast_available(base):
            raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'")
        if self._enabled and base == "cuda":
            from .. import cuda
            if not cuda.is_available():
                warnings.warn("CUDA is not available or torch_xla is imported. Disabling autocast.", stacklevel=2)
                self._enabled = False
        if self._enabled and self.fast_dtype not in _SUPPORTED[base]:
            if base == "cpu":
                warnings.warn("In CPU autocast, but the target dtype is not supported. Disabling autocast.\n"
                              "CPU Autocast only supports dtypes of torch.bfloat16, torch.float16 currently.",
                              stacklevel=2)
            else:
                warnings.warn("In CUDA autocast, but the target dtype is not supported. Disabling autocast.\n"
                              "CUDA Autocast only supports dtypes of torch.float16 and torch.bfloat16 currently.",
                              stacklevel=2)
            self._enabled = False

    def __enter__(self):
        from ._policies import install
        install()
        self._prev = (_state.enabled[self.device], _state.dtype[self.device])
        _state.enabled[self.device] = self._enabled
        if self._enabled:
            _state.dtype[self.device] = self.fast_dtype
            _count(+1)
        _state.nesting += 1
        return self

    def __exit__(self, exc_type, exc, tb):
        _state.enabled[self.device], _state.dtype[self.device] = self._prev
        _state.nesting -= 1
        if self._enabled:
            _count(-1)
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def decorate_autocast(*args, **kwargs):
            with autocast(self.device, dtype=self.fast_dtype, enabled=self._enabled,
                          cache_enabled=self._cache_enabled):
                return func(*args, **kwargs)
        return decorate_autocast


def _count(delta):
    global _active
    with _active_lock:
        _active += delta


def suspended():
    """Context manager turning autocast off on every device (the backward pass runs under it)."""
    return _Suspend()


class _Suspend:
    def __enter__(self):
        self._prev = dict(_state.enabled)
        for k in _state.enabled:
            _state.enabled[k] = False

    def __exit__(self, *exc):
        _state.enabled.update(self._prev)
        return False
