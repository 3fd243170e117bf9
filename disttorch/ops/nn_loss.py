"""Fused loss ops: cross-entropy (log-softmax + NLL in one op), NLL, MSE, smooth L1 / Huber and
binary cross-entropy (on probabilities and on logits).

``reduction`` is 'none' (per-element losses), 'sum', or 'mean'. Class losses see their input
as rows: (C,), (N, C) or (N, C, d1, ...) logits become an (M, C) matrix with the class axis last
and the targets a length-M vector; the gradient goes back to the input's layout.
"""
from __future__ import annotations

import numpy as np

from .._backend import array_module
from ._base import Op, unbroadcast
from .nn import sigmoid, softplus


# ---- reductions -----------------------------------------------------------------------------------
def check_broadcastable(shape_a, shape_b):
    """PyTorch's RuntimeError for two shapes that do not broadcast (a = input, b = target)."""
    for i in range(1, min(len(shape_a), len(shape_b)) + 1):
        x, y = shape_a[-i], shape_b[-i]
        if x != y and x != 1 and y != 1:
            raise RuntimeError(f"The size of tensor a ({x}) must match the size of tensor b ({y}) at "
                               f"non-singleton dimension {max(len(shape_a), len(shape_b)) - i}")


def reduce_array(arr, reduction):
    if reduction == "none":
        return arr
    if reduction == "sum":
        return arr.sum()
    return arr.mean() if arr.size else arr.sum() * np.nan


def grad_of_reduced(ns, g, reduction, n):
    """Gradient w.r.t. each element of the unreduced loss (broadcasts against it)."""
    if reduction == "mean":
        return g / max(n, 1)
    return g


# ---- class-index losses ---------------------------------------------------------------------------
def _to_rows(x):
    """(C,) -> (1, C); (N, C) as is; (N, C, d1, ...) -> (N*d1*..., C) with the class axis last."""
    if x.ndim == 1:
        return x.reshape(1, -1)
    if x.ndim == 2:
        return x
    c = x.shape[1]
    return array_module(x).moveaxis(x, 1, -1).reshape(-1, c)


def _from_rows(ns, rows, xshape):
    if len(xshape) <= 2:
        return ns.reshape(rows, xshape)
    moved = (xshape[0],) + tuple(xshape[2:]) + (xshape[1],)
    return ns.moveaxis(ns.reshape(rows, moved), -1, 1)


def check_targets(t, n_classes, ignore_index):
    """(valid mask or None when every target counts, targets with ignored entries replaced by 0);
    out-of-range targets raise PyTorch's IndexError."""
    if t.size == 0:
        return None, t
    lo, hi = int(t.min()), int(t.max())
    if lo >= 0 and hi < n_classes and not lo <= ignore_index <= hi:
        return None, t  # the common case: two small reductions, no masks
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= n_classes))
    if bad.any():
        raise IndexError(f"Target {int(t[bad][0])} is out of bounds.")
    return valid, array_module(t).where(valid, t, 0)


class _ClassLoss(Op):
    """Shared bookkeeping of the class-index losses (weights, ignore_index, reduction).

    ``wt`` holds each row's weight (class weight, 0 where ignored); it is None when every row
    weighs 1, which keeps the unweighted loss free of per-row multiplies.
    """

    def _prepare(self, x, target, weight, reduction, ignore_index):
        self.xshape, self.tshape, self.reduction = x.shape, target.shape, reduction
        rows = _to_rows(x)
        self.m, self.c = rows.shape
        valid, self.tc = check_targets(target.reshape(-1), self.c, ignore_index)
        wt = None
        if weight is not None:
            wt = weight[self.tc] if valid is None else weight[self.tc] * valid
        elif valid is not None:
            wt = valid
        self.wt = None if wt is None else wt.astype(x.dtype, copy=False)
        return rows

    def _finish(self, losses):
        if self.wt is not None:
            losses = losses * self.wt
        if self.reduction == "none":
            return losses.reshape(self.tshape)
        total = losses.sum()
        if self.reduction == "sum":
            return total
        self.denom = self.m if self.wt is None else float(self.wt.sum())
        if self.denom == 0:  # every target ignored (or an empty batch): nan, as PyTorch
            return array_module(losses).asarray(np.nan, dtype=losses.dtype)
        return total / self.denom

    def _coef(self, ns, g):
        """The gradient's row multiplier: the reduced loss's gradient times each row's weight;
        a 0-d value when it is the same for every row."""
        if self.reduction == "none":
            coef = ns.reshape(g, (-1,))
        elif self.reduction == "sum":
            coef = g
        else:
            coef = g / self.denom if self.denom else g * np.nan
        if self.wt is None:
            return coef
        return ns.const(self.wt, g) * coef

    def _column(self, ns, coef):
        return coef if coef.ndim == 0 else ns.reshape(coef, (self.m, 1))

    def _onehot(self, dtype):
        xp = array_module(self.tc)
        out = xp.zeros((self.m, self.c), dtype=dtype)
        out[xp.arange(self.m), self.tc] = 1
        return out


