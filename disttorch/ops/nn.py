"""Fused nn ops: linear, embedding, dropout masks and activations (grad_fn names are PyTorch's).

Each backward is written against ``ns`` (see ``_base.py``): arrays on the fast path, Tensors under
``create_graph``. Where a formula needs a function only one namespace has (erf, sigmoid,
softplus), a small helper here picks the array or the differentiable Tensor version.
Normalisation layers live in ``nn_norm.py``, losses in ``nn_loss.py``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _gemm, _intra_op
from .._backend import array_module
from ..autograd.grad_mode import STATE
from ._base import Op, grad_destination, unbroadcast
from ._gelu_float32 import gelu_float32
from .pointwise import _erf as _erf_exact
from .pointwise import _sigmoid as _sigmoid_array

_scipy_erf = None  # scipy.special.erf once looked up; False: scipy is not installed


def _load_scipy_erf():
    """scipy's erf is ~20x faster than the exact math.erf fallback, and scipy is optional. Looked
    up on first use, not at import: importing scipy.special costs ~60 ms and loads scipy's own
    OpenBLAS with its threads, which a process that never calls erf should not pay (nor the
    fork server's template carry)."""
    global _scipy_erf
    try:
        from scipy.special import erf as found
    except ImportError:  # pragma: no cover - depends on the environment
        found = False
    _scipy_erf = found
    return found


# ---- helpers that work on arrays and (under create_graph) on Tensors -------------------------------
def erf(ns, x):
    if ns.graph:
        return ns.erf(x)
    if type(x) is np.ndarray:
        fast = _scipy_erf if _scipy_erf is not None else _load_scipy_erf()
        if fast:
            return fast(x)
    return _erf_exact(array_module(x), x)


def sigmoid(ns, x):
    if ns.graph:
        return x.sigmoid()
    return _sigmoid_array(array_module(x), x)


def softplus(ns, x):
    """log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|))."""
    if ns.graph:
        return x.relu() + (-x.abs()).exp().log1p()
    xp = array_module(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


# ---- linear --------------------------------------------------------------------------------------
class LinearAddmm(Op):
    """``x @ weight.T + bias`` for 2-D ``x`` (N, in), ``weight`` (out, in), ``bias`` (out,).

    One matmul forward, two backward; the weight gradient comes out (out, in) C-contiguous, so
    no transpose node or copy is needed (PyTorch records AddmmBackward0 -> TBackward0).
    """

    save_inputs = (1, 2)

    def forward(self, bias, x, weight):
        out = _gemm.matmul(x, weight.T)
        return _intra_op.add_(out, bias)  # split over the intra-op threads when large

    def backward(self, g, ns, x, weight):
        n = self.needs_input_grad
        gb = ns.sum(g, axis=0) if n[0] else None
        gx = ns.matmul(g, weight) if n[1] else None
        gw = _weight_grad(self, 2, g, x, weight, ns) if n[2] else None
        return gb, gx, gw


LinearAddmm.__name__ = LinearAddmm.__qualname__ = "AddmmBackward0"


class LinearMm(Op):
    """``x @ weight.T`` for 2-D ``x`` (a bias-free Linear)."""

    save_inputs = (0, 1)

    def forward(self, x, weight):
        return _gemm.matmul(x, weight.T)

    def backward(self, g, ns, x, weight):
        n = self.needs_input_grad
        gx = ns.matmul(g, weight) if n[0] else None
        gw = _weight_grad(self, 1, g, x, weight, ns) if n[1] else None
        return gx, gw


LinearMm.__name__ = LinearMm.__qualname__ = "MmBackward0"


def _weight_grad(node, index, g, x, weight, ns):
    """``g.T @ x``, computed straight into the weight's gradient sink where it has one (DDP's
    shared-memory area: ``grad_destination``)."""
    gt = ns.swapaxes(g, 0, 1)
    if type(g) is np.ndarray and type(x) is np.ndarray and g.dtype == x.dtype == weight.dtype:
        dest = grad_destination(node, index, weight.shape, weight.dtype)
        if dest is not None:
            return _gemm.matmul(gt, x, out=dest)
    return ns.matmul(gt, x)


# ---- embedding -----------------------------------------------------------------------------------
class EmbeddingBackward0(Op):
    """Row lookup ``weight[indices]``; the gradient adds each output row back into its source row
    (rows at ``padding_idx`` get none; ``scale_grad_by_freq`` divides by each index's count)."""

    def forward(self, weight, indices, padding_idx=None, scale_grad_by_freq=False):
        self.indices, self.wshape = indices, weight.shape
        self.padding_idx, self.scale = padding_idx, scale_grad_by_freq
        return weight[indices]

    def backward(self, g, ns):
        idx = self.indices.reshape(-1)
        rows = ns.reshape(g, (idx.size, self.wshape[1]))
        dtype = g.dtype if not ns.graph else g._data.dtype
        factor = None
        if self.scale:
            counts = np.bincount(idx, minlength=self.wshape[0])
            factor = (1.0 / counts[idx]).astype(dtype)
        if self.padding_idx is not None:
            keep = (idx != self.padding_idx).astype(dtype)
            factor = keep if factor is None else factor * keep
        if factor is not None:
            rows = rows * ns.const(factor.reshape(-1, 1), rows)
        if not ns.graph and type(rows) is np.ndarray and type(idx) is np.ndarray:
            return (_sum_rows_by_index(self.wshape, idx, rows),)
        return (ns.index_add(self.wshape, idx, rows, rows),)


def _sum_rows_by_index(shape, idx, rows):
    """Zeros of ``shape`` with each row of ``rows`` added at row ``idx[i]``: the rows sorted by
    index (stable, so repeats add in their original order) and summed per run with one
    ``add.reduceat``; about 2x (many distinct indices) to 7x (few) faster than ``np.add.at``."""
    out = np.zeros(shape, dtype=rows.dtype)
    if idx.size == 0:
        return out
    order = np.argsort(idx, kind="stable")
    ordered = idx[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    out[ordered[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


# ---- dropout -------------------------------------------------------------------------------------
def dropout_mask(shape, p, np_dtype, generator=None, like=None):
    """A keep-mask with probability ``1 - p``, already scaled by ``1 / (1 - p)`` (inverted dropout),
    as an array of ``np_dtype`` (on ``like``'s device when given)."""
    from .._random_recipes import bernoulli_scalar
    from ..random import generator_or_default
    if p >= 1.0:
        mask = np.zeros(shape, dtype=np_dtype)  # PyTorch draws nothing here either
    else:
        # PyTorch: noise = empty.bernoulli_(1 - p); noise.div_(1 - p) (in the tensor's dtype)
        keep = bernoulli_scalar(generator_or_default(generator), shape, 1.0 - p)
        mask = keep.astype(np_dtype)
        mask /= np.asarray(1.0 - p, dtype=np_dtype)
    if like is not None and type(like) is not np.ndarray:
        from .. import _backend
        mask = _backend.to_cuda(mask, _backend.device_index_of(like) or 0)
    return mask


# ---- activations -------------------------------------------------------------------------------
class LeakyReluBackward0(Op):
    save_inputs = (0,)

    def forward(self, x, negative_slope=0.01):
        self.slope = negative_slope
        return array_module(x).where(x > 0, x, x * negative_slope)

    def backward(self, g, ns, x):
        return (ns.where(x > 0, g, g * self.slope),)


class EluBackward0(Op):
    """ELU / SELU / CELU: ``scale * (x if x > 0 else alpha * (exp(x * input_scale) - 1))``."""

    save_inputs = (0,)
    saves_output = True

    def forward(self, x, alpha=1.0, scale=1.0, input_scale=1.0, celu_grad_scale=None):
        xp = array_module(x)
        self.alpha, self.scale, self.input_scale = alpha, scale, input_scale
        # CELU's gradient in PyTorch uses 1 / float32(alpha) and recomputes exp from x (not from
        # the output); the forward uses 1 / alpha in double. Kept so gradients match to the bit.
        self.celu_grad_scale = celu_grad_scale
        neg = xp.expm1(xp.minimum(x, 0) * input_scale)  # minimum: no overflow on the unused branch
        neg *= alpha * scale
        return xp.where(x > 0, x * scale, neg)

    def backward(self, g, ns, x):
        # for x <= 0: d/dx = input_scale * (out + scale * alpha)
        if self.celu_grad_scale is not None:
            c = self.celu_grad_scale
            neg = g * c * (self.alpha * self.scale) * ns.exp(ns.minimum(x, x * 0) * c)
            return (ns.where(x > 0, g * self.scale, neg),)
        out = ns.out(self)
        neg = g * ((out + self.scale * self.alpha) * self.input_scale)
        return (ns.where(x > 0, g * self.scale, neg),)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715


class GeluBackward0(Op):
    """GELU, exact (``x * Phi(x)``) or the tanh approximation."""

    save_inputs = (0,)

    def forward(self, x, approximate="none"):
        self.approximate = approximate
        xp = array_module(x)
        if approximate == "tanh":
            inner = (x + _GELU_C * x * x * x) * _SQRT_2_OVER_PI
            return 0.5 * x * (1 + xp.tanh(inner))
        if type(x) is np.ndarray and x.dtype == np.float32:
            # PyTorch's float32 erf formula, chunked; the derivative is nearly free here
            out, self.derivative = gelu_float32(x, with_derivative=STATE.enabled)
            return out
        return 0.5 * x * (1 + erf(_ARRAY_NS, x * _INV_SQRT_2))

    def backward(self, g, ns, x):
        derivative = getattr(self, "derivative", None)
        if derivative is not None and not ns.graph:
            return (g * derivative,)
        if self.approximate == "tanh":
            x2 = x * x
            t = ns.tanh((x + _GELU_C * x2 * x) * _SQRT_2_OVER_PI)
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (_SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x2))
            return (g * d,)
        cdf = 0.5 * (1 + erf(ns, x * _INV_SQRT_2))
        pdf = ns.exp(x * x * -0.5) * _INV_SQRT_2PI
        return (g * (cdf + x * pdf),)


class SiluBackward0(Op):
    save_inputs = (0,)

    def forward(self, x):
        return x * sigmoid(_ARRAY_NS, x)

    def backward(self, g, ns, x):
        s = sigmoid(ns, x)
        return (g * (s * (1 + x * (1 - s))),)


class MishBackward0(Op):
    """``x * tanh(softplus(x))``."""

    save_inputs = (0,)

    def forward(self, x):
        return x * array_module(x).tanh(softplus(_ARRAY_NS, x))

    def backward(self, g, ns, x):
        t = ns.tanh(softplus(ns, x))
        return (g * (t + x * (1 - t * t) * sigmoid(ns, x)),)


class SoftplusBackward0(Op):
    """``log(1 + exp(beta * x)) / beta``, linear where ``beta * x > threshold``."""

    save_inputs = (0,)

    def forward(self, x, beta=1.0, threshold=20.0):
        self.beta, self.threshold = beta, threshold
        z = x * beta if beta != 1 else x
        soft = softplus(_ARRAY_NS, z)
        if beta != 1:
            soft /= beta
        return array_module(x).where(z > threshold, x, soft)

    def backward(self, g, ns, x):
        z = x * self.beta if self.beta != 1 else x
        return (ns.where(z > self.threshold, g, g * sigmoid(ns, z)),)


class HardtanhBackward0(Op):
    """``clamp(x, min_val, max_val)``; zero gradient at and beyond the bounds (PyTorch's)."""

    save_inputs = (0,)

    def forward(self, x, min_val=-1.0, max_val=1.0):
        self.lo, self.hi = min_val, max_val
        return array_module(x).clip(x, min_val, max_val)

    def backward(self, g, ns, x):
        inside = (x > self.lo) & (x < self.hi)
        return (ns.where(inside, g, g * 0),)


class HardsigmoidBackward0(Op):
    """``relu6(x + 3) / 6``; gradient ``g / 6`` strictly inside (-3, 3), else 0.

    PyTorch's kernel multiplies by the float32 constant 1/6 in every dtype, so float64 gradients
    carry that rounding too; it is kept here so the numbers match PyTorch's to the last bit.
    """

    save_inputs = (0,)

    def forward(self, x):
        xp = array_module(x)
        return xp.clip(x + 3, 0, 6) / x.dtype.type(6)

    def backward(self, g, ns, x):
        inside = (x > -3) & (x < 3)
        return (ns.where(inside, g * _ONE_SIXTH_FLOAT32, g * 0),)


class HardswishBackward0(Op):
    """``x * relu6(x + 3) / 6`` (multiplied, then divided, as PyTorch rounds); gradient 0 below -3,
    ``g * (x / 3 + 1/2)`` up to 3 inclusive, ``g`` above."""

    save_inputs = (0,)

    def forward(self, x):
        xp = array_module(x)
        return x * xp.clip(x + 3, 0, 6) / x.dtype.type(6)

    def backward(self, g, ns, x):
        ramp = ns.where(x <= 3, g * (x / 3 + 0.5), g)
        return (ns.where(x < -3, g * 0, ramp),)


_ONE_SIXTH_FLOAT32 = float(np.float32(1.0) / np.float32(6.0))


class PreluKernelBackward0(Op):
    """``x if x > 0 else weight * x``; ``weight`` (C,) is broadcast along dim 1 (or is one value)."""

    save_inputs = (0, 1)

    def forward(self, x, weight):
        self.wshape = weight.shape
        if weight.size == 1:
            self.bshape = ()
        elif x.ndim >= 2:
            self.bshape = (1, weight.shape[0]) + (1,) * (x.ndim - 2)
        else:
            self.bshape = weight.shape
        w = weight.reshape(self.bshape)
        return array_module(x).where(x > 0, x, w * x)

    def backward(self, g, ns, x, weight):
        n = self.needs_input_grad
        pos = x > 0
        gx = gw = None
        if n[0]:
            gx = ns.where(pos, g, g * ns.reshape(weight, self.bshape))
        if n[1]:
            contrib = ns.where(pos, g * 0, g * x)
            gw = ns.reshape(unbroadcast(ns, contrib, self.bshape), self.wshape)
        return gx, gw


class _ArrayOnly:
    """The array namespace's ``graph`` flag for forward code that shares the helpers above."""

    graph = False


_ARRAY_NS = _ArrayOnly()


def apply_float(op_cls, x, name, **params):
    """Runs ``op_cls`` on a floating tensor ``x``; integer inputs raise PyTorch's dtype error."""
    if x._data.dtype.kind not in "fc":
        legacy = {"int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte",
                  "bool": "Bool"}.get(x.dtype.name, x.dtype.name)
        raise RuntimeError(f"\"{name}\" not implemented for '{legacy}'")
    return op_cls.apply(x, **params)
