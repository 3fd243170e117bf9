"""Attaches ops to ``Tensor`` as methods and operators, plus PyTorch's in-place ``_`` variants.

In-place ops without autograd write straight into the tensor's array with NumPy ``out=`` (the
optimizer hot path: no temporaries). With autograd they compute the out-of-place result from a
snapshot of the old value and rebase the tensor's history onto it, as PyTorch does.
"""
from __future__ import annotations

import numpy as np

from . import _backend
from . import _dtype as D
from . import _functions as F
from .autograd.grad_mode import STATE
from .ops import index as I
from .ops import pointwise as P
from .ops import shape as S
from .ops._base import _as_array, record2
from .ops.pointwise import _is_scalar, _py_scalar, cast
from .tensor import Tensor

_LEGACY = {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long", "int32": "Int",
           "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}


# ---- in-place machinery ---------------------------------------------------------------------------
def _records(self, args):
    if not STATE.enabled:
        return False
    if self._requires_grad:
        return True
    for a in args:
        if isinstance(a, Tensor) and a._requires_grad:
            return True
    return False


def _write_in_place(self, fn, *args, **kwargs):
    """Runs NumPy's in-place ``fn``; a write NumPy refuses because the tensor is expanded (its
    broadcast memory is read-only) gets PyTorch's error instead of NumPy's."""
    try:
        fn(*args, **kwargs)
    except ValueError:
        I.check_no_internal_overlap(self)
        raise


def _check_store(self, res):
    rd, sd = res._data.dtype, self._data.dtype
    if rd != sd and not np.can_cast(rd, sd, casting="same_kind"):
        raise RuntimeError(f"result type {_LEGACY.get(D._FROM_NP[rd].name)} can't be cast to the desired output type {_LEGACY.get(D._FROM_NP[sd].name)}")
    if res._data.shape != self._data.shape:
        raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast shape {list(res.shape)}")


def _store(self, res):
    """Writes an out-of-place result back into ``self`` (same memory, so views see it)."""
    _check_store(self, res)
    self._data[...] = res._data


def _inplace_on_view(self, region, fn, args, kwargs):
    """An in-place op on a view, recorded on its base (PyTorch's CopySlices): the base's history gets
    ``base[region] = fn(base[region])`` and the view is re-derived from the base's new history."""
    cur = I.IndexBackward0.apply(I._HistoryHandle.of(self._base), index=region)
    res = fn(cur, *args, **kwargs)
    _check_store(self, res)
    if res._data.dtype != self._data.dtype:
        res = cast(res, self.dtype)
    I.write_through_view(self, region, region, res, I.CopySlices)
    return self


def _inplace_generic(self, fn, args, kwargs, overwrites=False):
    """``self = fn(self, *args)`` in place. ``overwrites``: the new values do not depend on the old
    ones (``zero_``, ``fill_``), which PyTorch allows on an expanded tensor too."""
    if _records(self, args):
        if not overwrites:
            I.check_no_internal_overlap(self)
        I._check_inplace_allowed(self)
        region = I.view_region(self)
        if region is not None:
            _inplace_on_view(self, region, fn, args, kwargs)
            self._vc[0] += 1
            return self
        snap = Tensor._wrap(self._data.copy())
        snap._requires_grad = self._requires_grad
        snap.grad_fn = self.grad_fn
        if self.grad_fn is None and self._requires_grad:
            snap._acc = self._grad_accumulator()
        res = fn(snap, *args, **kwargs)
        _store(self, res)
        if res.grad_fn is not None:
            if res._data.dtype != self._data.dtype:
                res = cast(res, self.dtype)
            self.grad_fn = res.grad_fn
            self._requires_grad = True
            I.refresh_views(self)
    else:
        res = fn(self, *args, **kwargs)
        _store(self, res)
    self._vc[0] += 1
    return self


def _make_inplace(fn):
    def method(self, *args, **kwargs):
        return _inplace_generic(self, fn, args, kwargs)
    method.__name__ = fn.__name__ + "_"
    method.__doc__ = f"In-place version of ``{fn.__name__}``."
    return method


def _ufunc_inplace(ufunc, fn, float_result=False):
    """Fast in-place arithmetic: ``ufunc(self, other, out=self)`` when nothing is recorded."""
    is_sub = ufunc is np.subtract

    def method(self, other, *, alpha=1):
        if _records(self, (other,)):
            return _inplace_generic(self, (lambda s, o: fn(s, o, alpha=alpha)) if alpha != 1 else fn, (other,), {})
        a = self._data
        if is_sub and (a.dtype.kind == "b" or isinstance(other, (bool, np.bool_)) or
                       (isinstance(other, Tensor) and other._data.dtype.kind == "b")):
            fn(self, other)  # raises PyTorch's error for subtraction with bools
        if float_result and a.dtype.kind not in "fc":
            raise RuntimeError(f"result type Float can't be cast to the desired output type {_LEGACY.get(self.dtype.name)}")
        if isinstance(other, Tensor):
            o = other._data
            if type(o) is not type(a):
                o = _other_on_device(self, other)
        elif _is_scalar(other):
            if D.scalar_dtype(other)._category > self.dtype._category:  # e.g. int_tensor.add_(1.5)
                raise RuntimeError(f"result type {_LEGACY.get(D.result_dtype((self, other)).name)} can't be cast to "
                                   f"the desired output type {_LEGACY.get(self.dtype.name)}")
            o = _py_scalar(other, self.dtype)
        else:
            o = _backend.like(np.asarray(other), a)
        if alpha != 1:
            o = o * alpha
        try:
            ufunc(a, o, out=a, casting="same_kind")
        except TypeError:  # NumPy's UFuncTypeError: the result cannot be cast to self's dtype
            rd = D.result_dtype((self, other))
            raise RuntimeError(f"result type {_LEGACY.get(rd.name)} can't be cast to the desired output type "
                               f"{_LEGACY.get(self.dtype.name)}") from None
        except ValueError:
            I.check_no_internal_overlap(self)  # NumPy: "output array is read-only" (an expanded tensor)
            from .ops.pointwise import _check_broadcast
            if isinstance(other, Tensor):
                _check_broadcast(self, other)
            shape = np.broadcast_shapes(a.shape, np.shape(o))
            raise RuntimeError(f"output with shape {list(a.shape)} doesn't match the broadcast shape {list(shape)}") from None
        self._vc[0] += 1
        return self
    method.__name__ = fn.__name__ + "_"
    return method


def _other_on_device(self, other):
    """The operand of an in-place op on ``self``'s device: a 0-d CPU tensor joins it, as in PyTorch."""
    if type(other._data) is np.ndarray and other._data.ndim == 0:
        return _backend.like(other._data, self._data)
    raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices, "
                       f"{self.device} and {other.device}!")


