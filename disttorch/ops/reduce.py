"""Reductions: sum, mean, prod, max/min, var/std, norms, logsumexp, softmax, cumulative ops."""
from __future__ import annotations

import collections
import math

import numpy as np

from .. import _dtype as D
from ._base import Op, fast_mean
from .pointwise import _xp, cast
from ..tensor import Tensor, _wrap_dim


def _dims(dim, ndim):
    """Normalises ``dim`` (None, int, tuple/list) to a sorted tuple of non-negative axes or None."""
    if dim is None:
        return None
    if isinstance(dim, (list, tuple)):
        if len(dim) == 0:
            return None
        return tuple(sorted(_wrap_dim(d, ndim) for d in dim))
    return (_wrap_dim(dim, ndim),)


def _expand_back(ns, g, shape, axes, keepdim):
    """Broadcasts a reduced gradient back to ``shape``."""
    if axes is None:
        return ns.broadcast_to(ns.reshape(g, (1,) * len(shape)), shape)
    if not keepdim:
        for a in axes:
            g = ns.expand_dims(g, a)
    return ns.broadcast_to(g, shape)


class SumBackward0(Op):
    fresh_grads = False

    def forward(self, x, axes=None, keepdim=False, dtype=None):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return x.sum(axis=axes, keepdims=keepdim, dtype=dtype)

    def backward(self, g, ns):
        return (_expand_back(ns, g, self.shape, self.axes, self.keepdim),)


class SumBackward1(SumBackward0):
    """sum over given dims."""


def sum(input, dim=None, keepdim=False, *, dtype=None):
    """Sum of all elements, or over ``dim``; integer and bool inputs sum as int64."""
    axes = _dims(dim, input.ndim)
    npdt = None
    if dtype is not None:
        npdt = D.as_dtype(dtype).np
    elif input._data.dtype.kind in "iub":
        npdt = np.int64
    cls = SumBackward0 if dim is None else SumBackward1
    if axes is None and input.ndim == 0:
        axes = None
    return cls.apply(input, axes=axes, keepdim=keepdim, dtype=npdt)


class MeanBackward0(Op):
    fresh_grads = True

    def forward(self, x, axes=None, keepdim=False):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        n = x.size if axes is None else math.prod([x.shape[a] for a in axes])
        self.n = n if n > 1 else 1  # (builtin max is shadowed in this module)
        if not x.size:
            return _xp(x).sum(x, axis=axes, keepdims=keepdim) * np.nan
        return fast_mean(x, axis=axes, keepdims=keepdim)

    def backward(self, g, ns):
        return (_expand_back(ns, g / self.n, self.shape, self.axes, self.keepdim),)


class MeanBackward1(MeanBackward0):
    """mean over given dims."""


def _float_only(name, input, dtype):
    if dtype is not None:
        return cast(input, D.as_dtype(dtype))
    if input._data.dtype.kind not in "fc":
        raise RuntimeError(
            f"{name}(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. "
            f"Got: {_long_name(input.dtype)}")
    return input


def _long_name(dt):
    return D.LEGACY_NAMES[dt.name]


def mean(input, dim=None, keepdim=False, *, dtype=None):
    input = _float_only("mean", input, dtype)
    cls = MeanBackward0 if dim is None else MeanBackward1
    return cls.apply(input, axes=_dims(dim, input.ndim), keepdim=keepdim)


