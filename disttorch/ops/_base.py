"""The op protocol: one class per differentiable op, ``forward`` and ``backward`` side by side.

``forward(*arrays, **params)`` computes on raw arrays (NumPy or CuPy) and may keep on ``self``
what backward needs beyond the saved inputs (masks, shapes, the output array as ``self.out``).
``backward(grad, ns, *saved)`` returns one gradient per tensor input (None where not needed).
``save_inputs`` names the input positions backward receives in ``saved``.

The same backward code serves two modes, chosen by the engine through ``ns``:
- normal backward: ``ns`` is an ``ArrayNamespace`` (NumPy/CuPy functions), grads and saved
  values are raw arrays, nothing is recorded: the fast path.
- ``create_graph=True``: ``ns`` is the ``TensorNamespace`` (the same function names built from
  differentiable disttorch ops), grads and saved values are Tensors, so the backward pass is
  itself recorded and higher-order gradients follow.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _gemm
from .._backend import array_module
from ..autograd.grad_mode import STATE
from ..autograd.inplace import register_view
from ..autograd.node import Node


class Op(Node):
    """Base of all differentiable ops. Subclass names are PyTorch's grad_fn names."""

    __slots__ = ()
    save_inputs: tuple = ()
    saves_output = False
    is_view = False  # output aliases input 0's memory: share its version counter

    @classmethod
    def apply(cls, *tensors, **params):
        """Runs the op on ``tensors`` (Tensors) and records it when a gradient is needed."""
        return cls()._run(tensors, params)

    def _run(self, tensors, params):
        # Hot path of every forward: kept flat and branch-light on purpose.
        if STATE.enabled:
            for t in tensors:
                if t._requires_grad:
                    return self._run_recorded(tensors, params)
        n = len(tensors)
        if n == 2:
            if type(tensors[0]._data) is not type(tensors[1]._data):
                tensors = align_devices(tensors)
            out = self.forward(tensors[0]._data, tensors[1]._data, **params)
        elif n == 1:
            out = self.forward(tensors[0]._data, **params)
        else:
            if _mixed(tensors):
                tensors = align_devices(tensors)
            out = self.forward(*[t._data for t in tensors], **params)
        if type(out) is not np.ndarray:
            out = _as_array(out)
        if self.is_view:
            return tensors[0]._view_of(out)
        return _wrap(out)

    def _run_recorded(self, tensors, params):
        if len(tensors) > 1 and _mixed(tensors):
            tensors = align_devices(tensors)
        n = len(tensors)
        if n == 2:
            a, b = tensors
            out = self.forward(a._data, b._data, **params) if params else self.forward(a._data, b._data)
            return record2(self, a, b, out)
        if n == 1:
            out = self.forward(tensors[0]._data, **params) if params else self.forward(tensors[0]._data)
        else:
            out = self.forward(*[t._data for t in tensors], **params)
        return record(self, tensors, out)


def record2(node, a, b, out):
    """Links ``node`` (already run forward on ``a`` and ``b``) into the graph and wraps ``out``.
    The two-input case of ``record`` written flat: it runs for every binary op in training code."""
    if type(out) is not _ndarray:
        out = _as_array(out)
    ra = a._requires_grad
    rb = b._requires_grad
    node.needs_input_grad = (ra, rb)
    node.next_functions = ((a.grad_fn or a._grad_accumulator(), 0) if ra else _NO_EDGE,
                           (b.grad_fn or b._grad_accumulator(), 0) if rb else _NO_EDGE)
    save = node.save_inputs
    if save:
        if save is _BOTH or save == _BOTH:
            node.saved = (a, b)
            node._saved_versions = (a._vc[0], b._vc[0])
        elif len(save) == 1:  # one of the two, without a generator (this runs per op)
            t = (a, b)[save[0]]
            node.saved = (t,)
            node._saved_versions = (t._vc[0],)
        else:
            saved = node.saved = tuple((a, b)[i] for i in save)
            node._saved_versions = tuple(t._vc[0] for t in saved)
    return _finish(node, a, out)


def record(node, tensors, out):
    """Links ``node`` (already run forward on ``tensors``) into the graph and wraps ``out``."""
    if type(out) is not _ndarray:
        out = _as_array(out)
    if len(tensors) == 1:  # unary ops, flat
        t = tensors[0]
        if t._requires_grad:
            node.needs_input_grad = _NEEDS_ONE
            node.next_functions = ((t.grad_fn or t._grad_accumulator(), 0),)
        else:
            node.needs_input_grad = _NEEDS_NONE
            node.next_functions = (_NO_EDGE,)
        if node.save_inputs:
            node.saved = (t,)
            node._saved_versions = (t._vc[0],)
        return _finish(node, t, out)
    needs = []
    edges = []
    for t in tensors:
        if t._requires_grad:
            needs.append(True)
            edges.append((t.grad_fn or t._grad_accumulator(), 0))
        else:
            needs.append(False)
            edges.append(_NO_EDGE)
    node.needs_input_grad = needs
    node.next_functions = tuple(edges)
    save = node.save_inputs
    if save:
        saved = node.saved = tuple(tensors[i] for i in save)
        node._saved_versions = tuple(t._vc[0] for t in saved)
    return _finish(node, tensors[0], out)