def zero_(self):
    """Fills with zeros in place."""
    if _records(self, ()):
        I._check_inplace_allowed(self)
        return _inplace_generic(self, lambda s: s * 0, (), {}, overwrites=True)
    self._data.fill(0)
    self._vc[0] += 1
    return self


def fill_(self, value):
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with {value.ndim} dimensions.")
        if _records(self, (value,)):
            return _inplace_generic(self, lambda s, v: s * 0 + v, (value,), {}, overwrites=True)
        value = value.item()
    if _records(self, ()):
        return _inplace_generic(self, lambda s: s * 0 + value, (), {}, overwrites=True)
    self._data.fill(value)
    self._vc[0] += 1
    return self


def copy_(self, src, non_blocking=False):
    """Copies ``src`` (broadcast, converted) into this tensor's memory."""
    if not isinstance(src, Tensor):
        src = F.tensor(src)
    if _records(self, (src,)):
        I._check_inplace_allowed(self)
        I.setitem(self, (Ellipsis,), src)  # refuses an expanded self (setitem's overlap check)
        return self
    from . import _backend
    sd = src._data
    if type(sd) is not type(self._data):
        sd = _backend.to_host(sd) if type(self._data) is np.ndarray else _backend.to_cuda(sd, _backend.device_index_of(self._data) or 0)
    try:
        self._data[...] = sd
    except ValueError:
        I.check_no_internal_overlap(self)
        raise RuntimeError(f"The size of tensor a ({self.shape[-1] if self.ndim else 1}) must match the size of tensor b ({src.shape[-1] if src.ndim else 1}) at non-singleton dimension {self.ndim - 1}") from None
    self._vc[0] += 1
    return self


