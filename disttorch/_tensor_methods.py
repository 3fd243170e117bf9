"""Attaches ops to ``Tensor`` as methods and operators, plus PyTorch's in-place ``_`` variants.

Which methods and in-place variants exist comes from the op table (``ops/registry.py``); this
module holds the adapters and the fast in-place paths the table names. The autograd side of an
in-place write (version counters, leaf checks, rebasing views) is ``autograd/inplace.py``.

In-place ops without autograd write straight into the tensor's array with NumPy ``out=`` (the
optimizer hot path: no temporaries). With autograd they compute the out-of-place result from a
snapshot of the old value and rebase the tensor's history onto it, as PyTorch does; ``relu_``,
whose backward needs only its output, writes in place under autograd too (``_relu_in_place_recorded``).
"""
from __future__ import annotations

import numpy as np

from . import _backend
from . import _dtype as D
from . import _intra_op
from . import _torch_api as T
from .ops import registry
from .autograd.grad_mode import STATE
from .autograd.inplace import (apply_inplace, check_inplace_allowed, check_no_internal_overlap,
                                make_inplace, records, refresh_views, shape_inplace, store, write_in_place)
from .ops import index as I
from .ops import pointwise as P
from .ops import shape as S
from .ops._base import _as_array, record2
from .ops.pointwise import _is_scalar, _py_scalar
from .tensor import Tensor

def _ufunc_inplace(ufunc, fn, float_result=False):
    """Fast in-place arithmetic: ``ufunc(self, other, out=self)`` when nothing is recorded."""
    is_sub = ufunc is np.subtract

    def method(self, other, *, alpha=1):
        if records(self, (other,)):
            return apply_inplace(self, (lambda s, o: fn(s, o, alpha=alpha)) if alpha != 1 else fn, (other,), {})
        a = self._data
        if is_sub and (a.dtype.kind == "b" or isinstance(other, (bool, np.bool_)) or
                       (isinstance(other, Tensor) and other._data.dtype.kind == "b")):
            fn(self, other)  # raises PyTorch's error for subtraction with bools
        if float_result and a.dtype.kind not in "fc":
            raise RuntimeError(f"result type Float can't be cast to the desired output type {D.LEGACY_NAMES.get(self.dtype.name)}")
        if isinstance(other, Tensor):
            o = other._data
            if type(o) is not type(a):
                o = _other_on_device(self, other)
        elif _is_scalar(other):
            if D.scalar_dtype(other)._category > self.dtype._category:  # e.g. int_tensor.add_(1.5)
                raise RuntimeError(f"result type {D.LEGACY_NAMES.get(D.result_dtype((self, other)).name)} can't be cast to "
                                   f"the desired output type {D.LEGACY_NAMES.get(self.dtype.name)}")
            o = _py_scalar(other, self.dtype)
        else:
            o = _backend.like(np.asarray(other), a)
        if alpha != 1:
            o = o * alpha
        try:
            ufunc(a, o, out=a, casting="same_kind")
        except TypeError:  # NumPy's UFuncTypeError: the result cannot be cast to self's dtype
            rd = D.result_dtype((self, other))
            raise RuntimeError(f"result type {D.LEGACY_NAMES.get(rd.name)} can't be cast to the desired output type "
                               f"{D.LEGACY_NAMES.get(self.dtype.name)}") from None
        except ValueError:
            check_no_internal_overlap(self)  # NumPy: "output array is read-only" (an expanded tensor)
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
    if records(self, ()):
        check_inplace_allowed(self)
        return apply_inplace(self, lambda s: s * 0, (), {}, overwrites=True)
    self._data.fill(0)
    self._vc[0] += 1
    return self


def fill_(self, value):
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with {value.ndim} dimensions.")
        if records(self, (value,)):
            return apply_inplace(self, lambda s, v: s * 0 + v, (value,), {}, overwrites=True)
        value = value.item()
    if records(self, ()):
        return apply_inplace(self, lambda s: s * 0 + value, (), {}, overwrites=True)
    self._data.fill(value)
    self._vc[0] += 1
    return self


