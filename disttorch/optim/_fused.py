"""SGD's and Adam's updates in the fewest passes over memory, through ``disttorch/_vector.py``.

The optimizers take this path for a parameter whose arrays MKL can take (``_vector.accelerated``:
float32 / float64 NumPy arrays, contiguous, large enough), and their NumPy passes
(``_kernels.py``) otherwise. The steps and their order are PyTorch's single-tensor ones; what
changes is how many times each element crosses the memory bus. Bytes per element below are for
float32 (read + written; an in-place pass reads and writes its target).

SGD, PyTorch's rounding kept exactly: its ``add(x, alpha=a)`` is one fused multiply-add and so are
MKL's ``axpy`` and ``axpby`` (which rounds ``b*y`` first, as ``buf.mul_(m).add_(g, alpha=1-d)`` does),
so the parameters come out bit-equal to PyTorch 2.13's (measured on this project's Xeon, every
option; ``tests/optim/test_fused_updates.py``):

- no momentum: ``param += -lr * g``, 12 B (NumPy: 20 B)
- momentum: ``buf = (1-d)*g + m*buf``, ``param += -lr * buf``, 24 B (NumPy: 40 B)
- weight decay adds ``g' = g + wd*param`` (a copy and an axpby, 20 B, into scratch: the gradient
  itself is never written); nesterov adds ``g' += m * buf``, 12 B (20 B when ``g'`` is still the
  raw gradient and must be copied first)
- maximize flips the sign of the coefficient that multiplies the gradient (exact in floating point)

Adam / AdamW, 64 B against NumPy's 128 B (+8 B for decoupled weight decay in both, +12 B for
amsgrad's ``max_exp_avg_sq = maximum(max_exp_avg_sq, exp_avg_sq)`` in both, NumPy's pass):

- ``exp_avg.lerp_(g, w)`` as ``exp_avg = w*g + (1-w)*exp_avg`` (one axpby, 12 B, where the lerp
  formula takes a subtraction and an axpy, 24 B; the two differ by rounding: up to an ulp or two)
- ``exp_avg_sq = beta2*exp_avg_sq + (1-beta2)*g*g``: ``vSqr`` into scratch then an axpby, 20 B
- ``param += -step_size * exp_avg / (sqrt(exp_avg_sq) / sqrt(bc2) + eps)``: ``vSqrt`` (PyTorch's own
  routine and mode: the same bits) into scratch, then one ``vLinearFrac`` computing the quotient
  (with ``1/sqrt(bc2)`` multiplied where PyTorch divides by ``sqrt(bc2)``: an ulp at most), then
  an axpy adding it, 32 B

After 10 steps 11-13% of float32 elements differ from PyTorch's, by at most 2 ulp of max(|p|, 1)
(the NumPy passes: 6%, at most 2 ulp). The exact lerp would bring that to 8% for 12 B more.
"""
from __future__ import annotations

import numpy as np

from .. import _vector as V

# The chunks' arrays were checked as a whole (``_vector.accelerated``) by the optimizer and are
# distinct allocations (parameter, gradient, state, scratch), or the very same array: MKL's
# routines are called on their addresses directly, one ctypes call per pass.


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
    mkl, n = V.routines(param), param.size
    p_param, p_grad = V.address(param), V.address(grad)
    sign = -1.0 if maximize else 1.0
    g, p_g, g_sign = grad, p_grad, sign  # the effective gradient is g_sign * g
    if weight_decay != 0:
        np.copyto(tmp0, grad)
        p_g = V.address(tmp0)
        mkl.axpby(n, weight_decay, p_param, 1, sign, p_g, 1)  # PyTorch's grad.add(param, alpha=weight_decay)
        g, g_sign = tmp0, 1.0
    if buf is not None:
        p_buf = V.address(buf)
        if first:  # the first buffer is the gradient itself, undampened (PyTorch's choice)
            _signed_copy(buf, g, g_sign)
        else:  # buf.mul_(momentum).add_(g, alpha=1 - dampening)
            mkl.axpby(n, g_sign * (1 - dampening), p_g, 1, momentum, p_buf, 1)
        if nesterov:
            if g is not tmp0:
                _signed_copy(tmp0, g, g_sign)
                p_g = V.address(tmp0)
            mkl.axpy(n, momentum, p_buf, 1, p_g, 1)  # grad.add(buf, alpha=momentum)
            g_sign = 1.0
        else:
            p_g, g_sign = p_buf, 1.0
    mkl.axpy(n, -lr * g_sign, p_g, 1, p_param, 1)  # param.add_(grad, alpha=-lr)


def adam_chunk(settings, param, grad, exp_avg, exp_avg_sq, tmp0, tmp1, max_exp_avg_sq=None):
    """One Adam / AdamW update on (one contiguous chunk of) a parameter; ``max_exp_avg_sq`` with
    amsgrad."""
    step, lr, beta1, beta2, eps, weight_decay, decoupled, maximize = settings
    mkl, n, mode = V.routines(param), param.size, V.VML_MODE
    p_param, p_g, p_avg, p_sq, p_tmp = (V.address(a) for a in (param, grad, exp_avg, exp_avg_sq, tmp1))
    g_sign = -1.0 if maximize else 1.0
    if weight_decay != 0:
        if decoupled:
            mkl.scal(n, 1 - lr * weight_decay, p_param, 1)  # param.mul_(1 - lr * weight_decay)
        else:
            np.copyto(tmp0, grad)
            p_g = V.address(tmp0)
            mkl.axpby(n, weight_decay, p_param, 1, g_sign, p_g, 1)  # grad.add(param, alpha=weight_decay)
            g_sign = 1.0
    weight = 1 - beta1
    mkl.axpby(n, g_sign * weight, p_g, 1, 1 - weight, p_avg, 1)  # exp_avg.lerp_(g, 1 - beta1)
    mkl.sqr(n, p_g, p_tmp, mode)  # (-g)**2 == g**2: the sign never matters here
    mkl.axpby(n, 1 - beta2, p_tmp, 1, beta2, p_sq, 1)  # exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)

    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2 ** 0.5
    second = p_sq
    if max_exp_avg_sq is not None:  # torch.maximum: NaN wins, as in NumPy's maximum (VML's Fmax drops it)
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = V.address(max_exp_avg_sq)
    mkl.sqrt(n, second, p_tmp, mode)
    # tmp = -step_size * exp_avg / (sqrt(v) / bias_correction2_sqrt + eps), then param += tmp
    mkl.linear_frac(n, p_avg, p_tmp, -step_size, 0.0, 1 / bias_correction2_sqrt, eps, p_tmp, mode)
    mkl.axpy(n, 1.0, p_tmp, 1, p_param, 1)