def addcmul_(self, tensor1, tensor2, *, value=1):
    if _records(self, (tensor1, tensor2)):
        return _inplace_generic(self, addcmul, (tensor1, tensor2), {"value": value})
    a = self._data
    prod = tensor1._data * tensor2._data
    if value != 1:
        prod *= value
    a += prod
    self._vc[0] += 1
    return self


def addcdiv_(self, tensor1, tensor2, *, value=1):
    if _records(self, (tensor1, tensor2)):
        return _inplace_generic(self, addcdiv, (tensor1, tensor2), {"value": value})
    q = tensor1._data / tensor2._data
    if value != 1:
        q *= value
    self._data += q
    self._vc[0] += 1
    return self


def addcmul(input, tensor1, tensor2, *, value=1):
    return input + tensor1 * tensor2 * value if value != 1 else input + tensor1 * tensor2


def addcdiv(input, tensor1, tensor2, *, value=1):
    return input + tensor1 / tensor2 * value if value != 1 else input + tensor1 / tensor2


def lerp_(self, end, weight):
    if _records(self, (end,)):
        return _inplace_generic(self, F.lerp, (end, weight), {})
    self._data += (end._data - self._data) * weight
    self._vc[0] += 1
    return self


def _unary_inplace(fn, ufunc_name):
    def method(self):
        if _records(self, ()):
            return _inplace_generic(self, fn, (), {})
        if self._data.dtype.kind not in "fc" and ufunc_name not in ("negative", "absolute", "sign", "floor", "ceil", "trunc", "rint"):
            raise RuntimeError(f"result type Float can't be cast to the desired output type {_LEGACY.get(self.dtype.name)}")
        _write_in_place(self, getattr(np, ufunc_name), self._data, out=self._data)
        self._vc[0] += 1
        return self
    method.__name__ = fn.__name__ + "_"
    return method


def clamp_(self, min=None, max=None):
    if _records(self, (min, max)):
        return _inplace_generic(self, F.clamp, (min, max), {})
    lo = min._data if isinstance(min, Tensor) else min
    hi = max._data if isinstance(max, Tensor) else max
    if lo is None and hi is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    _write_in_place(self, np.clip, self._data, lo, hi, out=self._data)
    self._vc[0] += 1
    return self


def relu_(self):
    if _records(self, ()):
        return _inplace_generic(self, F.relu, (), {})
    _write_in_place(self, np.maximum, self._data, 0, out=self._data)
    self._vc[0] += 1
    return self


def sigmoid_(self):
    return _inplace_generic(self, F.sigmoid, (), {})


def masked_fill_(self, mask, value):
    if _records(self, (value,)):
        return _inplace_generic(self, F.masked_fill, (mask, value), {})
    v = value.item() if isinstance(value, Tensor) else value
    self._data[np.broadcast_to(mask._data, self._data.shape)] = v
    self._vc[0] += 1
    return self


def index_fill_(self, dim, index, value):
    return _inplace_generic(self, F.index_fill, (dim, index, value), {})


def scatter_(self, dim, index, src=None, value=None, *, reduce=None):
    return _inplace_generic(self, F.scatter, (dim, index, src), {"value": value, "reduce": reduce})


def scatter_add_(self, dim, index, src):
    return _inplace_generic(self, F.scatter_add, (dim, index, src), {})


def index_add_(self, dim, index, source, *, alpha=1):
    return _inplace_generic(self, F.index_add, (dim, index, source), {"alpha": alpha})


def index_put_(self, indices, values, accumulate=False):
    if accumulate:
        return _inplace_generic(self, F.index_put, (indices, values, True), {})
    I.setitem(self, tuple(indices), values)
    return self