def _softmax_rows(xp, rows):
    """Softmax of each row of a 2-D array (a new array), shifted by the row maximum."""
    e = xp.subtract(rows, rows.max(axis=1, keepdims=True))
    xp.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e


class CrossEntropyNll(_ClassLoss):
    """Cross-entropy of logits against class indices: log-softmax and NLL fused.

    Forward uses the log-sum-exp shift, so large logits neither overflow nor lose precision;
    backward is ``(softmax - onehot) * weight[target] * scale``.
    """

    save_inputs = (0,)

    def forward(self, x, target, weight=None, reduction="mean", ignore_index=-100):
        xp = array_module(x)
        rows = self._prepare(x, target, weight, reduction, ignore_index)
        if self.m == 0:
            self.p = rows.copy()
            return self._finish(xp.zeros(0, dtype=x.dtype))
        e = xp.subtract(rows, rows.max(axis=1, keepdims=True))  # shifted logits, then their exp
        picked = e[xp.arange(self.m), self.tc]
        xp.exp(e, out=e)
        # row sums as a matrix-vector product, and one reciprocal per row instead of a division
        # per element: about a quarter of this op's time at 2000 classes
        s = e @ xp.ones(self.c, dtype=e.dtype)
        losses = xp.log(s)
        losses -= picked
        xp.reciprocal(s, out=s)
        e *= s[:, None]
        self.p = e  # softmax rows, kept for backward
        return self._finish(losses)

    def backward(self, g, ns, x):
        coef = self._coef(ns, g)
        if ns.graph:
            p = x.softmax(0 if x.ndim == 1 else 1)
            p_rows = ns.reshape(ns.moveaxis(p, 1, -1), (self.m, self.c)) if x.ndim > 2 else ns.reshape(p, (self.m, self.c))
            rows = (p_rows - ns.const(self._onehot(x._data.dtype), p)) * self._column(ns, coef)
        else:
            # the kept softmax becomes the gradient in place (saves a logits-sized allocation and
            # pass); a second backward through a retained graph recomputes it from the input
            rows = self.p if self.p is not None else _softmax_rows(array_module(x), _to_rows(x))
            self.p = None
            rows *= coef if coef.ndim == 0 else coef[:, None]
            rows[array_module(rows).arange(self.m), self.tc] -= coef
        return (_from_rows(ns, rows, self.xshape),)


CrossEntropyNll.__name__ = CrossEntropyNll.__qualname__ = "NllLossBackward0"


class CrossEntropyNll2d(CrossEntropyNll):
    """The same op on (N, C, d1, ...) input (PyTorch names it NllLoss2dBackward0)."""


CrossEntropyNll2d.__name__ = CrossEntropyNll2d.__qualname__ = "NllLoss2DBackward0"


class NllLossBackward0(_ClassLoss):
    """Negative log-likelihood of log-probabilities: ``-input[i, target[i]] * weight[target[i]]``."""

    def forward(self, x, target, weight=None, reduction="mean", ignore_index=-100):
        xp = array_module(x)
        rows = self._prepare(x, target, weight, reduction, ignore_index)
        picked = rows[xp.arange(self.m), self.tc] if self.m else xp.zeros(0, dtype=x.dtype)
        return self._finish(-picked)

    def backward(self, g, ns):
        coef = self._coef(ns, g)
        dtype = g.dtype if not ns.graph else g._data.dtype
        if ns.graph:
            rows = ns.const(self._onehot(dtype), coef) * self._column(ns, -coef)
        else:
            xp = array_module(g)
            rows = xp.zeros((self.m, self.c), dtype=dtype)
            rows[xp.arange(self.m), self.tc] = -coef
        return (_from_rows(ns, rows, self.xshape),)


class NllLoss2DBackward0(NllLossBackward0):
    """NLL on (N, C, d1, ...) input."""