def _finish(node, first, out):
    """The recorded result tensor: ``out`` wrapped (as a view of ``first`` for view ops)."""
    if node.is_view:
        result = first._view_of(out)
        register_view(result)
    else:
        result = _wrap(out, True)
    result._requires_grad = True
    result.grad_fn = node
    if node.saves_output:
        node.out = out
        node._out_vc = result._vc
        if node.saved is None:
            node.saved, node._saved_versions = (), ()
    return result


_BOTH = (0, 1)
_NEEDS_ONE = (True,)
_NEEDS_NONE = (False,)
_ndarray = np.ndarray
_NO_EDGE = (None, 0)


def _mixed(tensors):
    """True when the inputs' arrays are not all of one type (host and device arrays meet)."""
    first = type(tensors[0]._data)
    for t in tensors:
        if type(t._data) is not first:
            return True
    return False


def align_devices(tensors):
    """Inputs of one op on one device. Like PyTorch, a 0-d CPU tensor joins the device of the others
    (``cuda_x * torch.tensor(2.0)``); any other host/device mix raises PyTorch's error."""
    device_t = next((t for t in tensors if type(t._data) is not np.ndarray), None)
    if device_t is None:
        return tensors
    out = []
    for t in tensors:
        if type(t._data) is not type(device_t._data):
            if type(t._data) is np.ndarray and t._data.ndim == 0:
                from .shape import to_device
                t = to_device(t, device_t.device)
            else:
                first = tensors[0]
                other = t if first is device_t else device_t
                raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices, "
                                   f"{first.device} and {other.device}!")
        out.append(t)
    return tuple(out)


def _as_array(out):
    """NumPy returns scalars from 0-d arithmetic; tensors always hold arrays."""
    if isinstance(out, np.generic):
        return np.asarray(out)
    return out


def grad_destination(node, index, shape, dtype):
    """Memory for input ``index``'s gradient to be computed in, or None (allocate as usual).

    Only a leaf whose ``AccumulateGrad`` carries a ``sink`` offers one (DDP's shared-memory input
    area: the gradient is then written once, where the all-reduce reads it, instead of written
    and copied), and only during a ``backward()`` that accumulates into ``.grad``. An op that
    takes the array must write the whole gradient of that input there, of ``shape`` and
    ``dtype``, and return that very array."""
    if not STATE.grad_sinks:
        return None
    sink = getattr(node.next_functions[index][0], "sink", None)
    return None if sink is None else sink(shape, dtype)


