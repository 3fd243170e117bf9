"""Elementwise ops: arithmetic with PyTorch's type promotion, unary math, comparisons, where/clamp.

Scalars (Python or NumPy numbers) are passed to ``forward`` as parameters, already converted to a
Python number of the result's category, so NumPy's weak-scalar rules keep the tensor's dtype (a
NumPy float64 scalar never widens a float32 tensor).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _backend, _intra_op
from .. import _dtype as D
from ._base import Op, _as_array, unbroadcast
from ..tensor import Tensor


# ---- operand preparation ------------------------------------------------------------------------
def _is_scalar(x):
    t = type(x)
    if t is float or t is int or t is bool:
        return True
    return isinstance(x, (numbers.Number, np.number, np.bool_))


def _py_scalar(value, dt):
    """A Python number of ``dt``'s category (NumPy treats it as a weak scalar)."""
    if dt._category == 2:
        return float(value)
    if dt._category == 1:
        v = int(value)
        info = np.iinfo(dt.np)
        if not info.min <= v <= info.max:  # PyTorch wraps out-of-range ints, NumPy 2 raises
            v = int(np.array(v, dtype=np.int64).astype(dt.np))
        return v
    if dt._category == 3:
        return complex(value)
    return bool(value)


def as_tensor_operand(x):
    if isinstance(x, Tensor):
        return x
    if _is_scalar(x):
        return None
    from .creation import tensor as _tensor
    return _tensor(x)


def promote(a, b, float_result=False):
    """Returns (a, b, dtype): tensors cast to the result dtype, scalars as Python numbers."""
    if not isinstance(a, Tensor) and not _is_scalar(a):
        a = as_tensor_operand(a)
    if not isinstance(b, Tensor) and not _is_scalar(b):
        b = as_tensor_operand(b)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        ad, bd = a._data.dtype, b._data.dtype
        if ad == bd and (not float_result or ad.kind in "fc"):
            return a, b, D._FROM_NP[ad]
    dt = D.result_dtype((a, b))
    if float_result and dt._category < 2:
        dt = D.get_default_dtype()
    return _conv(a, dt), _conv(b, dt), dt


def _conv(x, dt):
    if isinstance(x, Tensor):
        return x if x._data.dtype == dt.np else cast(x, dt)
    return _py_scalar(x, dt)


def _check_same_device(a, b):
    """PyTorch's error for operands on two devices; a 0-d CPU tensor may meet a CUDA tensor (the op moves it)."""
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        return
    if type(a._data) is not type(b._data):
        if (type(a._data) is np.ndarray and a._data.ndim == 0) or (type(b._data) is np.ndarray and b._data.ndim == 0):
            return
    elif type(a._data) is np.ndarray or a.device == b.device:
        return
    raise RuntimeError(
        f"Expected all tensors to be on the same device, but found at least two devices, {a.device} and {b.device}!")


def binary(op_cls, a, b, **params):
    """Runs a binary op with promotion; a scalar operand becomes the ``b`` parameter."""
    if isinstance(b, Tensor) and isinstance(a, Tensor):
        ad, bd = a._data, b._data
        # fast path: same dtype (and, for true division, already floating)
        if ad.dtype == bd.dtype and (not op_cls.float_result or ad.dtype.kind in "fc"):
            if ad.shape != bd.shape:
                _check_broadcast(a, b)
            if type(ad) is not type(bd):
                _check_same_device(a, b)
            elif type(ad) is not np.ndarray and ad.device != bd.device:  # two GPUs
                _check_same_device(a, b)
            return op_cls.apply(a, b, **params)
    a, b, dt = promote(a, b, float_result=op_cls.float_result)
    if isinstance(a, Tensor):
        if isinstance(b, Tensor):
            _check_same_device(a, b)
            _check_broadcast(a, b)
            return op_cls.apply(a, b, **params)
        return _scalar_edge(op_cls, op_cls.apply(a, b=b, **params))
    # scalar op tensor: reflected form
    return _scalar_edge(op_cls, op_cls.apply(b, b=a, reflected=True, **params))


def _scalar_edge(op_cls, result):
    """PyTorch wraps a Python number operand of add / sub / mul / div in a tensor, so the node lists
    an edge for it too: ``(x * 2).grad_fn.next_functions == ((AccumulateGrad, 0), (None, 0))``."""
    node = result.grad_fn
    if op_cls.scalar_edge and node is not None and type(node) is op_cls and len(node.next_functions) == 1:
        node.next_functions += ((None, 0),)
    return result


def _check_broadcast(a, b):
    sa, sb = a._data.shape, b._data.shape
    if sa == sb:
        return
    for i in range(1, min(len(sa), len(sb)) + 1):
        x, y = sa[-i], sb[-i]
        if x != y and x != 1 and y != 1:
            na, nb = len(sa) - i, len(sb) - i
            raise RuntimeError(
                f"The size of tensor a ({x}) must match the size of tensor b ({y}) at non-singleton dimension {max(na, nb)}")


