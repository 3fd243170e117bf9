"""In-place array kernels shared by the optimizers.

Each writes into existing arrays with ufunc ``out=`` and takes its temporaries from the
optimizer's workspace, so an update allocates nothing of parameter size. Scalars are Python
floats: with NumPy 2's promotion they take the array's dtype, so float32 stays float32. The
operation order follows PyTorch's CPU kernels (``addcmul``: ``self + value * t1 * t2``,
``addcdiv``: ``self + value * t1 / t2``, ``lerp`` switching formula at weight 0.5) so results
agree to float32 rounding.
"""
from __future__ import annotations

import numpy as np


class Scratch:
    """Fixed scratch arrays served like the optimizer workspace's ``get(like, slot)``: the slots
    of one contiguous chunk when an update is split over the intra-op threads (``_intra_op.py``)."""

    __slots__ = ("tmps",)

    def __init__(self, *tmps):
        self.tmps = tmps

    def get(self, like, slot):
        return self.tmps[slot]


def effective_grad(grad, param, weight_decay, maximize, ws):
    """``g = ±grad (+ weight_decay * param)``: the raw gradient itself when nothing applies."""
    g = grad
    if maximize:
        g = np.negative(grad, out=ws.get(grad, 0))
    if weight_decay != 0:
        tmp = ws.get(grad, 1)
        np.multiply(param, weight_decay, out=tmp)
        g = np.add(g, tmp, out=ws.get(grad, 0))
    return g


def lerp_(start, end, weight, tmp):
    """``start += weight * (end - start)`` in place (PyTorch's two-sided lerp formula)."""
    np.subtract(end, start, out=tmp)
    if abs(weight) < 0.5:
        tmp *= weight
        start += tmp
    else:
        tmp *= 1.0 - weight
        np.subtract(end, tmp, out=start)


def decay_addcmul_(avg, decay, g, value, tmp):
    """``avg = avg * decay + value * g * g`` (the second-moment running average)."""
    avg *= decay
    np.multiply(g, value, out=tmp)
    tmp *= g
    avg += tmp


def addcdiv_(target, t1, t2, value, tmp):
    """``target += value * t1 / t2``."""
    np.multiply(t1, value, out=tmp)
    tmp /= t2
    target += tmp


def add_scaled_(target, src, alpha, tmp):
    """``target += alpha * src``."""
    if alpha == 1:
        target += src
    elif alpha == -1:
        target -= src
    else:
        np.multiply(src, alpha, out=tmp)
        target += tmp
