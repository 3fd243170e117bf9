"""Gradient clipping: ``clip_grad_norm_`` (by the total norm) and ``clip_grad_value_`` (elementwise).

Norms are computed in the gradients' own dtype (float32 stays float32) and the gradients are
scaled in place, bumping their version counters.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ... import _backend
from ...tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_norm", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]


def _as_list(tensors):
    return [tensors] if isinstance(tensors, Tensor) else list(tensors)


def _norm_of(arr, norm_type):
    """The norm of a NumPy or CuPy array as a 0-d array of the same module (no host round trip)."""
    xp = _backend.array_module(arr)
    flat = arr.reshape(-1)
    if norm_type == math.inf:
        r = xp.abs(flat).max() if flat.size else xp.zeros((), arr.dtype)
    elif norm_type == -math.inf:
        r = xp.abs(flat).min() if flat.size else xp.zeros((), arr.dtype)
    elif norm_type == 2.0:
        # dot: one BLAS pass (cuBLAS on a GPU), no temporary the size of the gradient
        r = xp.sqrt(xp.dot(flat, flat)) if flat.dtype.kind == "f" else xp.sqrt((flat * flat).sum())
    elif norm_type == 1.0:
        r = xp.abs(flat).sum()
    elif norm_type == 0:
        r = xp.asarray(xp.count_nonzero(flat), dtype=arr.dtype)
    else:
        r = (xp.abs(flat) ** norm_type).sum() ** (1.0 / norm_type)
    return xp.asarray(r) if xp is np else r


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The ``norm_type``-norm of all ``tensors`` viewed as one vector (a 0-d tensor)."""
    tensors = [t for t in _as_list(tensors) if t is not None]
    norm_type = float(norm_type)
    if not tensors:
        return Tensor._wrap(np.zeros((), np.float32))
    # per-tensor norms where the gradients live; the total on the first tensor's device
    first = tensors[0]._data
    norms = [_backend.like(_norm_of(t._data, norm_type), first) for t in tensors]
    xp = _backend.array_module(first)
    stacked = xp.stack([n.astype(norms[0].dtype, copy=False) for n in norms])
    total = _norm_of(stacked, norm_type).astype(stacked.dtype, copy=False)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot be "
            "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`")
    return Tensor._wrap(total)


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scales the gradients by ``min(1, max_norm / (total_norm + 1e-6))`` in place."""
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    if not grads:
        return
    if isinstance(total_norm, Tensor) and total_norm.is_cuda:
        # on the GPU the coefficient stays a device scalar: no host synchronisation per step
        xp = _backend.array_module(total_norm._data)
        coef = xp.minimum(float(max_norm) / (total_norm._data + 1e-6), 1.0)
    else:
        total = float(total_norm.item() if isinstance(total_norm, Tensor) else total_norm)
        coef = min(float(max_norm) / (total + 1e-6), 1.0)
    for g in grads:
        # PyTorch multiplies even when coef == 1 (and by nan/inf when the norm is); so do we
        g._data *= _backend.like(coef, g._data) if _backend.is_array(coef) else coef  # keeps the grad's dtype
        g._vc[0] += 1


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scales gradients so their total ``norm_type``-norm is at most ``max_norm``.

    Returns the total norm before clipping (a 0-d tensor). ``foreach`` is accepted for
    compatibility (the NumPy path has no separate foreach kernels).
    """
    params = _as_list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(params, max_norm, total, foreach)
    return total


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Deprecated alias of ``clip_grad_norm_``."""
    warnings.warn("`torch.nn.utils.clip_grad_norm` is now deprecated in favor of `torch.nn.utils.clip_grad_norm_`.",
                  FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamps every gradient element into ``[-clip_value, clip_value]`` in place."""
    clip_value = float(clip_value)
    for p in _as_list(parameters):
        g = p.grad
        if g is not None:
            _backend.array_module(g._data).clip(g._data, -clip_value, clip_value, out=g._data)
            g._vc[0] += 1
