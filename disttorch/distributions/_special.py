"""Differentiable special functions the distributions need and the core lacks: ``lgamma``,
``digamma`` (with ``trigamma`` for its gradient), ``cholesky`` and ``solve_triangular``, plus the
standard Gamma sampler with its implicit reparameterisation gradient.

Forward values are computed in float64 and cast back, so float32 results are correctly rounded.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _backend
from ..autograd import Function
from ..tensor import Tensor

_lgamma_elementwise = np.frompyfunc(math.lgamma, 1, 1)


def _host64(t):
    return _backend.to_host(t._data).astype(np.float64)


def _like(values, ref):
    """``values`` (host float64) as a Tensor with ``ref``'s dtype and device."""
    arr = np.asarray(values, dtype=ref._data.dtype)
    if _backend.is_cuda_array(ref._data):
        arr = _backend.to_cuda(arr, _backend.device_index_of(ref._data))
    return Tensor._wrap(arr)


def _lgamma64(x):
    return _lgamma_elementwise(x).astype(np.float64) if x.ndim else np.float64(math.lgamma(float(x)))


def _digamma64(x):
    """psi(x) by reflection (x < 0.5), recurrence up to x >= 6 and the asymptotic series."""
    x = np.array(x, dtype=np.float64)
    reflect = x < 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(reflect, -np.pi / np.tan(np.pi * x), 0.0)
        x = np.where(reflect, 1.0 - x, x)
        acc = np.zeros_like(x)
        for _ in range(6):
            small = x < 6.0
            acc = acc - np.where(small, 1.0 / x, 0.0)
            x = np.where(small, x + 1.0, x)
        f = 1.0 / (x * x)
        series = np.log(x) - 0.5 / x - f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))
    return series + acc + shift