# ---- random in-place fills -----------------------------------------------------------------------
def _fill(self, values):
    """Writes host-drawn ``values`` into ``self`` (draws come from the host stream on every device, so a
    seed gives the same numbers on CPU and GPU; they travel in the tensor's dtype).

    The draws land in memory order, as PyTorch's kernels visit a strided tensor (a transposed view
    gets the numbers its contiguous base would get)."""
    values = np.asarray(values)
    order = _memory_order(self._data)
    if order is not None and values.shape == self._data.shape:
        shape = self._data.shape
        values = values.reshape([shape[i] for i in order]).transpose(np.argsort(order))
    if type(self._data) is np.ndarray:
        self._data[...] = values
    else:
        self._data[...] = _backend.like(np.asarray(values).astype(self._data.dtype, copy=False), self._data)


def _memory_order(arr):
    """The axes from outermost to innermost in memory, or None when that is the logical order."""
    strides = [abs(st) for st in arr.strides]
    order = sorted(range(arr.ndim), key=lambda i: -strides[i])  # stable: ties keep the logical order
    return None if order == list(range(arr.ndim)) else order


def _is_contiguous(self):
    arr = self._data
    return arr.flags.c_contiguous if hasattr(arr, "flags") else True


def uniform_(self, a=0.0, b=1.0, *, generator=None):
    from . import _random_recipes as recipes
    from .random import generator_or_default
    if a > b:
        raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found from={a} > to={b}")
    _fill(self, recipes.uniform(generator_or_default(generator), self._data.shape, _draw_dtype(self), a, b))
    self._vc[0] += 1
    return self


def normal_(self, mean=0.0, std=1.0, *, generator=None):
    from . import _random_recipes as recipes
    from .random import generator_or_default
    if std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
    _fill(self, recipes.normal(generator_or_default(generator), self._data.shape, _draw_dtype(self), mean, std,
                               contiguous=_is_contiguous(self)))
    self._vc[0] += 1
    return self


def _draw_dtype(self):
    """The dtype whose recipe draws a float tensor's values (float16 has its own; others use float32's)."""
    dt = self._data.dtype
    return dt.type if dt in (np.float16, np.float32, np.float64) else np.float32


def bernoulli_(self, p=0.5, *, generator=None):
    from . import _random_recipes as recipes
    from .random import generator_or_default
    g = generator_or_default(generator)
    if isinstance(p, Tensor):
        probs = np.broadcast_to(np.asarray(_backend.to_host(p._data)), self._data.shape)
        _fill(self, recipes.bernoulli_tensor(g, np.ascontiguousarray(probs)))
    else:
        if not 0 <= p <= 1:
            raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={p}")
        _fill(self, recipes.bernoulli_scalar(g, self._data.shape, float(p)))
    self._vc[0] += 1
    return self


def exponential_(self, lambd=1.0, *, generator=None):
    from .random import rng
    _fill(self, rng(generator).exponential(1.0 / lambd, self._data.shape))
    self._vc[0] += 1
    return self


def random_(self, from_=0, to=None, *, generator=None):
    """Integers on [from_, to); ``random_(to)`` is [0, to); ``random_()`` spans the dtype (PyTorch's draws)."""
    from . import _random_recipes as recipes
    from .random import generator_or_default
    g = generator_or_default(generator)
    if to is None and from_ == 0:
        _fill(self, recipes.full_range_random(g, self._data.shape, self._data.dtype))
    else:
        if to is None:
            from_, to = 0, from_
        if from_ >= to:
            raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={from_} >= to={to}")
        _fill(self, recipes.randint(g, int(from_), int(to), self._data.shape, self._data.dtype))
    self._vc[0] += 1
    return self


def geometric_(self, p, *, generator=None):
    from .random import rng
    _fill(self, rng(generator).geometric(p, self._data.shape))
    self._vc[0] += 1
    return self


# ---- methods with Tensor-specific signatures --------------------------------------------------------
def _own(self, device):
    """``new_*`` default to the source tensor's device, as PyTorch's do (None keeps the host)."""
    if device is not None:
        return device
    return self.device if self.is_cuda else None


def _size_args(args):
    return args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args


def new_tensor(self, data, *, dtype=None, device=None, requires_grad=False):
    return F.tensor(data, dtype=dtype or self.dtype, device=_own(self, device), requires_grad=requires_grad)


