"""The Tensor namespace for ``create_graph=True``: the NumPy names backward formulas use, built from
differentiable disttorch ops, so a backward pass is itself recorded (higher-order gradients)."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor


def _t(x, like=None):
    if isinstance(x, Tensor):
        return x
    from .creation import tensor
    if like is not None:
        return tensor(x, dtype=like.dtype)
    return tensor(x)


def _axes(axis):
    if axis is None:
        return None
    return tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)


class TensorNamespace:
    graph = True

    def __getattr__(self, name):
        from .. import _functions as F
        fn = getattr(F, name)
        setattr(self, name, fn)
        return fn

    @staticmethod
    def out(node):
        t = Tensor._wrap(node.out)
        t._requires_grad = True
        t.grad_fn = node
        return t

    @staticmethod
    def const(array, like):
        if isinstance(array, Tensor):
            return array
        return Tensor._wrap(array if isinstance(array, np.ndarray) else np.asarray(array))

    @staticmethod
    def sum(x, axis=None, keepdims=False):
        from .reduce import sum as _sum
        ax = _axes(axis)
        if ax is None:
            r = _sum(x)
            return r.reshape((1,) * x.ndim) if keepdims else r
        return _sum(x, ax, keepdim=keepdims)

    @staticmethod
    def mean(x, axis=None, keepdims=False):
        from .reduce import mean as _mean
        ax = _axes(axis)
        if ax is None:
            r = _mean(x)
            return r.reshape((1,) * x.ndim) if keepdims else r
        return _mean(x, ax, keepdim=keepdims)

    @staticmethod
    def reshape(x, shape):
        return x.reshape(tuple(shape))

    @staticmethod
    def broadcast_to(x, shape):
        return x.expand(tuple(shape))

    @staticmethod
    def matmul(a, b):
        return a @ b

    @staticmethod
    def swapaxes(x, a, b):
        return x.transpose(a, b)

    @staticmethod
    def transpose(x, axes):
        return x.permute(*axes)

    @staticmethod
    def expand_dims(x, axis):
        return x.unsqueeze(axis)

    @staticmethod
    def where(cond, a, b):
        from .pointwise import where
        ref = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
        if ref is None:
            from .creation import full
            a = full(tuple(cond.shape), float(a))
            b = full(tuple(cond.shape), float(b))
        return where(_t(cond), a, b)

    @staticmethod
    def astype(x, npd):
        from .._dtype import from_numpy_dtype
        return x.to(from_numpy_dtype(npd))

    @staticmethod
    def zeros_like(x):
        return x * 0

    @staticmethod
    def ones_like(x):
        return x * 0 + 1

    @staticmethod
    def flip(x, axis):
        return x.flip(_axes(axis))

    @staticmethod
    def cumsum(x, axis):
        return x.cumsum(axis)

    @staticmethod
    def tril(x, k=0):
        return x.tril(k)

    @staticmethod
    def triu(x, k=0):
        return x.triu(k)

    @staticmethod
    def einsum(spec, *xs):
        from .linalg import einsum
        return einsum(spec, *xs)

    @staticmethod
    def getitem(x, index):
        from .index import IndexBackward0, _SliceView, SliceBackward0
        advanced = any(isinstance(i, np.ndarray) for i in (index if isinstance(index, tuple) else (index,)))
        if advanced:
            return IndexBackward0.apply(x, index=index)
        return SliceBackward0.apply(x, index=index)

    @staticmethod
    def index_put_zeros(shape, index, g):
        from .index import IndexPutBackward0
        base = Tensor._wrap(np.zeros(tuple(shape), dtype=g._data.dtype))
        return IndexPutBackward0.apply(base, g, index=index)

    @staticmethod
    def index_add(shape, index, values, like):
        from .index import IndexPutBackward0
        base = Tensor._wrap(np.zeros(tuple(shape), dtype=values._data.dtype))
        return IndexPutBackward0.apply(base, values, index=index, accumulate=True)

    @staticmethod
    def scatter_add_axis(shape, axis, index, values, like):
        from .index import scatter_add
        base = Tensor._wrap(np.zeros(tuple(shape), dtype=values._data.dtype))
        return scatter_add(base, axis, Tensor._wrap(np.asarray(index)), values)

    @staticmethod
    def index_fill_zero(g, index):
        mask = np.zeros(tuple(g.shape), dtype=bool)
        mask[index] = True
        return g.masked_fill(Tensor._wrap(mask), 0.0)

    @staticmethod
    def pad_to(x, shape):
        if tuple(x.shape) == tuple(shape):
            return x
        from .index import IndexPutBackward0
        base = Tensor._wrap(np.zeros(tuple(shape), dtype=x._data.dtype))
        return IndexPutBackward0.apply(base, x, index=tuple(slice(0, s) for s in x.shape))

    @staticmethod
    def roll(x, shifts, axes):
        return x.roll(shifts, axes)

    @staticmethod
    def inv(x):
        from .linalg import inv
        return inv(x)

    @staticmethod
    def diagonal_scatter_zeros(shape, g, offset, a1, a2):
        arr = np.zeros(tuple(shape), dtype=g._data.dtype)
        n = g.shape[-1]
        idx = np.arange(n)
        r, c = (idx, idx + offset) if offset >= 0 else (idx - offset, idx)
        sl = [slice(None)] * len(shape)
        sl[a1], sl[a2] = r, c
        from .index import IndexPutBackward0
        moved = g.movedim(-1, min(a1, a2)) if len(shape) > 2 else g
        return IndexPutBackward0.apply(Tensor._wrap(arr), moved, index=tuple(sl))


TENSOR_NS = TensorNamespace()
