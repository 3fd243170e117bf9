"""Layer norm's array kernels on (M, C) rows: the row statistics and the backward's row sums as
matrix-vector products.

NumPy reduces a short last axis (C = 128 in a small transformer) row by row with per-row
overhead, about 5x slower than one BLAS matrix-vector product over the same data; the backward's
two row means also fold into products with the weight:
``mean(g * w) = g @ w / C`` and ``mean(g * w * xhat) = (g * xhat) @ w / C``, the latter reusing
``g * xhat``, which the weight gradient needs anyway.
"""
from __future__ import annotations

from .._backend import array_module


def layer_norm_rows(x, weight, bias, eps):
    """(out, xhat, invstd) for x (M, C); weight, bias (C,) or None; invstd is (M, 1)."""
    xp = array_module(x)
    c = x.shape[1]
    uniform = xp.full(c, 1.0 / c, dtype=x.dtype)
    mean = x @ uniform
    xhat = x - mean[:, None]
    var = xp.einsum("ij,ij->i", xhat, xhat)
    var *= x.dtype.type(1.0 / c)
    var += x.dtype.type(eps)
    invstd = xp.sqrt(var, out=var)
    xp.reciprocal(invstd, out=invstd)
    invstd = invstd[:, None]
    xhat *= invstd
    if weight is not None:
        out = xhat * weight
    else:
        out = xhat.copy()
    if bias is not None:
        out += bias
    return out, xhat, invstd


def layer_norm_rows_backward(g, xhat, invstd, weight, needs_input, needs_weight, needs_bias):
    """(dx, dweight, dbias) for g, xhat (M, C), invstd (M, 1) and weight (C,) or None; entries
    are None where not needed."""
    xp = array_module(g)
    m, c = g.shape
    scaled_weight = (weight if weight is not None else xp.ones(c, dtype=g.dtype)) * g.dtype.type(1.0 / c)
    g_xhat = g * xhat if (needs_weight or needs_input) else None
    dweight = xp.ones(m, dtype=g.dtype) @ g_xhat if needs_weight else None
    dbias = g.sum(axis=0) if needs_bias else None
    dx = None
    if needs_input:
        mean_dxhat = g @ scaled_weight
        mean_dxhat_xhat = g_xhat @ scaled_weight
        dx = g * weight if weight is not None else g.copy()
        dx -= mean_dxhat[:, None]
        xhat_term = xhat * mean_dxhat_xhat[:, None]
        dx -= xhat_term
        dx *= invstd
    return dx, dweight, dbias