def check_broadcast_many(*tensors):
    """PyTorch's broadcast error for several operands (shapes are combined left to right)."""
    shape = None
    for t in tensors:
        if not isinstance(t, Tensor):
            continue
        s = t._data.shape
        if shape is None or s == shape:
            shape = s
            continue
        for i in range(1, min(len(shape), len(s)) + 1):
            x, y = shape[-i], s[-i]
            if x != y and x != 1 and y != 1:
                raise RuntimeError(f"The size of tensor a ({x}) must match the size of tensor b ({y}) at "
                                   f"non-singleton dimension {max(len(shape), len(s)) - i}")
        shape = np.broadcast_shapes(shape, s)


# ---- casts ------------------------------------------------------------------------------------
class ToCopyBackward0(Op):
    """dtype conversion; the gradient converts back."""

    def forward(self, x, dtype):
        self.src = x.dtype
        return x.astype(dtype.np)

    def backward(self, g, ns):
        return (ns.astype(g, self.src),)


def cast(x, dtype):
    if x._data.dtype == dtype.np:
        return x
    if x._requires_grad and dtype._category < 2:
        # integer results carry no gradient
        return Tensor._wrap(x._data.astype(dtype.np))
    return ToCopyBackward0.apply(x, dtype=dtype)


# ---- binary arithmetic ----------------------------------------------------------------------
class _Binary(Op):
    float_result = False
    scalar_edge = False  # a Python-number operand still gets a (None, 0) edge, as in PyTorch

    def _needs(self, i):
        n = self.needs_input_grad
        return len(n) > i and n[i]


class AddBackward0(_Binary):
    scalar_edge = True
    fresh_grads = False
    alpha = 1

    def forward(self, a, b, alpha=1, reflected=False):
        self.sa = a.shape
        if type(b) is np.ndarray or hasattr(b, "shape"):
            self.sb = b.shape
        if alpha != 1:
            self.alpha = alpha
            b = b * alpha
        return _intra_op.add(a, b)

    def backward(self, g, ns, *saved):
        need = self.needs_input_grad
        ga = unbroadcast(ns, g, self.sa) if need[0] else None
        gb = None
        if len(need) > 1 and need[1]:
            gb = unbroadcast(ns, g if self.alpha == 1 else g * self.alpha, self.sb)
        return ga, gb


class SubBackward0(_Binary):
    scalar_edge = True
    fresh_grads = False

    def forward(self, a, b, alpha=1, reflected=False):
        self.alpha = -alpha if not reflected else alpha
        self.reflected = reflected
        self.sa = a.shape
        if hasattr(b, "shape"):
            self.sb = b.shape
        if reflected:  # scalar - tensor
            return b - a * alpha if alpha != 1 else b - a
        return a - b * alpha if alpha != 1 else a - b

    def backward(self, g, ns, *saved):
        if self.reflected:
            return (-g if self.alpha == 1 else g * -self.alpha,)
        need = self.needs_input_grad
        ga = unbroadcast(ns, g, self.sa) if need[0] else None
        gb = unbroadcast(ns, g * self.alpha, self.sb) if len(need) > 1 and need[1] else None
        return ga, gb


class RsubBackward1(SubBackward0):
    """``scalar - tensor``."""

    scalar_edge = False  # PyTorch's rsub.Scalar node lists only the tensor


class RsubBackward0(SubBackward0):
    """``rsub(input, other)`` = ``other - alpha * input`` on two tensors."""


class MulBackward0(_Binary):
    scalar_edge = True
    save_inputs = (0, 1)

    def forward(self, a, b, reflected=False):
        if type(b) is not np.ndarray and not hasattr(b, "shape"):
            self.scalar = b
            self.save_inputs = ()
        return _intra_op.mul(a, b)

    def backward(self, g, ns, a=None, b=None):
        if b is None:
            return (g * self.scalar,)
        need_a, need_b = self.needs_input_grad
        ga = unbroadcast(ns, g * b, a.shape) if need_a else None
        gb = unbroadcast(ns, g * a, b.shape) if need_b else None
        return ga, gb


class DivBackward0(_Binary):
    scalar_edge = True
    save_inputs = (0, 1)
    float_result = True

    def forward(self, a, b, reflected=False, rounding_mode=None):
        self.reflected = reflected
        if not hasattr(b, "shape"):
            self.scalar = b
            self.save_inputs = (0,) if reflected else ()
            return b / a if reflected else a / b
        return a / b

    def backward(self, g, ns, a=None, b=None):
        if b is None:
            if self.reflected:  # s / a
                return (-g * self.scalar / (a * a),)
            return (g / self.scalar,)
        ga = unbroadcast(ns, g / b, a.shape) if self._needs(0) else None
        gb = unbroadcast(ns, -g * a / (b * b), b.shape) if self._needs(1) else None
        return ga, gb