class ProdBackward0(Op):
    save_inputs = (0,)
    saves_output = True

    def forward(self, x, axis=None, keepdim=False):
        self.shape, self.axis, self.keepdim = x.shape, axis, keepdim
        return _xp(x).prod(x, axis=axis, keepdims=keepdim, dtype=np.int64 if x.dtype.kind in "iub" else None)

    def backward(self, g, ns, x):
        axes = None if self.axis is None else (self.axis,)
        out = _expand_back(ns, ns.out(self), self.shape, axes, self.keepdim)
        gx = _expand_back(ns, g, self.shape, axes, self.keepdim)
        if ns.graph:
            return (gx * out / x,)
        # zeros: product of the others, computed without dividing by zero
        if not (x == 0).any():
            return (gx * out / x,)
        xp = _xp(x)
        ax = -1 if self.axis is None else self.axis
        xx = x.reshape(-1) if self.axis is None else x
        moved = xp.moveaxis(xx, ax, -1)
        left = xp.concatenate([xp.ones(moved.shape[:-1] + (1,), x.dtype), xp.cumprod(moved, -1)[..., :-1]], -1)
        right = xp.flip(xp.concatenate([xp.ones(moved.shape[:-1] + (1,), x.dtype),
                                        xp.cumprod(xp.flip(moved, -1), -1)[..., :-1]], -1), -1)
        others = xp.moveaxis(left * right, -1, ax)
        others = others.reshape(self.shape) if self.axis is None else others
        return (gx * others,)


class ProdBackward1(ProdBackward0):
    """prod over one dim."""


