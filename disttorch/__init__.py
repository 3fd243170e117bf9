"""disttorch: a PyTorch-compatible tensor / autograd / nn / optim / data stack on NumPy (CuPy on
GPUs), with a ZeroMQ collective layer and a launcher for data-parallel training.

``import disttorch as torch`` and PyTorch code keeps working.
"""
from __future__ import annotations

__version__ = "0.1.0"

from ._malloc import tune_allocator as _tune_allocator

_tune_allocator()  # reuse freed activation memory across steps (see _malloc.py)

from ._fp_warnings import silence_numpy_fp_warnings as _silence_numpy_fp_warnings

_silence_numpy_fp_warnings()  # inf / nan without NumPy's RuntimeWarning, as PyTorch

from ._dtype import (  # noqa: F401
    bool, cdouble, cfloat, complex64, complex128, double, dtype, float, float16, float32, float64, get_default_dtype,
    half, int, int8, int16, int32, int64, long, promote_types, set_default_dtype, short, uint8)
from ._dtype import bfloat16  # noqa: F401
from ._type_info import finfo, iinfo  # noqa: F401
from ._device import device  # noqa: F401
from ._size import Size  # noqa: F401
from .tensor import Tensor  # noqa: F401
from . import _tensor_methods  # noqa: F401  (attaches ops to Tensor)
from ._torch_api import *  # noqa: F401,F403
from ._torch_api import abs, all, any, max, min, pow, round, sum  # noqa: F401  (shadow builtins on purpose)
from .ops.creation import range_ as _range_  # noqa: F401
from .autograd.grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .random import Generator, default_generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state  # noqa: F401
from ._torch_api import addcdiv, addcmul  # noqa: F401
from . import autograd, cuda, linalg  # noqa: F401
from . import nn, optim, utils  # noqa: F401,E402  (after Tensor: they build on it)
from .serialization import load, load_safetensors, save, save_safetensors  # noqa: F401
from ._tensor_str import get_printoptions, printoptions, set_printoptions  # noqa: F401
from . import profiler  # noqa: E402  (after nn and optim: it instruments them when tracing)

profiler._start_from_env()  # DISTTORCH_TRACE_DIR set (disttorch-run --trace-dir): record spans


def result_type(tensor1, tensor2):
    """The dtype PyTorch's promotion gives an op on these operands."""
    from ._dtype import result_dtype
    return result_dtype((tensor1, tensor2))


def can_cast(from_, to):
    import numpy as _np
    return _np.can_cast(from_.np, to.np, casting="same_kind")


def is_tensor(obj):
    return isinstance(obj, Tensor)


def is_floating_point(input):
    return input.is_floating_point()


def is_complex(input):
    return input.is_complex()


def numel(input):
    return input.numel()


def is_nonzero(input):
    if input.numel() != 1:
        raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
    return builtins_bool(input.item())


import builtins as _builtins  # noqa: E402

builtins_bool = _builtins.bool


def detach(input):
    return input.detach()


from ._threads import get_num_threads, set_num_threads  # noqa: E402,F401


def use_deterministic_algorithms(mode, *, warn_only=False):
    """Accepted: every disttorch CPU op is deterministic already."""


def compile(model=None, **kwargs):
    """Returns the model unchanged (no compiler); lets ``torch.compile`` code run."""
    if model is None:
        return lambda m: m
    return model


strided = "torch.strided"
e = 2.718281828459045
pi = 3.141592653589793
inf = _builtins.float("inf")
nan = _builtins.float("nan")
newaxis = None


# Loaded on first use (``torch.backends.cudnn.benchmark = True`` works right after ``import``):
# each pulls in code a plain training script does not need.
_LAZY_SUBMODULES = ("accelerator", "amp", "backends", "distributions", "multiprocessing", "onnx")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    if name in ("autocast", "is_autocast_enabled", "get_autocast_dtype", "set_autocast_enabled",
                "set_autocast_dtype"):
        from . import amp
        return getattr(amp, name)
    raise AttributeError(f"module 'disttorch' has no attribute {name!r}")
