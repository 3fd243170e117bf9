"""The Tensor namespace for ``create_graph=True``: the NumPy names backward formulas use, built from
differentiable disttorch ops, so a backward pass is itself recorded (higher-order gradients)."""
from __future__ import annotations

import numpy as np

from .._backend import array_module, is_array
from .._backend import like as _on_device_of
from ..tensor import Tensor


def _t(x, like=None):
    if isinstance(x, Tensor):
        return x
    from .creation import tensor
    if like is not None:
        return tensor(x, dtype=like.dtype, device=like.device if like.is_cuda else None)
    return tensor(x)


def _zeros(shape, like, dtype=None):
    """A zero tensor of ``shape`` on ``like``'s device (``like`` a Tensor), ``like``'s dtype by default."""
    xp = array_module(like._data)
    return Tensor._wrap(xp.zeros(tuple(shape), dtype=like._data.dtype if dtype is None else dtype))


def _axes(axis):
    if axis is None:
        return None
    return tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)


def _numpy_style_reduce(reduce, x, axis, keepdims):
    """``reduce`` (disttorch's sum or mean) called with NumPy's arguments: ``axis`` None, an int or
    a sequence, ``keepdims`` also when reducing over everything."""
    ax = _axes(axis)
    if ax is None:
        r = reduce(x)
        return r.reshape((1,) * x.ndim) if keepdims else r
    return reduce(x, ax, keepdim=keepdims)


class TensorNamespace:
    graph = True

    def __getattr__(self, name):
        from .. import _torch_api as T
        fn = getattr(T, name)
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
        arr = array if is_array(array) else np.asarray(array)
        return Tensor._wrap(_on_device_of(arr, like._data) if isinstance(like, Tensor) else arr)

    @staticmethod
    def sum(x, axis=None, keepdims=False):
        from .reduce import sum as _sum
        return _numpy_style_reduce(_sum, x, axis, keepdims)

    @staticmethod
    def mean(x, axis=None, keepdims=False):
        from .reduce import mean as _mean
        return _numpy_style_reduce(_mean, x, axis, keepdims)

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
            dev = cond.device if isinstance(cond, Tensor) and cond.is_cuda else None
            a = full(tuple(cond.shape), float(a), device=dev)
            b = full(tuple(cond.shape), float(b), device=dev)
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
        from .index import IndexBackward0, SliceBackward0
        advanced = any(is_array(i) for i in (index if isinstance(index, tuple) else (index,)))
        if advanced:
            return IndexBackward0.apply(x, index=index)
        return SliceBackward0.apply(x, index=index)

    @staticmethod
    def index_put_zeros(shape, index, g):
        from .index import IndexPutBackward0
        return IndexPutBackward0.apply(_zeros(shape, g), g, index=index)

    @staticmethod
    def index_add(shape, index, values, like):
        from .index import IndexPutBackward0
        return IndexPutBackward0.apply(_zeros(shape, values), values, index=index, accumulate=True)

    @staticmethod
    def scatter_add_axis(shape, axis, index, values, like):
        from .index import scatter_add
        idx = index if is_array(index) else np.asarray(index)
        return scatter_add(_zeros(shape, values), axis, Tensor._wrap(_on_device_of(idx, values._data)), values)

    @staticmethod
    def index_fill_zero(g, index):
        mask = _zeros(g.shape, g, dtype=bool)
        mask._data[index] = True
        return g.masked_fill(mask, 0.0)

    @staticmethod
    def pad_to(x, shape):
        if tuple(x.shape) == tuple(shape):
            return x
        from .index import IndexPutBackward0
        base = _zeros(shape, x)
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
        base = _zeros(shape, g)
        n = g.shape[-1]
        idx = np.arange(n)  # index arrays may stay on the host: CuPy copies them over
        r, c = (idx, idx + offset) if offset >= 0 else (idx - offset, idx)
        sl = [slice(None)] * len(shape)
        sl[a1], sl[a2] = r, c
        from .index import IndexPutBackward0
        moved = g.movedim(-1, min(a1, a2)) if len(shape) > 2 else g
        return IndexPutBackward0.apply(base, moved, index=tuple(sl))


TENSOR_NS = TensorNamespace()
