"""SGD's and Adam's updates in the fewest passes over memory, through ``disttorch/_vector.py``.

The optimizers take this path for a parameter whose arrays MKL can take (``_vector.accelerated``:
float32 / float64 NumPy arrays, contiguous, large enough), and their NumPy passes
(``_kernels.py``) otherwise. The steps and their order are PyTorch's single-tensor ones; what
changes is how many times each element crosses the memory bus. Bytes per element below are for
float32 (read + written; an in-place pass reads and writes its target).

SGD, PyTorch's rounding kept exactly: its ``add(x, alpha=a)`` is one fused multiply-add and so are
MKL's ``axpy`` and ``axpby`` (which rounds ``b*y`` first, as ``buf.mul_(m).add_(g, alpha=1-d)`` does):

- no momentum: ``param += -lr * g``, 12 B (NumPy: 20 B)
- momentum: ``buf = (1-d)*g + m*buf``, ``param += -lr * buf``, 24 B (NumPy: 40 B)
- weight decay adds ``g' = g + wd*param`` (a copy and an axpby, 20 B, into scratch: the gradient
  itself is never written); nesterov adds ``g' += m * buf``, 12 B (20 B when ``g'`` is still the
  raw gradient and must be copied first)
- maximize flips the sign of the coefficient that multiplies the gradient (exact in floating point)

Adam / AdamW (not amsgrad), 64 B against NumPy's 128 B (+8 B for decoupled weight decay in both):

- ``exp_avg.lerp_(g, w)`` as ``exp_avg = w*g + (1-w)*exp_avg`` (one axpby, 12 B, where the lerp
  formula takes a subtraction and an axpy, 24 B; the two differ by rounding: up to an ulp or two)
- ``exp_avg_sq = beta2*exp_avg_sq + (1-beta2)*g*g``: ``vSqr`` into scratch then an axpby, 20 B
- ``param += -step_size * exp_avg / (sqrt(exp_avg_sq) / sqrt(bc2) + eps)``: ``vSqrt`` (PyTorch's own
  routine and mode: the same bits) into scratch, then one ``vLinearFrac`` computing the quotient
  (with ``1/sqrt(bc2)`` multiplied where PyTorch divides by ``sqrt(bc2)``: an ulp at most), then
  an axpy adding it, 32 B
"""
from __future__ import annotations

import numpy as np

from .. import _vector as V


def _signed_copy(dst, src, sign):
    """``dst = sign * src`` for a sign of +1 or -1 (a plain copy or a negation: exact either way)."""
    if sign == 1.0:
        np.copyto(dst, src)
    else:
        np.negative(src, out=dst)


def sgd_chunk(settings, param, grad, tmp0, buf=None):
    """One SGD update on (one contiguous chunk of) a parameter, its gradient, a scratch array and
    the momentum buffer (None without momentum)."""
    first, lr, momentum, dampening, weight_decay, nesterov, maximize = settings
    sign = -1.0 if maximize else 1.0
    g, g_sign = grad, sign  # the effective gradient is g_sign * g
    if weight_decay != 0:
        np.copyto(tmp0, grad)
        V.axpby_(tmp0, weight_decay, param, sign)  # PyTorch's grad.add(param, alpha=weight_decay)
        g, g_sign = tmp0, 1.0
    if buf is not None:
        if first:  # the first buffer is the gradient itself, undampened (PyTorch's choice)
            _signed_copy(buf, g, g_sign)
        else:
            V.axpby_(buf, g_sign * (1 - dampening), g, momentum)
        if nesterov:
            if g is not tmp0:
                _signed_copy(tmp0, g, g_sign)
            V.axpy_(tmp0, momentum, buf)  # grad.add(buf, alpha=momentum)
            g, g_sign = tmp0, 1.0
        else:
            g, g_sign = buf, 1.0
    V.axpy_(param, -lr * g_sign, g)


def adam_chunk(settings, param, grad, exp_avg, exp_avg_sq, tmp0, tmp1):
    """One Adam / AdamW update (not amsgrad) on (one contiguous chunk of) a parameter."""
    step, lr, beta1, beta2, eps, weight_decay, decoupled, maximize = settings
    sign = -1.0 if maximize else 1.0
    g, g_sign = grad, sign
    if weight_decay != 0:
        if decoupled:
            V.scal_(param, 1 - lr * weight_decay)
        else:
            np.copyto(tmp0, grad)
            V.axpby_(tmp0, weight_decay, param, sign)
            g, g_sign = tmp0, 1.0
    weight = 1 - beta1
    V.axpby_(exp_avg, g_sign * weight, g, 1 - weight)  # exp_avg.lerp_(g, 1 - beta1)
    V.sqr(g, tmp1)  # (-g)**2 == g**2: the sign never matters here
    V.axpby_(exp_avg_sq, 1 - beta2, tmp1, beta2)  # exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)

    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2 ** 0.5
    V.sqrt(exp_avg_sq, tmp1)
    # -step_size * exp_avg / (sqrt(v) / bias_correction2_sqrt + eps), then param += that
    V.linear_frac(exp_avg, tmp1, -step_size, 0.0, 1 / bias_correction2_sqrt, eps, tmp1)
    V.axpy_(param, 1.0, tmp1)