def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
    return F.zeros(*_size_args(size), dtype=dtype or self.dtype, device=_own(self, device), requires_grad=requires_grad)


def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
    return F.ones(*_size_args(size), dtype=dtype or self.dtype, device=_own(self, device), requires_grad=requires_grad)


def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
    return F.empty(*_size_args(size), dtype=dtype or self.dtype, device=_own(self, device), requires_grad=requires_grad)


def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
    return F.full(size, fill_value, dtype=dtype or self.dtype, device=_own(self, device), requires_grad=requires_grad)


def _sum(self, dim=None, keepdim=False, *, dtype=None):
    return F.sum(self, dim, keepdim, dtype=dtype)


def _dim_or_kw(fn):
    def method(self, dim=None, keepdim=False, **kw):
        return fn(self, dim, keepdim, **kw)
    return method


def _flip(self, *dims):
    return S.flip(self, dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims)


def _view_as(self, other):
    return S.view(self, tuple(other.shape))


def _reshape_as(self, other):
    return S.reshape(self, tuple(other.shape))


def _getitem(self, index):
    return I.getitem(self, index)


def _setitem(self, index, value):
    I.setitem(self, index, value)


def _cpu_only(self, name):
    if self.is_cuda:
        raise TypeError(f"{name} is only implemented on CPU tensors")


def _apply_(self, fn):
    _cpu_only(self, "apply_")
    flat = self._data.reshape(-1)
    for i in range(flat.size):
        flat[i] = fn(flat[i].item())
    self._vc[0] += 1
    return self


def _map_(self, other, fn):
    _cpu_only(self, "map_")
    a = self._data
    b = np.broadcast_to(other._data, a.shape)
    it = np.nditer([a, b], op_flags=[["readwrite"], ["readonly"]])
    for x, y in it:
        x[...] = fn(x.item(), y.item())
    self._vc[0] += 1
    return self


def _rpow(self, other):
    return F.pow(other, self)


def _rtruediv(self, other):
    return F.div(other, self)


def _rfloordiv(self, other):
    return F.floor_divide(F.tensor(other, dtype=self.dtype) if _is_scalar(other) else other, self)


def _rmod(self, other):
    return F.remainder(F.tensor(other, dtype=self.dtype), self)


def _rmatmul(self, other):
    return F.matmul(other, self)


def _and(self, other):
    return F.bitwise_and(self, other)


def _or(self, other):
    return F.bitwise_or(self, other)


def _xor(self, other):
    return F.bitwise_xor(self, other)


def _invert(self):
    if self.dtype is D.bool:
        return F.logical_not(self)
    return F.bitwise_not(self)


def _inplace_bitwise(fn):
    def method(self, other):
        res = fn(self, other)
        _store(self, res)
        self._vc[0] += 1
        return self
    return method


def _max(self, dim=None, keepdim=False):
    return F.max(self, dim, keepdim)


def _min(self, dim=None, keepdim=False):
    return F.min(self, dim, keepdim)


def _split(self, split_size, dim=0):
    return S.split(self, split_size, dim)


def _norm(self, p="fro", dim=None, keepdim=False, dtype=None):
    return F.norm(self, p, dim, keepdim, dtype)


def _softmax(self, dim, dtype=None):
    return F.softmax(self, dim, dtype)


def _log_softmax(self, dim, dtype=None):
    return F.log_softmax(self, dim, dtype)


def _mean(self, dim=None, keepdim=False, *, dtype=None):
    return F.mean(self, dim, keepdim, dtype=dtype)


def _numel_tuple(self):
    return self.numel()


_ndarray = np.ndarray