def copy_(self, src, non_blocking=False):
    """Copies ``src`` (broadcast, converted) into this tensor's memory."""
    if not isinstance(src, Tensor):
        src = T.tensor(src)
    if records(self, (src,)):
        check_inplace_allowed(self)
        I.setitem(self, (Ellipsis,), src)  # refuses an expanded self (setitem's overlap check)
        return self
    from . import _backend
    sd = src._data
    if type(sd) is not type(self._data):
        sd = _backend.to_host(sd) if type(self._data) is np.ndarray else _backend.to_cuda(sd, _backend.device_index_of(self._data) or 0)
    try:
        self._data[...] = sd
    except ValueError:
        check_no_internal_overlap(self)
        raise RuntimeError(f"The size of tensor a ({self.shape[-1] if self.ndim else 1}) must match the size of tensor b ({src.shape[-1] if src.ndim else 1}) at non-singleton dimension {self.ndim - 1}") from None
    self._vc[0] += 1
    return self


def addcmul_(self, tensor1, tensor2, *, value=1):
    if records(self, (tensor1, tensor2)):
        return apply_inplace(self, T.addcmul, (tensor1, tensor2), {"value": value})
    a = self._data
    prod = tensor1._data * tensor2._data
    if value != 1:
        prod *= value
    a += prod
    self._vc[0] += 1
    return self


def addcdiv_(self, tensor1, tensor2, *, value=1):
    if records(self, (tensor1, tensor2)):
        return apply_inplace(self, T.addcdiv, (tensor1, tensor2), {"value": value})
    q = tensor1._data / tensor2._data
    if value != 1:
        q *= value
    self._data += q
    self._vc[0] += 1
    return self


def lerp_(self, end, weight):
    if records(self, (end,)):
        return apply_inplace(self, T.lerp, (end, weight), {})
    self._data += (end._data - self._data) * weight
    self._vc[0] += 1
    return self


def _unary_inplace(fn, ufunc_name):
    def method(self):
        if records(self, ()):
            return apply_inplace(self, fn, (), {})
        if self._data.dtype.kind not in "fc" and ufunc_name not in ("negative", "absolute", "sign", "floor", "ceil", "trunc", "rint"):
            raise RuntimeError(f"result type Float can't be cast to the desired output type {D.LEGACY_NAMES.get(self.dtype.name)}")
        write_in_place(self, getattr(np, ufunc_name), self._data, out=self._data)
        self._vc[0] += 1
        return self
    method.__name__ = fn.__name__ + "_"
    return method


def clamp_(self, min=None, max=None):
    if records(self, (min, max)):
        return apply_inplace(self, T.clamp, (min, max), {})
    lo = min._data if isinstance(min, Tensor) else min
    hi = max._data if isinstance(max, Tensor) else max
    if lo is None and hi is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    write_in_place(self, np.clip, self._data, lo, hi, out=self._data)
    self._vc[0] += 1
    return self


def relu_(self):
    if records(self, ()):
        if self._base is None and type(self._data) is np.ndarray and self._data.dtype.kind == "f":
            return _relu_in_place_recorded(self)
        return apply_inplace(self, T.relu, (), {})
    write_in_place(self, np.maximum, self._data, 0, out=self._data)
    self._vc[0] += 1
    return self


def _relu_in_place_recorded(self):
    """``relu_`` under autograd, written into the tensor's own memory (the ``nn.ReLU(inplace=True)``
    after every batch norm of a ResNet): no snapshot of the old value, no temporary result, since
    ReLU's backward needs only its output. The node saves that output at the version the write
    leaves, so a later in-place change of the tensor raises PyTorch's error at backward."""
    check_no_internal_overlap(self)
    check_inplace_allowed(self)
    node = P.ReluBackward0()
    node.needs_input_grad = (True,)
    node.next_functions = ((self.grad_fn or self._grad_accumulator(), 0),)
    write_in_place(self, _intra_op.relu_into, self._data)
    self._vc[0] += 1
    node.saved, node._saved_versions = (), ()
    node.out, node._out_vc, node._out_version = self._data, self._vc, self._vc[0]
    self.grad_fn = node
    self._requires_grad = True
    if self._views:
        refresh_views(self)
    return self