class DivBackward2(_Binary):
    """Division with ``rounding_mode`` 'trunc' or 'floor': piecewise constant, zero gradient."""

    def forward(self, a, b, rounding_mode, reflected=False):
        self.sa = a.shape
        self.sb = getattr(b, "shape", None)
        x, y = (b, a) if reflected else (a, b)
        if a.dtype.kind in "iub":
            if rounding_mode == "floor":
                return np.floor_divide(x, y)
            q = np.floor_divide(x, y)
            r = x - q * y
            # floor rounds a negative inexact quotient down; trunc rounds it towards zero
            return q + ((r != 0) & ((x < 0) != (y < 0))).astype(q.dtype)
        q = x / y
        return np.floor(q) if rounding_mode == "floor" else np.trunc(q)

    def backward(self, g, ns, *saved):
        zero = g * 0
        return unbroadcast(ns, zero, self.sa), (unbroadcast(ns, zero, self.sb) if self.sb is not None else None)


class PowBackward0(_Binary):
    """tensor ** scalar."""

    save_inputs = (0,)

    def forward(self, a, b):
        self.exponent = b
        if b == 2:
            return a * a
        return a ** b

    def backward(self, g, ns, a):
        e = self.exponent
        if e == 0:
            return (g * 0,)
        if e == 2:
            return (g * a * 2,)
        return (g * e * a ** (e - 1),)


class PowBackward1(_Binary):
    """tensor ** tensor."""

    save_inputs = (0, 1)
    saves_output = True

    def forward(self, a, b):
        return a ** b

    def backward(self, g, ns, a, b):
        ga = gb = None
        if self._needs(0):
            ga = unbroadcast(ns, g * b * a ** (b - 1), a.shape)
        if self._needs(1):
            out = ns.out(self)
            safe_log = ns.log(ns.where(a > 0, a, ns.ones_like(a)))
            gb = unbroadcast(ns, ns.where(a > 0, g * out * safe_log, g * 0), b.shape)
        return ga, gb


class PowBackward2(_Binary):
    """scalar ** tensor."""

    saves_output = True

    def forward(self, a, b, reflected=True):
        self.base = b
        return b ** a

    def backward(self, g, ns):
        return (g * ns.out(self) * math.log(self.base) if self.base > 0 else g * 0,)


def _no_bool(dt, kernel):
    if dt is D.bool:
        raise NotImplementedError(f"\"{kernel}\" not implemented for 'Bool'")


def pow(input, exponent):
    if isinstance(input, Tensor) and _is_scalar(exponent):
        dt = D.result_dtype((input, exponent))
        if dt is D.bool:  # bool ** bool: x ** True is x, x ** False is True
            return input.clone() if exponent else Tensor._wrap(_xp(input._data).ones(input._data.shape, np.bool_))
        if dt._category == 1 and exponent < 0:
            raise RuntimeError("Integers to negative integer powers are not allowed.")
        input = _conv(input, dt)
        return PowBackward0.apply(input, b=_py_scalar(exponent, dt))
    if _is_scalar(input):
        t, s, dt = promote(exponent, input)
        _no_bool(dt, "pow")
        return PowBackward2.apply(t, b=s)
    a, b, dt = promote(input, exponent)
    _no_bool(dt, "pow")
    _check_broadcast(a, b)
    if dt._category == 1 and (b._data < 0).any():
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    return PowBackward1.apply(a, b)


class MaximumBackward0(_Binary):
    save_inputs = (0, 1)

    def forward(self, a, b):
        return _xp(a).maximum(a, b)

    def backward(self, g, ns, a, b):
        # ties split the gradient evenly, as PyTorch does
        w = ns.where(a > b, 1.0, ns.where(a == b, 0.5, 0.0))
        ga = g * (w if ns.graph else w.astype(g.dtype))
        gb = g - ga
        return unbroadcast(ns, ga, a.shape), unbroadcast(ns, gb, b.shape)


class MinimumBackward0(_Binary):
    save_inputs = (0, 1)

    def forward(self, a, b):
        return _xp(a).minimum(a, b)

    def backward(self, g, ns, a, b):
        w = ns.where(a < b, 1.0, ns.where(a == b, 0.5, 0.0))
        ga = g * (w if ns.graph else w.astype(g.dtype))
        return unbroadcast(ns, ga, a.shape), unbroadcast(ns, g - ga, b.shape)


class RemainderBackward0(_Binary):
    fresh_grads = False  # hands back the incoming gradient (or views of it)
    save_inputs = (0, 1)

    def forward(self, a, b, reflected=False):
        if not hasattr(b, "shape"):
            self.save_inputs = ()
            self.scalar = b
        return _xp(a).remainder(b, a) if reflected else _xp(a).remainder(a, b)

    def backward(self, g, ns, a=None, b=None):
        if b is None:
            return (g,)
        return unbroadcast(ns, g, a.shape), unbroadcast(ns, -g * ns.floor(a / b), b.shape)


class RemainderBackward1(RemainderBackward0):
    """remainder of two tensors."""