def _fast_binary(op_cls, slow):
    """Operator for ``tensor <op> tensor``: same dtype, shape and array type go straight to the op's
    forward and the graph (the common case in model code, written flat because it runs for every
    binary op); anything else takes the general promoting path ``slow``."""
    forward = op_cls.forward
    float_only = op_cls.float_result  # int / int promotes to float: not a same-dtype case

    def method(self, other):
        if isinstance(other, Tensor):
            sd, od = self._data, other._data
            # host arrays only (GPU operands need the device check); bool tensors take the general
            # path for PyTorch's bool-subtraction error
            if type(sd) is _ndarray and type(od) is _ndarray and sd.shape == od.shape:
                dt = sd.dtype
                if dt is od.dtype and (dt.kind == "f" if float_only else dt is not _BOOL):
                    node = op_cls()
                    out = forward(node, sd, od)
                    if (self._requires_grad or other._requires_grad) and STATE.enabled:
                        return record2(node, self, other, out)
                    return _wrap(out if type(out) is _ndarray else _as_array(out))
        return slow(self, other)
    method.__name__ = slow.__name__
    return method


_ndarray = np.ndarray
_BOOL = np.dtype(bool)
_wrap = Tensor._wrap


_METHODS = {
    # arithmetic
    "add": F.add, "sub": F.sub, "subtract": F.sub, "mul": F.mul, "multiply": F.mul, "div": F.div,
    "divide": F.div, "true_divide": F.div, "floor_divide": F.floor_divide, "remainder": F.remainder,
    "fmod": F.fmod, "pow": F.pow, "neg": F.neg, "negative": F.neg, "abs": F.abs, "absolute": F.abs,
    "exp": F.exp, "exp2": F.exp2, "expm1": F.expm1, "log": F.log, "log2": F.log2, "log10": F.log10, "log1p": F.log1p,
    "sqrt": F.sqrt, "rsqrt": F.rsqrt, "sin": F.sin, "cos": F.cos, "tan": F.tan, "tanh": F.tanh, "sinh": F.sinh,
    "cosh": F.cosh, "asin": F.asin, "acos": F.acos, "atan": F.atan, "arcsin": F.asin, "arccos": F.acos,
    "arctan": F.atan, "atan2": F.atan2, "sigmoid": F.sigmoid, "relu": F.relu, "sign": F.sign, "sgn": F.sgn,
    "floor": F.floor, "ceil": F.ceil, "round": F.round, "trunc": F.trunc, "frac": F.frac,
    "reciprocal": F.reciprocal, "square": F.square, "erf": F.erf, "clamp": F.clamp, "clip": F.clamp,
    "clamp_min": F.clamp_min, "clamp_max": F.clamp_max, "maximum": F.maximum, "minimum": F.minimum,
    "lerp": F.lerp, "where": lambda self, condition, other: F.where(condition, self, other),
    "addcmul": addcmul, "addcdiv": addcdiv, "rsub": F.rsub,
    # comparison / logic
    "eq": F.eq, "ne": F.ne, "lt": F.lt, "le": F.le, "gt": F.gt, "ge": F.ge, "equal": F.equal,
    "greater": F.gt, "less": F.lt, "greater_equal": F.ge, "less_equal": F.le, "not_equal": F.ne,
    "allclose": F.allclose, "isclose": F.isclose, "isnan": F.isnan, "isinf": F.isinf, "isfinite": F.isfinite,
    "logical_and": F.logical_and, "logical_or": F.logical_or, "logical_xor": F.logical_xor,
    "logical_not": F.logical_not, "bitwise_and": F.bitwise_and, "bitwise_or": F.bitwise_or,
    "bitwise_xor": F.bitwise_xor, "bitwise_not": F.bitwise_not, "signbit": F.signbit,
    # reductions
    "sum": _sum, "mean": _mean, "prod": F.prod, "max": _max, "min": _min, "amax": F.amax, "amin": F.amin,
    "aminmax": F.aminmax, "argmax": F.argmax, "argmin": F.argmin, "var": F.var, "std": F.std, "norm": _norm,
    "logsumexp": F.logsumexp, "all": F.all, "any": F.any, "cumsum": F.cumsum, "cumprod": F.cumprod,
    "softmax": _softmax, "log_softmax": _log_softmax, "count_nonzero": F.count_nonzero, "median": F.median,
    # linear algebra
    "matmul": F.matmul, "mm": F.mm, "bmm": F.bmm, "mv": F.mv, "dot": F.dot, "inner": F.inner, "outer": F.outer,
    "ger": F.outer, "addmm": F.addmm, "baddbmm": F.baddbmm, "addmv": F.addmv,
    # shape
    "view": S.view, "view_as": _view_as, "reshape": S.reshape, "reshape_as": _reshape_as, "permute": S.permute,
    "transpose": S.transpose, "swapaxes": S.transpose, "swapdims": S.transpose, "t": S.t,
    "flatten": S.flatten, "unflatten": S.unflatten, "squeeze": S.squeeze, "unsqueeze": S.unsqueeze,
    "expand": S.expand, "expand_as": S.expand_as, "broadcast_to": S.broadcast_to, "repeat": S.repeat, "tile": S.tile,
    "split": _split, "chunk": S.chunk, "tensor_split": S.tensor_split, "unbind": S.unbind, "flip": _flip,
    "fliplr": S.fliplr, "flipud": S.flipud, "roll": S.roll, "tril": S.tril, "triu": S.triu,
    "narrow": S.narrow, "select": S.select, "movedim": S.movedim, "moveaxis": S.movedim,
    "clone": S.clone, "contiguous": S.contiguous, "diagonal": S.diagonal, "diag": S.diag,
    # indexing
    "gather": F.gather, "scatter": F.scatter, "scatter_add": F.scatter_add, "index_select": F.index_select,
    "masked_fill": F.masked_fill, "masked_select": F.masked_select, "masked_scatter": F.masked_scatter,
    "topk": F.topk, "sort": F.sort, "argsort": F.argsort, "nonzero": F.nonzero, "take_along_dim": F.take_along_dim,
    "index_add": F.index_add, "index_fill": F.index_fill, "index_put": F.index_put, "kthvalue": F.kthvalue,
    "unique": F.unique, "bincount": F.bincount, "argwhere": F.argwhere,
    # creation helpers
    "new_tensor": new_tensor, "new_zeros": new_zeros, "new_ones": new_ones, "new_empty": new_empty,
    "new_full": new_full,
    # in place
    "zero_": zero_, "fill_": fill_, "copy_": copy_, "addcmul_": addcmul_, "addcdiv_": addcdiv_, "lerp_": lerp_,
    "clamp_": clamp_, "clip_": clamp_, "relu_": relu_, "sigmoid_": sigmoid_, "masked_fill_": masked_fill_,
    "index_fill_": index_fill_, "scatter_": scatter_, "scatter_add_": scatter_add_, "index_add_": index_add_,
    "index_put_": index_put_, "uniform_": uniform_, "normal_": normal_, "bernoulli_": bernoulli_,
    "exponential_": exponential_, "random_": random_, "geometric_": geometric_, "apply_": _apply_, "map_": _map_,
    # operators
    "__getitem__": _getitem, "__setitem__": _setitem,
    "__add__": _fast_binary(P.AddBackward0, F.add), "__radd__": F.add, "__sub__": _fast_binary(P.SubBackward0, F.sub), "__rsub__": lambda self, other: F.sub(other, self),
    "__mul__": _fast_binary(P.MulBackward0, F.mul), "__rmul__": F.mul, "__truediv__": _fast_binary(P.DivBackward0, F.div), "__rtruediv__": _rtruediv,
    "__floordiv__": F.floor_divide, "__rfloordiv__": _rfloordiv, "__mod__": F.remainder, "__rmod__": _rmod,
    "__pow__": F.pow, "__rpow__": _rpow, "__matmul__": F.matmul, "__rmatmul__": _rmatmul,
    "__neg__": F.neg, "__pos__": lambda self: self, "__abs__": F.abs,
    "__eq__": F.eq, "__ne__": F.ne, "__lt__": F.lt, "__le__": F.le, "__gt__": F.gt, "__ge__": F.ge,
    "__and__": _and, "__rand__": _and, "__or__": _or, "__ror__": _or, "__xor__": _xor, "__rxor__": _xor,
    "__invert__": _invert,
}

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