def prod(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = cast(input, D.as_dtype(dtype))
    axis = None if dim is None else _wrap_dim(dim, input.ndim)
    return (ProdBackward0 if dim is None else ProdBackward1).apply(input, axis=axis, keepdim=keepdim)


class _ExtremeAll(Op):
    """max()/min() of all elements: the gradient is split evenly among ties, as PyTorch does."""

    save_inputs = (0,)
    saves_output = True

    def backward(self, g, ns, x):
        out = ns.out(self)
        mask = x == out
        if ns.graph:
            cnt = ns.sum(ns.where(mask, x * 0 + 1, x * 0))
            return (ns.where(mask, g / cnt + x * 0, x * 0),)
        return ((mask * (g / mask.sum())).astype(x.dtype, copy=False),)


class MaxBackward1(_ExtremeAll):
    def forward(self, x):
        return x.max()


class MinBackward1(_ExtremeAll):
    def forward(self, x):
        return x.min()


class MedianBackward0(_ExtremeAll):
    """median() of all elements (the lower of the two middle values)."""

    def forward(self, x):
        flat = _xp(x).sort(x.reshape(-1))
        return flat[(flat.size - 1) // 2:(flat.size - 1) // 2 + 1].reshape(())


class _ExtremeDim(Op):
    """max/min over a dim with indices: the gradient goes to the selected index only."""

    def _finish(self, x, axis, keepdim, idx):
        xp = _xp(x)
        self.shape, self.axis, self.keepdim = x.shape, axis, keepdim
        self.idx = xp.expand_dims(idx, axis)
        vals = xp.take_along_axis(x, self.idx, axis)
        self.indices = self.idx if keepdim else idx
        return vals if keepdim else xp.squeeze(vals, axis)

    def backward(self, g, ns):
        if not self.keepdim:
            g = ns.expand_dims(g, self.axis)
        return (ns.scatter_add_axis(self.shape, self.axis, self.idx, g, g),)


class MaxBackward0(_ExtremeDim):
    def forward(self, x, axis, keepdim):
        return self._finish(x, axis, keepdim, _xp(x).argmax(x, axis))


class MinBackward0(_ExtremeDim):
    def forward(self, x, axis, keepdim):
        return self._finish(x, axis, keepdim, _xp(x).argmin(x, axis))


class _KthDim(_ExtremeDim):
    """The k-th smallest value along a dim (stable order); the gradient goes to its index."""

    def forward(self, x, axis, keepdim, k):
        xp = _xp(x)
        order = xp.argsort(x, axis=axis, kind="stable")
        return self._finish(x, axis, keepdim, xp.take(order, k, axis=axis))


class MedianBackward1(_KthDim):
    """median over a dim."""


class KthvalueBackward0(_KthDim):
    """kthvalue over a dim."""


def _return_type(name, fields=("values", "indices")):
    cls = collections.namedtuple(name, fields)
    cls.__module__ = "torch.return_types"
    cls.__repr__ = lambda self: (f"torch.return_types.{name}(\n" +
                                 ",\n".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")")
    return cls


return_types = {n: _return_type(n) for n in ("max", "min", "sort", "topk", "median", "mode", "kthvalue", "cummax", "cummin", "aminmax")}
return_types["aminmax"] = _return_type("aminmax", ("min", "max"))


def _extreme(name, all_cls, dim_cls, input, dim, keepdim, other):
    if other is not None:
        from .pointwise import maximum, minimum
        return (maximum if name == "max" else minimum)(input, other)
    if dim is None:
        if input.numel() == 0:
            raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the 'dim' argument.")
        return all_cls.apply(input)
    axis = _wrap_dim(dim, input.ndim)
    if input.ndim == 0:
        return return_types[name](input.clone(), Tensor._wrap(_xp(input._data).zeros((), np.int64)))
    node = dim_cls()
    vals = node._run((input,), {"axis": axis, "keepdim": keepdim})
    return return_types[name](vals, Tensor._wrap(node.indices.astype(np.int64, copy=False)))


def max(input, dim=None, keepdim=False, *, other=None):
    """max of all elements, ``(values, indices)`` over ``dim``, or elementwise with a tensor."""
    if isinstance(dim, Tensor):
        return _extreme("max", MaxBackward1, MaxBackward0, input, None, keepdim, dim)
    return _extreme("max", MaxBackward1, MaxBackward0, input, dim, keepdim, other)


def min(input, dim=None, keepdim=False, *, other=None):
    if isinstance(dim, Tensor):
        return _extreme("min", MinBackward1, MinBackward0, input, None, keepdim, dim)
    return _extreme("min", MinBackward1, MinBackward0, input, dim, keepdim, other)


class AmaxBackward0(Op):
    save_inputs = (0,)
    saves_output = True

    def forward(self, x, axes, keepdim):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return self._reduce(_xp(x), x, axes, keepdim)

    @staticmethod
    def _reduce(xp, x, axes, keepdim):
        return xp.max(x, axis=axes, keepdims=keepdim)

    def backward(self, g, ns, x):
        out = _expand_back(ns, ns.out(self), self.shape, self.axes, self.keepdim)
        gx = _expand_back(ns, g, self.shape, self.axes, self.keepdim)
        mask = x == out
        if ns.graph:
            m = ns.where(mask, x * 0 + 1, x * 0)
            cnt = _expand_back(ns, ns.sum(m, axis=self.axes, keepdims=self.keepdim), self.shape, self.axes, self.keepdim)
            return (gx * m / cnt,)
        cnt = mask.sum(axis=self.axes, keepdims=True)
        return ((gx * mask / cnt).astype(x.dtype, copy=False),)


class AminBackward0(AmaxBackward0):
    @staticmethod
    def _reduce(xp, x, axes, keepdim):
        return xp.min(x, axis=axes, keepdims=keepdim)


def amax(input, dim=(), keepdim=False):
    return AmaxBackward0.apply(input, axes=_dims(dim, input.ndim), keepdim=keepdim)


def amin(input, dim=(), keepdim=False):
    return AminBackward0.apply(input, axes=_dims(dim, input.ndim), keepdim=keepdim)


def aminmax(input, *, dim=None, keepdim=False):
    return return_types["aminmax"](amin(input, () if dim is None else dim, keepdim), amax(input, () if dim is None else dim, keepdim))


def argmax(input, dim=None, keepdim=False):
    xp = _xp(input._data)
    if dim is None:
        return Tensor._wrap(np.asarray(xp.argmax(input._data), dtype=np.int64) if xp is np else xp.argmax(input._data).astype(np.int64))
    axis = _wrap_dim(dim, input.ndim)
    r = xp.argmax(input._data, axis=axis, keepdims=keepdim)
    return Tensor._wrap(r.astype(np.int64, copy=False))


def argmin(input, dim=None, keepdim=False):
    xp = _xp(input._data)
    if dim is None:
        return Tensor._wrap(np.asarray(xp.argmin(input._data), dtype=np.int64) if xp is np else xp.argmin(input._data).astype(np.int64))
    axis = _wrap_dim(dim, input.ndim)
    return Tensor._wrap(xp.argmin(input._data, axis=axis, keepdims=keepdim).astype(np.int64, copy=False))


class VarBackward0(Op):
    save_inputs = (0,)

    def forward(self, x, axes, correction, keepdim):
        xp = _xp(x)
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        n = x.size if axes is None else math.prod([x.shape[a] for a in axes])
        self.denom = n - correction
        m = fast_mean(x, axis=axes, keepdims=True)
        d = x - m
        s = xp.sum(d * d, axis=axes, keepdims=keepdim)
        return (s / self.denom if self.denom > 0 else s * np.nan).astype(x.dtype, copy=False)

    def backward(self, g, ns, x):
        m = ns.mean(x, axis=self.axes, keepdims=True)
        gx = _expand_back(ns, g, self.shape, self.axes, self.keepdim)
        return (gx * (x - m) * (2.0 / self.denom),)


class StdBackward0(VarBackward0):
    saves_output = True

    def forward(self, x, axes, correction, keepdim):
        return _xp(x).sqrt(super().forward(x, axes, correction, keepdim))

    def backward(self, g, ns, x):
        out = ns.out(self)
        # PyTorch's std_backward: zero gradient where the std is 0 (not 0 / 0)
        zero = out == 0
        scaled = ns.where(zero, g * 0, g / ns.where(zero, out * 0 + 1, out * 2))
        return super().backward(scaled, ns, x)


def _correction(unbiased, correction):
    if correction is not None:
        return correction
    if unbiased is None:
        return 1
    return 1 if unbiased else 0


def _var_input(input):
    if input._data.dtype.kind not in "fc":
        raise RuntimeError("std and var only support floating point and complex dtypes")
    return input


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance with Bessel's ``correction`` (default 1), over all elements or ``dim``."""
    if isinstance(dim, bool):
        unbiased, dim = dim, None
    input = _var_input(input)
    return VarBackward0.apply(input, axes=_dims(dim, input.ndim), correction=_correction(unbiased, correction), keepdim=keepdim)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):
        unbiased, dim = dim, None
    input = _var_input(input)
    return StdBackward0.apply(input, axes=_dims(dim, input.ndim), correction=_correction(unbiased, correction), keepdim=keepdim)


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


class LinalgVectorNormBackward0(Op):
    save_inputs = (0,)
    saves_output = True

    def forward(self, x, ord, axes, keepdim):
        xp = _xp(x)
        self.ord, self.shape, self.axes, self.keepdim = ord, x.shape, axes, keepdim
        a = xp.abs(x)
        if ord == 2:
            return xp.sqrt(xp.sum(x * x, axis=axes, keepdims=keepdim))
        if ord == float("inf"):
            return xp.max(a, axis=axes, keepdims=keepdim)
        if ord == -float("inf"):
            return xp.min(a, axis=axes, keepdims=keepdim)
        if ord == 0:
            return xp.sum(a != 0, axis=axes, keepdims=keepdim).astype(x.dtype)
        if ord == 1:
            return xp.sum(a, axis=axes, keepdims=keepdim)
        return xp.sum(a ** ord, axis=axes, keepdims=keepdim) ** (1.0 / ord)

    def backward(self, g, ns, x):
        out = _expand_back(ns, ns.out(self), self.shape, self.axes, self.keepdim)
        gx = _expand_back(ns, g, self.shape, self.axes, self.keepdim)
        p = self.ord
        if p == 2:
            safe = ns.where(out == 0, out * 0 + 1, out)
            return (ns.where(out == 0, x * 0, gx * x / safe),)
        if p == 1:
            return (gx * ns.sign(x),)
        if p in (float("inf"), -float("inf")):
            a = ns.abs(x)
            mask = a == out
            if ns.graph:
                m = ns.where(mask, x * 0 + 1, x * 0)
            else:
                m = mask.astype(x.dtype)
            cnt = _expand_back(ns, ns.sum(m, axis=self.axes, keepdims=self.keepdim), self.shape, self.axes, self.keepdim)
            return (gx * ns.sign(x) * m / cnt,)
        if p == 0:
            return (x * 0,)
        safe = ns.where(out == 0, out * 0 + 1, out)
        return (ns.where(out == 0, x * 0, gx * ns.sign(x) * ns.abs(x) ** (p - 1) / safe ** (p - 1)),)


def vector_norm(input, ord=2, dim=None, keepdim=False, *, dtype=None):
    if dtype is None and input._data.dtype.kind not in "fc":
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as input. "
                           f"Got {_long_name(input.dtype)}")
    input = _float_only("linalg.vector_norm", input, dtype)
    return LinalgVectorNormBackward0.apply(input, ord=float(ord), axes=_dims(dim, input.ndim), keepdim=keepdim)


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """Vector p-norm (``'fro'`` is the 2-norm of the flattened tensor, as in PyTorch)."""
    if p == "fro" or p is None:
        p = 2
    if p == "nuc":
        raise RuntimeError("norm(): 'nuc' norm needs an SVD; use disttorch.linalg.matrix_norm")
    return vector_norm(input, p, dim, keepdim, dtype=dtype)