class FmodBackward0(RemainderBackward0):
    fresh_grads = False  # hands back the incoming gradient (or views of it)

    def forward(self, a, b, reflected=False):
        if not hasattr(b, "shape"):
            self.save_inputs = ()
        return _xp(a).fmod(b, a) if reflected else _xp(a).fmod(a, b)

    def backward(self, g, ns, a=None, b=None):
        if b is None:
            return (g,)
        q = a / b
        return unbroadcast(ns, g, a.shape), unbroadcast(ns, -g * ns.where(q < 0, -ns.floor(-q), ns.floor(q)), b.shape)


class FmodBackward1(FmodBackward0):
    """fmod of two tensors."""


class Atan2Backward0(_Binary):
    save_inputs = (0, 1)
    float_result = True

    def forward(self, a, b):
        return _xp(a).arctan2(a, b)

    def backward(self, g, ns, a, b):
        d = a * a + b * b
        return unbroadcast(ns, g * b / d, a.shape), unbroadcast(ns, -g * a / d, b.shape)


class HypotBackward0(_Binary):
    """``sqrt(a**2 + b**2)``; its gradient is ``g * a / out`` and ``g * b / out`` (PyTorch's
    hypot_backward)."""
    save_inputs = (0, 1)
    float_result = True

    def forward(self, a, b):
        return _xp(a).hypot(a, b)

    def backward(self, g, ns, a, b):
        r = ns.sqrt(a * a + b * b)
        return unbroadcast(ns, g * a / r, a.shape), unbroadcast(ns, g * b / r, b.shape)


def _xp(a):
    """NumPy for host arrays, else the array's own module (``_backend`` decides: the one CuPy import)."""
    if type(a) is np.ndarray:
        return np
    return _backend.array_module(a)


# ---- public binary functions ----------------------------------------------------------------------
def _write_out(result, out):
    if out is None:
        return result
    from .creation import _copy_into
    return _copy_into(out, result)


def add(input, other, *, alpha=1, out=None):
    """``input + alpha * other`` with broadcasting and type promotion."""
    if not isinstance(input, Tensor) and isinstance(other, Tensor):
        input, other = other, input
        if alpha != 1:
            return _write_out(binary(AddBackward0, mul(input, alpha), other), out)
    if out is None and alpha == 1:
        return binary(AddBackward0, input, other)
    return _write_out(binary(AddBackward0, input, other, alpha=alpha), out)


def _is_bool(v):
    return (isinstance(v, Tensor) and v._data.dtype.kind == "b") or isinstance(v, (bool, np.bool_))


def sub(input, other, *, alpha=1, out=None):
    bool_in, bool_other = _is_bool(input), _is_bool(other)
    if bool_in and bool_other:
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported. "
                           "Use the `^` or `logical_xor()` operator instead.")
    if bool_in or bool_other:
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. "
                           "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    if _is_scalar(input):
        a, s, dt = promote(other, input)
        return _write_out(RsubBackward1.apply(a, b=s, alpha=alpha, reflected=True), out)
    return _write_out(binary(SubBackward0, input, other, alpha=alpha), out)


subtract = sub


def rsub(input, other, *, alpha=1):
    if isinstance(input, Tensor) and isinstance(other, Tensor):
        return binary(RsubBackward0, other, input, alpha=alpha)
    return sub(other, input, alpha=alpha)


def mul(input, other, *, out=None):
    if not isinstance(input, Tensor):
        input, other = other, input
    if out is None:
        return binary(MulBackward0, input, other)
    return _write_out(binary(MulBackward0, input, other), out)


multiply = mul


def div(input, other, *, rounding_mode=None, out=None):
    """True division (int / int gives float), or with ``rounding_mode`` 'trunc' / 'floor'."""
    if rounding_mode is not None:
        if rounding_mode not in ("trunc", "floor"):
            raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found '{rounding_mode}'")
        a, b, dt = promote(input, other)
        _no_bool(dt, f"div_{rounding_mode}_cpu")
        if dt._category < 2:
            if _any_zero(b._data if isinstance(b, Tensor) else b):
                raise RuntimeError("ZeroDivisionError")
        if isinstance(a, Tensor):
            res = DivBackward2.apply(a, b, rounding_mode=rounding_mode) if isinstance(b, Tensor) else \
                DivBackward2.apply(a, b=b, rounding_mode=rounding_mode)
        else:
            res = DivBackward2.apply(b, b=a, rounding_mode=rounding_mode, reflected=True)
        return _write_out(res, out)
    if _is_scalar(input):
        # PyTorch computes ``scalar / tensor`` as ``reciprocal(tensor) * scalar``
        a, s, dt = promote(other, input, float_result=True)
        return _write_out(mul(reciprocal(a), s), out)
    return _write_out(binary(DivBackward0, input, other), out)


divide = true_divide = div


def floor_divide(input, other):
    return div(input, other, rounding_mode="floor")


def _check_int_divisor(dt, kernel, input, other):
    """Integer remainder by zero raises in PyTorch (NumPy would warn and return 0)."""
    _no_bool(dt, kernel)
    if dt._category == 1:
        if _any_zero(other._data if isinstance(other, Tensor) else other):
            raise RuntimeError("ZeroDivisionError")


