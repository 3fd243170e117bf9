"""``custom_fwd`` / ``custom_bwd``: decorators for ``autograd.Function`` methods under autocast."""
from __future__ import annotations

import functools

from .. import _dtype
from . import autocast_mode as _mode


def custom_fwd(fwd=None, *, device_type="cuda", cast_inputs=None):
    """Runs ``forward`` with autocast off and floating inputs cast to ``cast_inputs`` (when autocast
    is on for ``device_type``); with ``cast_inputs=None`` it runs in the surrounding autocast state."""
    if fwd is None:
        return functools.partial(custom_fwd, device_type=device_type, cast_inputs=cast_inputs)

    @functools.wraps(fwd)
    def decorate_fwd(*args, **kwargs):
        from ..tensor import Tensor
        args[0]._fwd_used_autocast = _mode.is_autocast_enabled(device_type)
        args[0]._dtype = _mode.get_autocast_dtype(device_type)
        if cast_inputs is None or not args[0]._fwd_used_autocast:
            return fwd(*args, **kwargs)

        def cast(v):
            return v.to(cast_inputs) if isinstance(v, Tensor) and v.dtype.is_floating_point and \
                v.dtype is not _dtype.float64 else v
        with _mode.autocast(device_type, enabled=False):
            return fwd(*[cast(a) for a in args], **{k: cast(v) for k, v in kwargs.items()})
    return decorate_fwd


def custom_bwd(bwd=None, *, device_type="cuda"):
    """Runs ``backward`` in the autocast state its forward ran in."""
    if bwd is None:
        return functools.partial(custom_bwd, device_type=device_type)

    @functools.wraps(bwd)
    def decorate_bwd(*args, **kwargs):
        ctx = args[0]
        with _mode.autocast(device_type, enabled=getattr(ctx, "_fwd_used_autocast", False),
                            dtype=getattr(ctx, "_dtype", None)):
            return bwd(*args, **kwargs)
    return decorate_bwd