class LogsumexpBackward0(Op):
    save_inputs = (0,)
    saves_output = True

    def forward(self, x, axes, keepdim):
        xp = _xp(x)
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        m = xp.max(x, axis=axes, keepdims=True) if x.size else xp.zeros((1,) * x.ndim, x.dtype)
        m = xp.where(xp.isfinite(m), m, 0)
        s = xp.log(xp.sum(xp.exp(x - m), axis=axes, keepdims=True)) + m
        return s if keepdim else xp.squeeze(s, axis=axes)

    def backward(self, g, ns, x):
        out = _expand_back(ns, ns.out(self), self.shape, self.axes, self.keepdim)
        gx = _expand_back(ns, g, self.shape, self.axes, self.keepdim)
        return (gx * ns.exp(x - out),)


def logsumexp(input, dim, keepdim=False):
    if input._data.dtype.kind not in "fc":
        input = cast(input, D.get_default_dtype())
    return LogsumexpBackward0.apply(input, axes=_dims(dim, input.ndim), keepdim=keepdim)


class SoftmaxBackward0(Op):
    saves_output = True

    def forward(self, x, axis):
        xp = _xp(x)
        self.axis = axis
        e = xp.exp(x - x.max(axis=axis, keepdims=True))  # array methods: no NumPy Python wrapper
        e /= e.sum(axis=axis, keepdims=True)
        return e

    def backward(self, g, ns):
        y = ns.out(self)
        gy = g * y
        return (gy - y * ns.sum(gy, axis=self.axis, keepdims=True),)