for _name, _uf, _fn, _flt in (("add_", np.add, F.add, False), ("sub_", np.subtract, F.sub, False),
                              ("mul_", np.multiply, F.mul, False), ("div_", np.true_divide, F.div, True)):
    setattr(Tensor, _name, _ufunc_inplace(_uf, _fn, _flt))
Tensor.subtract_ = Tensor.sub_
Tensor.multiply_ = Tensor.mul_
Tensor.divide_ = Tensor.true_divide_ = Tensor.div_

for _name, _ufname in (("neg", "negative"), ("exp", "exp"), ("log", "log"), ("sqrt", "sqrt"), ("abs", "absolute"),
                       ("sin", "sin"), ("cos", "cos"), ("tanh", "tanh"), ("floor", "floor"), ("ceil", "ceil"),
                       ("trunc", "trunc"), ("sign", "sign"), ("log1p", "log1p"), ("expm1", "expm1"),
                       ("reciprocal", "reciprocal"), ("square", "square")):
    setattr(Tensor, _name + "_", _unary_inplace(getattr(F, _name), _ufname))
Tensor.negative_ = Tensor.neg_
Tensor.absolute_ = Tensor.abs_
Tensor.fix_ = Tensor.trunc_
Tensor.sgn_ = Tensor.sign_