def unbroadcast(ns, grad, shape):
    """Sums ``grad`` down to ``shape``: the backward of NumPy/PyTorch broadcasting."""
    gshape = grad.shape
    if gshape == shape or tuple(gshape) == tuple(shape):  # the first test is enough for arrays
        return grad
    extra = len(gshape) - len(shape)
    if extra:
        grad = ns.sum(grad, axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    if axes:
        grad = ns.sum(grad, axis=axes, keepdims=True)
    return grad


class ArrayNamespace:
    """NumPy/CuPy functions under the names backward formulas use; ``graph`` is False.

    A backward formula may call ``ns.<name>`` only for a name listed here that ``TensorNamespace``
    (ops/_tensor_ns.py) also provides: there the same name must be built from differentiable ops
    (or is found in the op table, which ``TensorNamespace`` falls back to), so ``create_graph=True``
    works. ``tests/ops/test_registry.py`` checks that every name exists in both."""

    graph = False
    _NAMES = ("exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh", "sign", "abs", "where",
              "sum", "reshape", "broadcast_to", "matmul", "swapaxes", "transpose", "expand_dims",
              "maximum", "minimum", "zeros_like", "ones_like", "concatenate",
              "square", "reciprocal", "log1p", "expm1", "flip", "tril", "triu", "einsum",
              "stack", "squeeze", "moveaxis", "outer", "clip", "arctan", "multiply", "negative",
              "isnan", "logical_not", "cumsum", "floor", "mean")

    def __init__(self, xp):
        self.xp = xp
        for name in self._NAMES:
            if hasattr(xp, name):
                setattr(self, name, getattr(xp, name))
        # The array methods do what these NumPy functions do without their Python-level wrapper
        # (about 1 us per call on small arrays; backward calls them for every broadcast op).
        self.sum = _sum_method
        self.mean = fast_mean
        self.reshape = _reshape_method
        self.swapaxes = _swapaxes_method
        self.transpose = _transpose_method
        if xp is np:
            self.matmul = _gemm.matmul  # MKL's GEMM when installed (disttorch/_gemm.py)

    @staticmethod
    def out(node):
        """The op's own output (saved by ``saves_output`` ops)."""
        return node.out

    @staticmethod
    def const(array, like):
        """A constant array as the mode's value type (already an array here)."""
        return array

    def astype(self, x, dtype_np):
        return x.astype(dtype_np, copy=False)

    def zeros(self, shape, like):
        return self.xp.zeros(shape, dtype=like.dtype)

    def index_add(self, base_shape, index, values, like):
        """A zero array of ``base_shape`` with ``values`` added at ``index`` (repeats accumulate)."""
        out = self.xp.zeros(base_shape, dtype=like.dtype)
        if self.xp is np:
            np.add.at(out, index, values)
        else:
            self.xp.add.at(out, index, values)
        return out

    def scatter_add_axis(self, base_shape, axis, index, values, like):
        """Zeros of ``base_shape`` with ``values`` added along ``axis`` at ``index`` (gather's backward)."""
        out = self.xp.zeros(base_shape, dtype=like.dtype)
        idx = list(self.xp.ix_(*[self.xp.arange(s) for s in index.shape]))
        idx[axis] = index
        if self.xp is np:
            np.add.at(out, tuple(idx), values)
        else:
            self.xp.add.at(out, tuple(idx), values)
        return out

    def getitem(self, x, index):
        return x[index]

    def index_put_zeros(self, shape, index, g):
        """Zeros of ``shape`` with ``g`` written at (basic) ``index``: a slice's backward."""
        out = self.xp.zeros(shape, dtype=g.dtype)
        out[index] = g
        return out

    def index_fill_zero(self, g, index):
        out = g.copy()
        out[index] = 0
        return out

    def pad_to(self, x, shape):
        """Zero-pads ``x`` at the end of each dim up to ``shape``."""
        if tuple(x.shape) == tuple(shape):
            return x
        out = self.xp.zeros(shape, dtype=x.dtype)
        out[tuple(slice(0, s) for s in x.shape)] = x
        return out

    def roll(self, x, shifts, axes):
        return self.xp.roll(x, shifts, axes)

    def inv(self, x):
        return self.xp.linalg.inv(x)

    def diagonal_scatter_zeros(self, shape, g, offset, a1, a2):
        """Zeros of ``shape`` with ``g`` on the (offset) diagonal of dims a1, a2: diagonal's backward."""
        out = self.xp.zeros(shape, dtype=g.dtype)
        idx = self.xp.arange(g.shape[-1])
        r, c = (idx, idx + offset) if offset >= 0 else (idx - offset, idx)
        sl = [slice(None)] * len(shape)
        sl[a1], sl[a2] = r, c
        out[tuple(sl)] = self.xp.moveaxis(g, -1, min(a1, a2)) if len(shape) > 2 else g
        return out


def fast_mean(x, axis=None, keepdims=False, dtype=None, out=None):
    """``xp.mean`` without NumPy's Python-level wrapper (about 2.5 us on small arrays) for float32 /
    float64 arrays: the same sum in the array's dtype divided by the count, so the same result."""
    if dtype is None and out is None and getattr(x, "dtype", None) is not None and x.dtype.char in "fd" and x.size:
        if axis is None:
            n = x.size
        else:
            shape = x.shape
            n = math.prod(shape[a] for a in axis) if isinstance(axis, tuple) else shape[axis]
        return x.sum(axis=axis, keepdims=keepdims) / n
    return array_module(x).mean(x, axis=axis, keepdims=keepdims, dtype=dtype, out=out)


def _sum_method(x, axis=None, dtype=None, out=None, keepdims=False):
    if not hasattr(x, "sum"):  # a Python number
        return np.sum(x, axis=axis, dtype=dtype, out=out, keepdims=keepdims)
    return x.sum(axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def _reshape_method(x, shape):
    return x.reshape(shape)


def _swapaxes_method(x, a, b):
    return x.swapaxes(a, b)


def _transpose_method(x, axes=None):
    return x.transpose(axes)


_array_namespaces = {}


def array_namespace(array) -> ArrayNamespace:
    xp = array_module(array)
    ns = _array_namespaces.get(xp)
    if ns is None:
        ns = _array_namespaces[xp] = ArrayNamespace(xp)
    return ns


def result_np(arr, np_dtype):
    """``arr`` as ``np_dtype`` without copying when it already is."""
    return arr if arr.dtype == np_dtype else arr.astype(np_dtype)


from ..tensor import Tensor  # noqa: E402  (ops and Tensor refer to each other)

_wrap = Tensor._wrap