# ---- elementwise regression / binary losses --------------------------------------------------------
class _PointwiseLoss(Op):
    """``reduce(loss(x, y))`` for broadcastable x, y; subclasses give ``_loss`` and ``_grads``."""

    save_inputs = (0, 1)

    def forward(self, x, y, reduction="mean", **params):
        check_broadcastable(x.shape, y.shape)  # else NumPy's ValueError would escape the op
        self.reduction = reduction
        self.__dict__.update(params)
        loss = self._loss(array_module(x), x, y)
        self.n = loss.size
        return reduce_array(loss, reduction)

    def backward(self, g, ns, x, y):
        gl = grad_of_reduced(ns, g, self.reduction, self.n)
        need = self.needs_input_grad
        dx, dy = self._grads(ns, x, y, need)
        gx = unbroadcast(ns, dx * gl, x.shape) if need[0] else None
        gy = unbroadcast(ns, dy * gl, y.shape) if need[1] else None
        return gx, gy


class MseLossBackward0(_PointwiseLoss):
    def _loss(self, xp, x, y):
        d = x - y
        return d * d

    def _grads(self, ns, x, y, need):
        d = (x - y) * 2
        return d, -d


class SmoothL1LossBackward0(_PointwiseLoss):
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (L1 for beta = 0)."""

    def _loss(self, xp, x, y):
        d = xp.abs(x - y)
        if self.beta == 0:
            return d
        return xp.where(d < self.beta, (0.5 / self.beta) * d * d, d - 0.5 * self.beta)

    def _grads(self, ns, x, y, need):
        d = x - y
        gd = ns.sign(d) if self.beta == 0 else ns.clip(d * (1.0 / self.beta), -1.0, 1.0)
        return gd, -gd


class HuberLossBackward0(_PointwiseLoss):
    """``0.5 d^2`` where ``|d| < delta``, else ``delta * (|d| - 0.5 delta)``."""

    def _loss(self, xp, x, y):
        d = xp.abs(x - y)
        return xp.where(d < self.delta, 0.5 * d * d, self.delta * (d - 0.5 * self.delta))

    def _grads(self, ns, x, y, need):
        gd = ns.clip(x - y, -self.delta, self.delta)
        return gd, -gd


_BCE_EPS = 1e-12  # PyTorch's floor on x * (1 - x) in the BCE gradient


class BinaryCrossEntropyBackward0(_PointwiseLoss):
    """``-w (y log x + (1 - y) log(1 - x))`` on probabilities x; logs clamped at -100 as PyTorch."""

    def _loss(self, xp, x, y):
        if x.size and ((x < 0) | (x > 1)).any():
            raise RuntimeError("all elements of input should be between 0 and 1")
        with np.errstate(divide="ignore"):
            log_x = xp.maximum(xp.log(x), -100)
            log_1mx = xp.maximum(xp.log1p(-x), -100)
        loss = -(y * log_x + (1 - y) * log_1mx)
        return loss * self.weight if self.weight is not None else loss

    def _grads(self, ns, x, y, need):
        w = None if self.weight is None else ns.const(self.weight, x)
        dx = dy = None
        if need[0]:
            dx = (x - y) / ns.clip((1 - x) * x, _BCE_EPS, None)
            dx = dx * w if w is not None else dx
        if need[1]:
            dy = self._log_ratio(ns, x)
            dy = dy * w if w is not None else dy
        return dx, dy

    @staticmethod
    def _log_ratio(ns, x):
        """d loss / d y = log(1 - x) - log(x), with both logs clamped at -100."""
        if ns.graph:
            return (1 - x).log().clamp(min=-100) - x.log().clamp(min=-100)
        with np.errstate(divide="ignore"):
            return np.maximum(np.log1p(-x), -100) - np.maximum(np.log(x), -100)


class BinaryCrossEntropyWithLogitsBackward0(_PointwiseLoss):
    """BCE on logits: ``w ((1 - y) x + (1 + (pw - 1) y) softplus(-x))``, stable for any x."""

    def _loss(self, xp, x, y):
        sp = softplus(_NS, -x)
        if self.pos_weight is not None:
            loss = (1 - y) * x + ((self.pos_weight - 1) * y + 1) * sp
        else:
            loss = (1 - y) * x + sp
        return loss * self.weight if self.weight is not None else loss

    def _grads(self, ns, x, y, need):
        w = None if self.weight is None else ns.const(self.weight, x)
        pw = None if self.pos_weight is None else ns.const(self.pos_weight, x)
        dx = dy = None
        if need[0]:
            s = sigmoid(ns, x)
            dx = s - y if pw is None else (1 - y) - ((pw - 1) * y + 1) * (1 - s)
            dx = dx * w if w is not None else dx
        if need[1]:
            dy = -x if pw is None else (pw - 1) * softplus(ns, -x) - x
            dy = dy * w if w is not None else dy
        return dx, dy


class _Arrays:
    graph = False


_NS = _Arrays()