def _any_zero(d):
    """Whether a divisor (array of either device, or number) holds a zero."""
    return bool((d == 0).any()) if hasattr(d, "dtype") and getattr(d, "ndim", 0) else bool(d == 0)


def remainder(input, other):
    both = isinstance(input, Tensor) and isinstance(other, Tensor)
    _check_int_divisor(D.result_dtype((input, other)), "remainder_cpu", input, other)
    return binary(RemainderBackward1 if both else RemainderBackward0, input, other)


def fmod(input, other):
    both = isinstance(input, Tensor) and isinstance(other, Tensor)
    _check_int_divisor(D.result_dtype((input, other)), "fmod_cpu", input, other)
    return binary(FmodBackward1 if both else FmodBackward0, input, other)


def _of_two_tensors(op, name, input, other):
    """``op`` on two tensors (no Python scalars, as PyTorch's ``name`` insists), promoted and broadcast."""
    for pos, arg, label in ((1, input, "input"), (2, other, "other")):
        if not isinstance(arg, Tensor):
            raise TypeError(f"{name}(): argument '{label}' (position {pos}) must be Tensor, not {type(arg).__name__}")
    a, b, dt = promote(input, other)
    check_broadcast_many(a, b)
    return op.apply(a, b)


def maximum(input, other):
    return _of_two_tensors(MaximumBackward0, "maximum", input, other)


def minimum(input, other):
    return _of_two_tensors(MinimumBackward0, "minimum", input, other)


def atan2(input, other):
    a, b, dt = promote(input, other, float_result=True)
    check_broadcast_many(a, b)
    return Atan2Backward0.apply(a, b)


arctan2 = atan2


def hypot(input, other):
    """``sqrt(input**2 + other**2)`` elementwise, broadcast. Like PyTorch it has no integer kernel:
    integer operands raise instead of promoting to float."""
    dt = D.result_dtype((input, other))
    if dt._category < 2:
        raise NotImplementedError(f"\"hypot_cpu\" not implemented for '{D.LEGACY_NAMES[dt.name]}'")
    a, b, dt = promote(input, other, float_result=True)
    check_broadcast_many(a, b)
    return HypotBackward0.apply(a, b)


# ---- unary math ---------------------------------------------------------------------------------
class _Unary(Op):
    float_only = True

    @classmethod
    def run(cls, x, **params):
        if cls.float_only and x._data.dtype.kind not in "fc":
            x = cast(x, D.get_default_dtype())
        return cls()._run((x,), params)


def _unary(name, fwd, bwd, save_in=True, save_out=False, float_only=True, fresh=True):
    """Builds a unary op class from a forward (xp, x) and a backward (ns, g, x, out)."""

    def forward(self, x):
        return fwd(np if type(x) is np.ndarray else _xp(x), x)

    def backward(self, g, ns, *saved):
        x = saved[0] if saved else None
        return (bwd(ns, g, x, ns.out(self) if save_out else None),)

    cls = type(name, (_Unary,), {"forward": forward, "backward": backward,
                                  "save_inputs": (0,) if save_in else (), "saves_output": save_out,
                                  "float_only": float_only, "fresh_grads": fresh, "__slots__": ()})
    return cls


NegBackward0 = _unary("NegBackward0", lambda xp, x: -x, lambda ns, g, x, o: -g, save_in=False, float_only=False)
ExpBackward0 = _unary("ExpBackward0", lambda xp, x: xp.exp(x), lambda ns, g, x, o: g * o, save_in=False, save_out=True)
Exp2Backward0 = _unary("Exp2Backward0", lambda xp, x: xp.exp2(x), lambda ns, g, x, o: g * o * math.log(2), save_in=False, save_out=True)
Expm1Backward0 = _unary("Expm1Backward0", lambda xp, x: xp.expm1(x), lambda ns, g, x, o: g * (o + 1), save_in=False, save_out=True)
LogBackward0 = _unary("LogBackward0", lambda xp, x: xp.log(x), lambda ns, g, x, o: g / x)
Log2Backward0 = _unary("Log2Backward0", lambda xp, x: xp.log2(x), lambda ns, g, x, o: g / (x * math.log(2)))
Log10Backward0 = _unary("Log10Backward0", lambda xp, x: xp.log10(x), lambda ns, g, x, o: g / (x * math.log(10)))
Log1PBackward0 = _unary("Log1PBackward0", lambda xp, x: xp.log1p(x), lambda ns, g, x, o: g / (x + 1))
SqrtBackward0 = _unary("SqrtBackward0", lambda xp, x: xp.sqrt(x), lambda ns, g, x, o: g / (o * 2), save_in=False, save_out=True)
RsqrtBackward0 = _unary("RsqrtBackward0", lambda xp, x: 1 / xp.sqrt(x), lambda ns, g, x, o: g * -0.5 * o * o * o, save_in=False, save_out=True)
SinBackward0 = _unary("SinBackward0", lambda xp, x: xp.sin(x), lambda ns, g, x, o: g * ns.cos(x))
CosBackward0 = _unary("CosBackward0", lambda xp, x: xp.cos(x), lambda ns, g, x, o: -g * ns.sin(x))
TanBackward0 = _unary("TanBackward0", lambda xp, x: xp.tan(x), lambda ns, g, x, o: g * (o * o + 1), save_in=False, save_out=True)
def _tanh_grad(ns, g, o):
    if ns.graph:
        return g * (1 - o * o)
    # one temporary instead of three: these arrays are as large as the activations
    t = o * o
    ns.xp.subtract(1, t, out=t)
    ns.xp.multiply(t, g, out=t)
    return t