class LogSoftmaxBackward0(Op):
    saves_output = True

    def forward(self, x, axis):
        xp = _xp(x)
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        shifted -= xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        return shifted

    def backward(self, g, ns):
        y = ns.out(self)
        return (g - ns.exp(y) * ns.sum(g, axis=self.axis, keepdims=True),)


def _softmax_dim(ndim):
    # PyTorch's legacy implicit-dim rule
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_like(op, kernel, input, dim, dtype):
    """``op`` along ``dim`` after casting to ``dtype``; without a dtype only floating inputs are
    accepted (PyTorch's error names its ``kernel``)."""
    if dtype is not None:
        input = cast(input, D.as_dtype(dtype))
    elif input._data.dtype.kind not in "fc":
        raise NotImplementedError(f"\"{kernel}\" not implemented for '{_long_name(input.dtype)}'")
    if dim is None:
        dim = _softmax_dim(input.ndim)
    return op.apply(input, axis=_wrap_dim(dim, input.ndim))


def softmax(input, dim=None, dtype=None, _stacklevel=3):
    return _softmax_like(SoftmaxBackward0, "softmax_lastdim_kernel_impl", input, dim, dtype)


def log_softmax(input, dim=None, dtype=None, _stacklevel=3):
    return _softmax_like(LogSoftmaxBackward0, "log_softmax_lastdim_kernel_impl", input, dim, dtype)