def sigmoid_(self):
    return apply_inplace(self, T.sigmoid, (), {})


def masked_fill_(self, mask, value):
    if records(self, (value,)):
        return apply_inplace(self, T.masked_fill, (mask, value), {})
    v = value.item() if isinstance(value, Tensor) else value
    self._data[np.broadcast_to(mask._data, self._data.shape)] = v
    self._vc[0] += 1
    return self


def index_fill_(self, dim, index, value):
    return apply_inplace(self, T.index_fill, (dim, index, value), {})


def scatter_(self, dim, index, src=None, value=None, *, reduce=None):
    return apply_inplace(self, T.scatter, (dim, index, src), {"value": value, "reduce": reduce})


def scatter_add_(self, dim, index, src):
    return apply_inplace(self, T.scatter_add, (dim, index, src), {})


def index_add_(self, dim, index, source, *, alpha=1):
    return apply_inplace(self, T.index_add, (dim, index, source), {"alpha": alpha})


def index_put_(self, indices, values, accumulate=False):
    if accumulate:
        return apply_inplace(self, T.index_put, (indices, values, True), {})
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
    from . import _random_recipes as recipes
    from .random import generator_or_default
    if not lambd > 0:
        raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={lambd}")
    _fill(self, recipes.exponential(generator_or_default(generator), self._data.shape, _draw_dtype(self), lambd))
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
    from . import _random_recipes as recipes
    from .random import generator_or_default
    if not 0 < p < 1:
        raise RuntimeError(f"geometric_ expects p to be in (0, 1), but got p={p}")
    _fill(self, recipes.geometric(generator_or_default(generator), self._data.shape, self._data.dtype, p))
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
    return T.tensor(data, dtype=dtype or self.dtype, device=_own(self, device), requires_grad=requires_grad)


def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
    return T.zeros(*_size_args(size), dtype=dtype or self.dtype, device=_own(self, device), requires_grad=requires_grad)


def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
    return T.ones(*_size_args(size), dtype=dtype or self.dtype, device=_own(self, device), requires_grad=requires_grad)


def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
    return T.empty(*_size_args(size), dtype=dtype or self.dtype, device=_own(self, device), requires_grad=requires_grad)


def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
    return T.full(size, fill_value, dtype=dtype or self.dtype, device=_own(self, device), requires_grad=requires_grad)


def _sum(self, dim=None, keepdim=False, *, dtype=None):
    return T.sum(self, dim, keepdim, dtype=dtype)


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
    return T.pow(other, self)


def _rtruediv(self, other):
    return T.div(other, self)


def _rfloordiv(self, other):
    return T.floor_divide(T.tensor(other, dtype=self.dtype) if _is_scalar(other) else other, self)


def _rmod(self, other):
    return T.remainder(T.tensor(other, dtype=self.dtype), self)


def _rmatmul(self, other):
    return T.matmul(other, self)


def _and(self, other):
    return T.bitwise_and(self, other)


def _or(self, other):
    return T.bitwise_or(self, other)


def _xor(self, other):
    return T.bitwise_xor(self, other)


def _invert(self):
    if self.dtype is D.bool:
        return T.logical_not(self)
    return T.bitwise_not(self)


def _inplace_bitwise(fn):
    def method(self, other):
        res = fn(self, other)
        store(self, res)
        self._vc[0] += 1
        return self
    return method


def _max(self, dim=None, keepdim=False):
    return T.max(self, dim, keepdim)


def _min(self, dim=None, keepdim=False):
    return T.min(self, dim, keepdim)


def _split(self, split_size, dim=0):
    return S.split(self, split_size, dim)


def _norm(self, p="fro", dim=None, keepdim=False, dtype=None):
    return T.norm(self, p, dim, keepdim, dtype)


def _softmax(self, dim, dtype=None):
    return T.softmax(self, dim, dtype)


def _log_softmax(self, dim, dtype=None):
    return T.log_softmax(self, dim, dtype)


def _mean(self, dim=None, keepdim=False, *, dtype=None):
    return T.mean(self, dim, keepdim, dtype=dtype)


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