def _sigmoid_grad(ns, g, o):
    if ns.graph:
        return g * o * (1 - o)
    t = 1 - o
    ns.xp.multiply(t, o, out=t)
    ns.xp.multiply(t, g, out=t)
    return t


TanhBackward0 = _unary("TanhBackward0", lambda xp, x: xp.tanh(x), lambda ns, g, x, o: _tanh_grad(ns, g, o), save_in=False, save_out=True)
SinhBackward0 = _unary("SinhBackward0", lambda xp, x: xp.sinh(x), lambda ns, g, x, o: g * ns.cosh(x))
CoshBackward0 = _unary("CoshBackward0", lambda xp, x: xp.cosh(x), lambda ns, g, x, o: g * ns.sinh(x))
AsinBackward0 = _unary("AsinBackward0", lambda xp, x: xp.arcsin(x), lambda ns, g, x, o: g / ns.sqrt(1 - x * x))
AcosBackward0 = _unary("AcosBackward0", lambda xp, x: xp.arccos(x), lambda ns, g, x, o: -g / ns.sqrt(1 - x * x))
AtanBackward0 = _unary("AtanBackward0", lambda xp, x: xp.arctan(x), lambda ns, g, x, o: g / (1 + x * x))
SigmoidBackward0 = _unary("SigmoidBackward0", lambda xp, x: _sigmoid(xp, x), lambda ns, g, x, o: _sigmoid_grad(ns, g, o), save_in=False, save_out=True)
AbsBackward0 = _unary("AbsBackward0", lambda xp, x: xp.abs(x), lambda ns, g, x, o: g * ns.sign(x), float_only=False)
SignBackward0 = _unary("SignBackward0", lambda xp, x: xp.sign(x), lambda ns, g, x, o: g * 0, save_in=False, float_only=False)
FloorBackward0 = _unary("FloorBackward0", lambda xp, x: xp.floor(x), lambda ns, g, x, o: g * 0, save_in=False, float_only=False)
CeilBackward0 = _unary("CeilBackward0", lambda xp, x: xp.ceil(x), lambda ns, g, x, o: g * 0, save_in=False, float_only=False)
TruncBackward0 = _unary("TruncBackward0", lambda xp, x: xp.trunc(x), lambda ns, g, x, o: g * 0, save_in=False, float_only=False)
FracBackward0 = _unary("FracBackward0", lambda xp, x: x - xp.trunc(x), lambda ns, g, x, o: g, save_in=False, fresh=False)
ReciprocalBackward0 = _unary("ReciprocalBackward0", lambda xp, x: 1 / x, lambda ns, g, x, o: -g * o * o, save_in=False, save_out=True)
ErfBackward0 = _unary("ErfBackward0", lambda xp, x: _erf(xp, x), lambda ns, g, x, o: g * (2 / math.sqrt(math.pi)) * ns.exp(-x * x))
ReluBackward0 = _unary("ReluBackward0", _intra_op.relu, lambda ns, g, x, o: _intra_op.relu_backward(g, o) if not ns.graph else ns.where(o <= 0, g * 0, g), save_in=False, save_out=True, float_only=False)


def _sigmoid(xp, x):
    # exp of a negative argument only, so large |x| neither overflows nor loses precision
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _erf(xp, x):
    # Python's math.erf is exact; vectorised it costs ~50 ns an element, fine for GELU-sized inputs.
    if xp is not np:
        from .._backend import device_erf
        res = device_erf(x)  # cupyx's kernel on the GPU when CuPy has it
        if res is not None:
            return res.astype(x.dtype, copy=False)
    host = np.asarray(x.get() if hasattr(x, "get") else x, dtype=np.float64)
    res = _ERF(host).astype(x.dtype, copy=False)
    return res if xp is np else xp.asarray(res)


_ERF = np.frompyfunc(math.erf, 1, 1)


class RoundBackward0(_Unary):
    float_only = False

    def forward(self, x, decimals=0):
        return _xp(x).round(x, decimals)

    def backward(self, g, ns):
        return (g * 0,)


def round(input, *, decimals=0):
    return RoundBackward0.apply(input, decimals=decimals)


