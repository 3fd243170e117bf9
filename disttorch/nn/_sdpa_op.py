"""``scaled_dot_product_attention`` as one autograd node: scores, mask, softmax, dropout and the
weighted sum in the forward, and their gradients in one backward.

Composed from separate ops the attention is a matmul, a scale, a masked fill with a fresh
(L, S) mask, a softmax, a dropout and a matmul: seven nodes, each backward allocating its own
(..., L, S) gradient. Here the causal mask is a cached boolean triangle applied in place, the
softmax's backward is fused (``w * (dw - sum(w * dw))``), and fully masked rows give zero weights
(as PyTorch's math kernel) without a separate scan.

``SdpaBackward0.apply(q, k, v, scale=, causal=, mask=, keep=)``: q (..., L, E), k (..., S, E),
v (..., S, Ev) with equal leading dimensions; ``mask`` a constant array broadcastable to
(..., L, S), boolean (True = may attend) or float (added to the scores); ``keep`` the dropout's
keep mask already scaled by 1 / (1 - p), or None. Under ``create_graph`` the backward is rebuilt
from differentiable ops, so higher-order gradients still work.
"""
from __future__ import annotations

import functools

import numpy as np

from .._backend import array_module
from .. import _gemm
from ..ops._base import Op


@functools.lru_cache(maxsize=16)
def _future_positions(length, source):
    """(L, S) booleans, True above the diagonal: the keys each query may not attend to."""
    return np.triu(np.ones((length, source), dtype=bool), 1)


def _masked_positions(xp, length, source, causal, mask):
    """Where scores become -inf (or None): the causal triangle and/or a boolean mask's False."""
    hidden = None
    if causal:
        hidden = _future_positions(length, source)
        if xp is not np:
            hidden = xp.asarray(hidden)
    if mask is not None and mask.dtype == bool:
        hidden = ~mask if hidden is None else (hidden | ~mask)
    return hidden


_NO_SHIFT_BOUND = 60.0  # exp(+-60) and sums of millions of such terms stay finite, normal float32


def _row_sums(xp, a):
    """Sums over the last axis, keepdims, as one matrix-vector product (a is C-contiguous): NumPy's
    row-by-row reduction of short rows costs several times more."""
    ones = xp.ones(a.shape[-1], dtype=a.dtype)
    return (a.reshape(-1, a.shape[-1]) @ ones).reshape(a.shape[:-1] + (1,))


class SdpaBackward0(Op):
    save_inputs = (0, 1, 2)

    def forward(self, q, k, v, scale=1.0, causal=False, mask=None, keep=None):
        xp = array_module(q)
        self.scale, self.causal, self.mask, self.keep = scale, causal, mask, keep
        scores = _gemm.matmul(q, xp.swapaxes(k, -1, -2))
        scores *= xp.asarray(scale, dtype=scores.dtype)
        if mask is not None and mask.dtype != bool:
            scores += mask
        # Softmax subtracts each row's maximum only to keep exp in range. When every score lies
        # within +-_NO_SHIFT_BOUND, exp neither overflows nor leaves the normal range, and the
        # unshifted quotient is the same up to rounding: two whole-array reductions replace a
        # row-by-row maximum, the slowest pass here (rows are as short as the sequence).
        # (float32 and float64 only: exp(60) overflows half precision)
        shift = (scores.size == 0 or scores.dtype.itemsize < 4
                 or not (-_NO_SHIFT_BOUND <= scores.min() and scores.max() <= _NO_SHIFT_BOUND))
        hidden = _masked_positions(xp, q.shape[-2], k.shape[-2], causal, mask)
        if hidden is not None:
            xp.copyto(scores, -xp.inf, where=hidden)
        if shift:
            top = scores.max(axis=-1, keepdims=True)
            top[xp.isneginf(top)] = 0  # fully masked rows: exp(-inf - 0) = 0 below
            scores -= top
        xp.exp(scores, out=scores)
        total = _row_sums(xp, scores)
        total[total == 0] = xp.inf  # rows with no key to attend to: zero weights, as PyTorch's math path
        xp.reciprocal(total, out=total)
        scores *= total
        self.weights = scores
        return _gemm.matmul(scores if keep is None else scores * keep, v)

    def backward(self, g, ns, q, k, v):
        if ns.graph:
            return self._graph_backward(g, q, k, v)
        xp = array_module(g)
        w, keep = self.weights, self.keep
        n = self.needs_input_grad
        gv = _gemm.matmul(xp.swapaxes(w if keep is None else w * keep, -1, -2), g) if n[2] else None
        if not (n[0] or n[1]):
            return None, None, gv
        gs = _gemm.matmul(g, xp.swapaxes(v, -1, -2))
        if keep is not None:
            gs *= keep
        gs *= w
        row = _row_sums(xp, gs)
        gs -= w * row  # softmax backward: w * (dw - sum(w * dw))
        gs *= xp.asarray(self.scale, dtype=gs.dtype)
        gq = _gemm.matmul(gs, k) if n[0] else None
        gk = _gemm.matmul(xp.swapaxes(gs, -1, -2), q) if n[1] else None
        return gq, gk, gv

    def _graph_backward(self, g, q, k, v):
        """Double-backward path: the same attention from differentiable ops, differentiated with
        ``create_graph`` (g and the saved inputs are Tensors here)."""
        from .. import _torch_api as _T
        from ..autograd import grad as autograd_grad
        from ..tensor import Tensor
        xp = array_module(q._data)
        scores = _T.matmul(q, k.transpose(-2, -1)) * self.scale
        hidden = _masked_positions(xp, q.shape[-2], k.shape[-2], self.causal, self.mask)
        if hidden is not None:
            scores = scores.masked_fill(Tensor._wrap(xp.asarray(hidden)), float("-inf"))
        if self.mask is not None and self.mask.dtype != bool:
            scores = scores + Tensor._wrap(self.mask)
        dead = Tensor._wrap(xp.broadcast_to(xp.isneginf(scores._data).all(axis=-1, keepdims=True),
                                            scores._data.shape))
        weights = _T.softmax(scores.masked_fill(dead, 0.0), -1).masked_fill(dead, 0.0)
        if self.keep is not None:
            weights = weights * Tensor._wrap(self.keep)
        out = _T.matmul(weights, v)
        inputs = (q, k, v)
        wanted = [t for t, need in zip(inputs, self.needs_input_grad) if need]
        found = iter(autograd_grad(out, wanted, g, create_graph=True, allow_unused=True))
        return tuple(next(found) if need else None for need in self.needs_input_grad)


SdpaBackward0.__name__ = SdpaBackward0.__qualname__ = "ScaledDotProductFlashAttentionForCpuBackward0"