class CumsumBackward0(Op):
    def forward(self, x, axis):
        self.axis = axis
        return _xp(x).cumsum(x, axis=axis, dtype=np.int64 if x.dtype.kind in "iub" else None)

    def backward(self, g, ns):
        return (ns.flip(ns.cumsum(ns.flip(g, self.axis), axis=self.axis), self.axis),)


def cumsum(input, dim, *, dtype=None):
    if dtype is not None:
        input = cast(input, D.as_dtype(dtype))
    return CumsumBackward0.apply(input, axis=_wrap_dim(dim, input.ndim))


class CumprodBackward0(Op):
    save_inputs = (0,)
    saves_output = True

    def forward(self, x, axis):
        self.axis = axis
        return _xp(x).cumprod(x, axis=axis)

    def backward(self, g, ns, x):
        out = ns.out(self)
        a = self.axis
        if not ns.graph and (x == 0).any():
            return (_cumprod_grad_with_zeros(ns.xp, g, x, a),)
        # without zeros: d out_j / d x_k = out_j / x_k for j >= k
        return (ns.flip(ns.cumsum(ns.flip(g * out, a), axis=a), a) / x,)


def _cumprod_grad_with_zeros(xp, g, x, axis):
    """cumprod's input gradient without dividing by x (which is 0 somewhere):
    dx_k = prod(x_i, i < k) * S_k with S_k = g_k + x_(k+1) * S_(k+1), scanned from the end."""
    xm, gm = xp.moveaxis(x, axis, -1), xp.moveaxis(g, axis, -1)
    n = xm.shape[-1]
    before = xp.ones_like(xm)
    before[..., 1:] = xp.cumprod(xm[..., :-1], axis=-1)
    s = xp.empty_like(before)
    acc = gm[..., n - 1]
    s[..., n - 1] = acc
    for k in range(n - 2, -1, -1):
        acc = gm[..., k] + xm[..., k + 1] * acc
        s[..., k] = acc
    return xp.moveaxis(before * s, -1, axis)


def cumprod(input, dim, *, dtype=None):
    if dtype is not None:
        input = cast(input, D.as_dtype(dtype))
    return CumprodBackward0.apply(input, axis=_wrap_dim(dim, input.ndim))


def all(input, dim=None, keepdim=False):
    xp = _xp(input._data)
    return Tensor._wrap(xp.asarray(xp.all(input._data, axis=_dims(dim, input.ndim), keepdims=keepdim)))


def any(input, dim=None, keepdim=False):
    xp = _xp(input._data)
    return Tensor._wrap(xp.asarray(xp.any(input._data, axis=_dims(dim, input.ndim), keepdims=keepdim)))


def count_nonzero(input, dim=None):
    xp = _xp(input._data)
    return Tensor._wrap(xp.asarray(xp.count_nonzero(input._data, axis=_dims(dim, input.ndim)), dtype=np.int64))


def median(input, dim=None, keepdim=False):
    """Lower median (PyTorch's), of all elements or with indices over ``dim``."""
    if dim is None:
        if input.numel() == 0:
            raise RuntimeError("median() input tensor cannot be empty")
        return MedianBackward0.apply(input)
    n = input.shape[_wrap_dim(dim, input.ndim)] if input.ndim else 1
    return kth_along("median", MedianBackward1, input, (n - 1) // 2, dim, keepdim)


def kth_along(name, cls, input, k, dim, keepdim):
    """(values, indices) of the k-th smallest (0-based) entries along ``dim``."""
    axis = _wrap_dim(dim, input.ndim)
    if input.ndim == 0:
        return return_types[name](input.clone(), Tensor._wrap(_xp(input._data).zeros((), np.int64)))
    node = cls()
    vals = node._run((input,), {"axis": axis, "keepdim": keepdim, "k": k})
    return return_types[name](vals, Tensor._wrap(node.indices.astype(np.int64, copy=False)))