class ClampBackward1(Op):
    save_inputs = (0,)

    def forward(self, x, min=None, max=None):
        self.lo, self.hi = min, max
        return _xp(x).clip(x, min, max) if (min is not None or max is not None) else x.copy()

    def backward(self, g, ns, x):
        mask = None
        if self.lo is not None:
            mask = x >= self.lo
        if self.hi is not None:
            m2 = x <= self.hi
            mask = m2 if mask is None else mask & m2
        if ns.graph:
            return (ns.where(mask, g, g * 0),)
        return (g * mask,)


class ClampMinBackward0(ClampBackward1):
    """clamp_min with a number."""


class ClampMaxBackward0(ClampBackward1):
    """clamp_max with a number."""


class ClampBackward0(Op):
    """clamp with tensor bounds."""

    save_inputs = (0, 1, 2)

    def forward(self, x, lo, hi):
        return _xp(x).minimum(_xp(x).maximum(x, lo), hi)

    def backward(self, g, ns, x, lo, hi):
        mask = (x >= lo) & (x <= hi)
        return (ns.where(mask, g, g * 0), None, None)


def clamp(input, min=None, max=None, *, out=None, _cls=None):
    """Clips to ``[min, max]``; bounds may be numbers or tensors."""
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        check_broadcast_many(input, min, max)
        from .creation import full_like
        dt = D.result_dtype([v for v in (input, min, max) if v is not None])
        x = _conv(input, dt)

        def bound(v, low):
            if isinstance(v, Tensor):
                return _conv(v, dt)
            if v is None:  # the dtype's own extreme: no bound on that side
                v = (-np.inf if low else np.inf) if dt._category >= 2 else \
                    (np.iinfo(dt.np).min if low else np.iinfo(dt.np).max) if dt._category == 1 else not low
            return full_like(x, v)

        return _write_out(ClampBackward0.apply(x, bound(min, True), bound(max, False)), out)
    dt = input.dtype
    if dt._category < 2 and any(isinstance(v, float) for v in (min, max) if v is not None):
        input = cast(input, D.get_default_dtype())
        dt = input.dtype
    lo = None if min is None else _py_scalar(min, dt)
    hi = None if max is None else _py_scalar(max, dt)
    return _write_out((_cls or ClampBackward1).apply(input, min=lo, max=hi), out)


clip = clamp


def clamp_min(input, min):
    return clamp(input, min=min, _cls=ClampMinBackward0)


def clamp_max(input, max):
    return clamp(input, max=max, _cls=ClampMaxBackward0)


class WhereBackward0(Op):
    """The condition is a parameter, not an input: like PyTorch, only ``a`` and ``b`` get edges."""

    def forward(self, a, b, cond):
        self.cond = cond
        self.sa, self.sb = a.shape, b.shape
        return _xp(a).where(cond, a, b)

    def backward(self, g, ns, *saved):
        z = g * 0
        c = self.cond if not ns.graph else ns.const(self.cond, g)
        return unbroadcast(ns, ns.where(c, g, z), self.sa), unbroadcast(ns, ns.where(c, z, g), self.sb)


def where(condition, input=None, other=None):
    """Elementwise select; with only ``condition``, the indices of its non-zero elements."""
    if input is None and other is None:
        from .index import nonzero
        return nonzero(condition, as_tuple=True)
    a, b, dt = promote(input, other)
    from .creation import tensor as _tensor
    on = next((t.device for t in (condition, a, b) if isinstance(t, Tensor) and t.is_cuda), None)
    a = a if isinstance(a, Tensor) else _tensor(a, dtype=dt, device=on)  # numbers join the tensors' device
    b = b if isinstance(b, Tensor) else _tensor(b, dtype=dt, device=on)
    cond = condition if isinstance(condition, Tensor) else _tensor(condition, device=on)
    if cond._data.dtype != np.bool_:
        cond = Tensor._wrap(cond._data.astype(bool))
    if on is not None and not cond.is_cuda:
        if cond.ndim:
            raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices, "
                               f"{on} and cpu!")
        cond = cond.to(on)
    check_broadcast_many(cond, a, b)
    return WhereBackward0.apply(a, b, cond=cond._data)


class LerpBackward0(Op):
    """``lerp`` with a number weight. Like PyTorch's it saves no tensor (only shapes), so writing
    ``input`` or ``end`` in place afterwards is no error."""

    def forward(self, a, b, weight):
        self.w, self.sa, self.sb = weight, a.shape, b.shape
        return a + weight * (b - a)

    def backward(self, g, ns):
        return unbroadcast(ns, g * (1 - self.w), self.sa), unbroadcast(ns, g * self.w, self.sb)


def lerp(input, end, weight):
    check_broadcast_many(input, end)
    if isinstance(weight, Tensor) and weight.numel() != 1:
        # a weight tensor: the same arithmetic from differentiable ops (gradients flow to all three)
        return input + weight * (end - input)
    return LerpBackward0.apply(input, end, weight=float(weight))


# ---- comparisons and logic (never differentiable) -----------------------------------------------
def _compare(fn, a, b):
    a, b, dt = promote(a, b)
    if isinstance(a, Tensor):
        bd = b._data if isinstance(b, Tensor) else b
        if isinstance(b, Tensor):
            _check_broadcast(a, b)
        return Tensor._wrap(fn(a._data, bd))
    return Tensor._wrap(fn(a, b._data))