def _where(self, condition, other):
    return T.where(condition, self, other)


# ---- building Tensor's methods from the op table (disttorch/ops/registry.py) -------------------------
def _inplace_variant(decl, method):
    """``Tensor.<name>_`` for one op row, by the row's ``inplace`` kind."""
    kind, _, ufunc_name = decl.inplace.partition(":")
    if kind in ("ufunc", "ufunc_float"):
        return _ufunc_inplace(getattr(np, ufunc_name), method, kind == "ufunc_float")
    if kind == "unary":
        return _unary_inplace(method, ufunc_name)
    if kind == "shape":
        return shape_inplace(method)
    if kind == "bitwise":
        return _inplace_bitwise(method)
    if kind == "generic":
        return make_inplace(method)
    if kind == "custom":
        return globals()[decl.name + "_"]
    raise RuntimeError(f"op {decl.name!r}: unknown in-place kind {decl.inplace!r} (see registry.INPLACE_KINDS)")


def _attach_ops():
    for decl in registry.OPS:
        if not decl.method:
            continue
        fn = registry.resolve(decl)
        method = fn if decl.method is True else globals()[decl.method]
        inplace = _inplace_variant(decl, method) if decl.inplace else None
        for name in (decl.name, *decl.aliases):
            setattr(Tensor, name, method)
            if inplace is not None:
                setattr(Tensor, name + "_", inplace)


_attach_ops()

# Methods of Tensor that are not ops of the torch namespace.
_TENSOR_ONLY = {
    "new_tensor": new_tensor, "new_zeros": new_zeros, "new_ones": new_ones, "new_empty": new_empty,
    "new_full": new_full, "zero_": zero_, "fill_": fill_, "copy_": copy_, "uniform_": uniform_,
    "normal_": normal_, "bernoulli_": bernoulli_, "exponential_": exponential_, "random_": random_,
    "geometric_": geometric_, "apply_": _apply_, "map_": _map_,
}

_OPERATORS = {
    "__getitem__": _getitem, "__setitem__": _setitem,
    "__add__": _fast_binary(P.AddBackward0, T.add), "__radd__": T.add,
    "__sub__": _fast_binary(P.SubBackward0, T.sub), "__rsub__": lambda self, other: T.sub(other, self),
    "__mul__": _fast_binary(P.MulBackward0, T.mul), "__rmul__": T.mul,
    "__truediv__": _fast_binary(P.DivBackward0, T.div), "__rtruediv__": _rtruediv,
    "__floordiv__": T.floor_divide, "__rfloordiv__": _rfloordiv, "__mod__": T.remainder, "__rmod__": _rmod,
    "__pow__": T.pow, "__rpow__": _rpow, "__matmul__": T.matmul, "__rmatmul__": _rmatmul,
    "__neg__": T.neg, "__pos__": lambda self: self, "__abs__": T.abs,
    "__eq__": T.eq, "__ne__": T.ne, "__lt__": T.lt, "__le__": T.le, "__gt__": T.gt, "__ge__": T.ge,
    "__and__": _and, "__rand__": _and, "__or__": _or, "__ror__": _or, "__xor__": _xor, "__rxor__": _xor,
    "__invert__": _invert,
    "__iadd__": lambda self, other: Tensor.add_(self, other),
    "__isub__": lambda self, other: Tensor.sub_(self, other),
    "__imul__": lambda self, other: Tensor.mul_(self, other),
    "__itruediv__": lambda self, other: Tensor.div_(self, other),
    "__ipow__": lambda self, other: Tensor.pow_(self, other),
    "__ifloordiv__": lambda self, other: Tensor.floor_divide_(self, other),
    "__imod__": lambda self, other: Tensor.remainder_(self, other),
    "__iand__": Tensor.bitwise_and_, "__ior__": Tensor.bitwise_or_, "__ixor__": Tensor.bitwise_xor_,
}

for _name, _fn in {**_TENSOR_ONLY, **_OPERATORS}.items():
    setattr(Tensor, _name, _fn)

Tensor.T = property(S.T)
Tensor.mT = property(S.mT)
Tensor.H = property(S.T)
Tensor.mH = property(S.mT)
