"""torch.amp: ``autocast`` (bfloat16 / float16 mixed precision) and ``GradScaler`` (loss scaling).

See ``autocast_mode`` for the numerical approach: bfloat16 values are real 2-byte ``ml_dtypes``
bfloat16; NumPy has no bfloat16 matmul, so lower-precision ops multiply the rounded values in
float32 and round the result.
"""
from . import autocast_mode, grad_scaler  # noqa: F401
from ._policies import install as _install
from .autocast_mode import (  # noqa: F401
    autocast,
    get_autocast_dtype,
    is_autocast_available,
    is_autocast_enabled,
    set_autocast_dtype,
    set_autocast_enabled,
)
from .custom import custom_bwd, custom_fwd
from .grad_scaler import GradScaler

__all__ = ["GradScaler", "autocast", "custom_bwd", "custom_fwd", "is_autocast_available"]

_install()  # bfloat16 inputs work in softmax, pooling, ... from now on, in or out of autocast