def eq(a, b):
    return _compare(np.equal, a, b)


def ne(a, b):
    return _compare(np.not_equal, a, b)


def lt(a, b):
    return _compare(np.less, a, b)


def le(a, b):
    return _compare(np.less_equal, a, b)


def gt(a, b):
    return _compare(np.greater, a, b)


def ge(a, b):
    return _compare(np.greater_equal, a, b)


less, less_equal, greater, greater_equal, not_equal = lt, le, gt, ge, ne


def equal(a, b):
    """True when both tensors have the same shape and elements."""
    return a.shape == b.shape and bool((a._data == b._data).all())


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return bool(np.allclose(a._data, b._data if isinstance(b, Tensor) else b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return Tensor._wrap(np.isclose(a._data, b._data if isinstance(b, Tensor) else b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def _logical(fn):
    def op(a, b=None):
        if b is None:
            return Tensor._wrap(fn(a._data))
        check_broadcast_many(a, b)
        bd = b._data if isinstance(b, Tensor) else b
        return Tensor._wrap(fn(a._data, bd))
    return op


logical_and = _logical(np.logical_and)
logical_or = _logical(np.logical_or)
logical_xor = _logical(np.logical_xor)
logical_not = _logical(np.logical_not)
isnan = _logical(np.isnan)
isinf = _logical(np.isinf)
isfinite = _logical(np.isfinite)
signbit = _logical(np.signbit)


def _bitwise(fn, name):
    def op(a, b):
        a, b, dt = promote(a, b)
        if dt._category >= 2:
            raise NotImplementedError(f"\"{name}_cpu\" not implemented for '{D.LEGACY_NAMES[dt.name]}'")
        check_broadcast_many(a, b)
        ad = a._data if isinstance(a, Tensor) else a
        bd = b._data if isinstance(b, Tensor) else b
        return Tensor._wrap(_as_array(fn(ad, bd)))
    return op


bitwise_and = _bitwise(np.bitwise_and, "bitwise_and")
bitwise_or = _bitwise(np.bitwise_or, "bitwise_or")
bitwise_xor = _bitwise(np.bitwise_xor, "bitwise_xor")


def bitwise_not(a):
    if a.dtype._category >= 2:
        raise NotImplementedError(f"\"bitwise_not_cpu\" not implemented for '{D.LEGACY_NAMES[a.dtype.name]}'")
    return Tensor._wrap(np.invert(a._data))


# ---- unary public functions -----------------------------------------------------------------------
def _fn(cls):
    run = cls.run
    def f(input, *, out=None):
        if out is None:
            return run(input)
        return _write_out(run(input), out)
    f.__name__ = cls.__name__.replace("Backward0", "").lower()
    f.__doc__ = f"Elementwise {f.__name__}; gradient by {cls.__name__}."
    return f


def neg(input, *, out=None):
    """Elementwise negation; gradient by NegBackward0."""
    if input._data.dtype.kind == "b":
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. If you are trying to "
                           "invert a mask, use the `~` or `logical_not()` operator instead.")
    return _write_out(NegBackward0.run(input), out)


negative = neg
exp = _fn(ExpBackward0)
exp2 = _fn(Exp2Backward0)
expm1 = _fn(Expm1Backward0)
log = _fn(LogBackward0)
log2 = _fn(Log2Backward0)
log10 = _fn(Log10Backward0)
log1p = _fn(Log1PBackward0)
sqrt = _fn(SqrtBackward0)
rsqrt = _fn(RsqrtBackward0)
sin = _fn(SinBackward0)
cos = _fn(CosBackward0)
tan = _fn(TanBackward0)
tanh = _fn(TanhBackward0)
sinh = _fn(SinhBackward0)
cosh = _fn(CoshBackward0)
asin = arcsin = _fn(AsinBackward0)
acos = arccos = _fn(AcosBackward0)
atan = arctan = _fn(AtanBackward0)
sigmoid = _fn(SigmoidBackward0)
abs = absolute = _fn(AbsBackward0)
sign = _fn(SignBackward0)
floor = _fn(FloorBackward0)
ceil = _fn(CeilBackward0)
trunc = fix = _fn(TruncBackward0)
frac = _fn(FracBackward0)
reciprocal = _fn(ReciprocalBackward0)
erf = _fn(ErfBackward0)
relu = _fn(ReluBackward0)


def square(input):
    return pow(input, 2)


def sgn(input):
    return sign(input)


def addcmul(input, tensor1, tensor2, *, value=1):
    """``input + value * tensor1 * tensor2``."""
    return input + tensor1 * tensor2 * value if value != 1 else input + tensor1 * tensor2


def addcdiv(input, tensor1, tensor2, *, value=1):
    """``input + value * tensor1 / tensor2``."""
    return input + tensor1 / tensor2 * value if value != 1 else input + tensor1 / tensor2