def _trigamma64(x):
    """psi'(x) for x > 0 by recurrence up to x >= 6 and the asymptotic series."""
    x = np.array(x, dtype=np.float64)
    acc = np.zeros_like(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(6):
            small = x < 6.0
            acc = acc + np.where(small, 1.0 / (x * x), 0.0)
            x = np.where(small, x + 1.0, x)
        f = 1.0 / (x * x)
        series = 1.0 / x + f / 2 + f / x * (1 / 6 - f * (1 / 30 - f * (1 / 42 - f / 30)))
    return series + acc


class _Lgamma(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _like(_lgamma64(_host64(x)), x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _Digamma.apply(x)


class _Digamma(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _like(_digamma64(_host64(x)), x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _like(_trigamma64(_host64(x)), x)


def lgamma(x: Tensor) -> Tensor:
    """log|Gamma(x)| elementwise; gradient digamma(x)."""
    return _Lgamma.apply(x)


def digamma(x: Tensor) -> Tensor:
    """psi(x) = d/dx lgamma(x) elementwise; gradient trigamma(x) (first order only)."""
    return _Digamma.apply(x)


class _Cholesky(Function):
    @staticmethod
    def forward(ctx, a):
        try:
            low = np.linalg.cholesky(_backend.to_host(a._data))
        except np.linalg.LinAlgError:
            raise ValueError("cholesky: the input is not positive-definite") from None
        out = _like(low, a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        # A = L L^T: grad_A = 1/2 L^-T Phi(L^T grad_L) L^-1, symmetrised, where Phi keeps the lower
        # triangle and halves the diagonal.
        (low,) = ctx.saved_tensors
        L = _host64(low)
        G = _host64(grad)
        P = np.tril(np.swapaxes(L, -1, -2) @ G)
        P = P - 0.5 * np.eye(L.shape[-1]) * P
        Linv = np.linalg.inv(L)
        S = np.swapaxes(Linv, -1, -2) @ P @ Linv
        return _like(0.5 * (S + np.swapaxes(S, -1, -2)), grad)


class _SolveLowerTriangular(Function):
    @staticmethod
    def forward(ctx, low, b):
        x = np.linalg.solve(_host64(low), _host64(b))
        out = _like(x, b)
        ctx.save_for_backward(low, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        low, x = ctx.saved_tensors
        L = _host64(low)
        gb = np.linalg.solve(np.swapaxes(L, -1, -2), _host64(grad))
        gl = -np.tril(gb @ np.swapaxes(_host64(x), -1, -2))
        gl = _sum_to(gl, low.shape)
        gb = _sum_to(gb, x.shape if tuple(grad.shape) == tuple(x.shape) else grad.shape)
        return _like(gl, low), _like(gb, grad)


def _sum_to(a, shape):
    shape = tuple(shape)
    while a.ndim > len(shape):
        a = a.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and a.shape[i] != 1:
            a = a.sum(axis=i, keepdims=True)
    return a


def cholesky(a: Tensor) -> Tensor:
    """Lower Cholesky factor of a (batch of) symmetric positive-definite matrices, differentiable."""
    return _Cholesky.apply(a)


def solve_lower_triangular(low: Tensor, b: Tensor) -> Tensor:
    """X with low @ X = b (low lower-triangular, batched, broadcast), differentiable in both."""
    shape = np.broadcast_shapes(tuple(low.shape[:-2]), tuple(b.shape[:-2]))
    low = low.expand(*shape, *low.shape[-2:])
    b = b.expand(*shape, *b.shape[-2:])
    return _SolveLowerTriangular.apply(low, b)


# ---- the standard Gamma sampler and its implicit reparameterisation gradient --------------------

def _gammainc_lower(a, x):
    """Regularised lower incomplete gamma P(a, x) in float64 (series below a+1, continued fraction above)."""
    a, x = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(x, np.float64))
    out = np.zeros(a.shape)
    with np.errstate(all="ignore"):
        log_front = a * np.log(np.where(x > 0, x, 1.0)) - x - _lgamma64(a)
        series = x < a + 1
        # series: P = e^{-x} x^a / Gamma(a+1) * sum_n x^n / ((a+1)...(a+n))
        term = 1.0 / a
        total = term.copy()
        ap = a.copy()
        for _ in range(500):
            ap = ap + 1
            term = term * x / ap
            total = total + term
        p_series = total * np.exp(log_front)
        # continued fraction for Q (modified Lentz)
        tiny = 1e-300
        b = x + 1 - a
        c = np.full(a.shape, 1 / tiny)
        d = 1 / np.where(b == 0, tiny, b)
        h = d.copy()
        for i in range(1, 500):
            an = -i * (i - a)
            b = b + 2
            d = an * d + b
            d = 1 / np.where(np.abs(d) < tiny, tiny, d)
            c = b + an / c
            c = np.where(np.abs(c) < tiny, tiny, c)
            h = h * d * c
        p_cf = 1 - np.exp(log_front) * h
    out = np.where(series, p_series, p_cf)
    return np.where(x <= 0, 0.0, out)


def standard_gamma_grad(alpha, x):
    """d x / d alpha for x ~ Gamma(alpha, 1) at fixed CDF value: -(dP/dalpha) / density."""
    alpha = np.asarray(alpha, np.float64)
    x = np.asarray(x, np.float64)
    h = 1e-5 * np.maximum(alpha, 1e-3)
    dP = (_gammainc_lower(alpha + h, x) - _gammainc_lower(alpha - h, x)) / (2 * h)
    with np.errstate(all="ignore"):
        log_density = (alpha - 1) * np.log(x) - x - _lgamma64(alpha)
        return -dP / np.exp(log_density)


class _StandardGamma(Function):
    @staticmethod
    def forward(ctx, alpha, draws):
        out = _like(draws, alpha)
        ctx.save_for_backward(alpha, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        alpha, x = ctx.saved_tensors
        return grad * _like(standard_gamma_grad(_host64(alpha), _host64(x)), x), None


def standard_gamma(alpha: Tensor) -> Tensor:
    """One Gamma(alpha, 1) draw per element of ``alpha``, differentiable in ``alpha`` (implicit
    reparameterisation, as PyTorch's ``_standard_gamma``); zero draws are lifted to the dtype's tiny."""
    from ..random import rng
    draws = rng().standard_gamma(_host64(alpha))
    draws = np.maximum(draws, np.finfo(alpha._data.dtype).tiny)
    return _StandardGamma.apply(alpha, draws)