def _shape_inplace(fn):
    """``t_``, ``transpose_``, ``squeeze_``, ``unsqueeze_``: the tensor becomes a view of its own memory."""

    def method(self, *args):
        if _records(self, ()):
            I._check_inplace_allowed(self)
            res = fn(I._HistoryHandle.of(self), *args)
            self.grad_fn = res.grad_fn
        else:
            res = fn(self, *args)
        self._data = res._data
        self._vc[0] += 1
        return self
    method.__name__ = fn.__name__ + "_"
    return method


for _name in ("t", "transpose", "squeeze", "unsqueeze"):
    setattr(Tensor, _name + "_", _shape_inplace(_METHODS[_name]))
Tensor.swapaxes_ = Tensor.swapdims_ = Tensor.transpose_

for _name in ("pow", "remainder", "fmod", "floor_divide", "rsqrt", "round", "tril", "triu", "clamp_min", "clamp_max",
              "atan2", "frac", "erf", "tan", "exp2", "log2", "log10", "asin", "acos", "atan", "sinh", "cosh", "maximum",
              "minimum", "logical_not", "logical_and", "logical_or", "logical_xor", "eq", "ne", "lt", "le", "gt", "ge",
              "cumsum", "cumprod", "addmm", "baddbmm", "addmv", "bitwise_not", "masked_scatter"):
    if not hasattr(Tensor, _name + "_"):
        setattr(Tensor, _name + "_", _make_inplace(_METHODS[_name]))

Tensor.arcsin_, Tensor.arccos_, Tensor.arctan_, Tensor.arctan2_ = Tensor.asin_, Tensor.acos_, Tensor.atan_, Tensor.atan2_
Tensor.greater_, Tensor.greater_equal_, Tensor.less_, Tensor.less_equal_, Tensor.not_equal_ = (
    Tensor.gt_, Tensor.ge_, Tensor.lt_, Tensor.le_, Tensor.ne_)

Tensor.__iadd__ = lambda self, other: Tensor.add_(self, other)
Tensor.__isub__ = lambda self, other: Tensor.sub_(self, other)
Tensor.__imul__ = lambda self, other: Tensor.mul_(self, other)
Tensor.__itruediv__ = lambda self, other: Tensor.div_(self, other)
Tensor.__ipow__ = lambda self, other: Tensor.pow_(self, other)
Tensor.__ifloordiv__ = lambda self, other: Tensor.floor_divide_(self, other)
Tensor.__imod__ = lambda self, other: Tensor.remainder_(self, other)
Tensor.__iand__ = _inplace_bitwise(_and)
Tensor.__ior__ = _inplace_bitwise(_or)
Tensor.__ixor__ = _inplace_bitwise(_xor)
Tensor.bitwise_and_ = Tensor.__iand__
Tensor.bitwise_or_ = Tensor.__ior__
Tensor.bitwise_xor_ = Tensor.__ixor__
Tensor.T = property(S.T)
Tensor.mT = property(S.mT)
Tensor.H = property(S.T)
Tensor.mH = property(S.mT)
