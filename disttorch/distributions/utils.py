"""Helpers shared by the distributions: broadcasting parameters, probs <-> logits."""
from __future__ import annotations

import numbers

from .. import _torch_api as _T
from .._dtype import get_default_dtype
from ..tensor import Tensor


def broadcast_all(*values):
    """Tensors of one broadcast shape; numbers become tensors of the tensors' dtype (or the default)."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    if len(tensors) + sum(isinstance(v, numbers.Number) for v in values) != len(values):
        raise ValueError("Input arguments must all be instances of numbers.Number, torch.Tensor or objects "
                         "implementing __torch_function__.")
    dtype = tensors[0].dtype if tensors else get_default_dtype()
    device = tensors[0].device if tensors else None
    out = [v if isinstance(v, Tensor) else _T.tensor(float(v), dtype=dtype, device=device) for v in values]
    return tuple(_T.broadcast_tensors(*out))


def clamp_probs(probs):
    eps = _eps(probs)
    return probs.clamp(min=eps, max=1 - eps)


def _eps(t):
    import numpy as np
    return float(np.finfo(t._data.dtype).eps)


def logits_to_probs(logits, is_binary=False):
    from ..nn import functional as F
    return logits.sigmoid() if is_binary else F.softmax(logits, dim=-1)


def probs_to_logits(probs, is_binary=False):
    ps = clamp_probs(probs)
    if is_binary:
        return ps.log() - (-ps).log1p()
    return ps.log()


class lazy_property:
    """Computed on first access and then stored on the instance (how probs/logits are derived)."""

    def __init__(self, wrapped):
        self.wrapped = wrapped
        self.__doc__ = wrapped.__doc__
        self.name = wrapped.__name__

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = self.wrapped(instance)
        instance.__dict__[self.name] = value
        return value
