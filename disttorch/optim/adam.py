"""Adam (and, with decoupled weight decay, AdamW): PyTorch's single-tensor update."""
from __future__ import annotations

import functools

import numpy as np

from . import _fused, _kernels as K, _updates
from ._updates import ScratchSlot, Update
from .. import _vector
from .optimizer import Optimizer, _check_differentiable, _check_nonnegative, _params_with_grad, _real, _to_scalar


def _check_adam_args(lr, betas, eps, weight_decay):
    _check_nonnegative(lr=lr, eps=eps)
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    _check_nonnegative(weight_decay=weight_decay)


class Adam(Optimizer):
    r"""Implements Adam.

    With :math:`\gamma` = lr, :math:`\beta_1, \beta_2` = betas, :math:`\lambda` = weight_decay,
    at step t for each parameter with gradient:

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) \quad(\text{minus when maximize})\\
        \theta_{t-1} &\leftarrow (1 - \gamma\lambda)\,\theta_{t-1} \ \text{(decoupled\_weight\_decay)},
            \quad\text{else}\quad g_t \leftarrow g_t + \lambda\theta_{t-1}\\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2\\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \ \text{(amsgrad)}, \quad \hat v_t = v_t \ \text{(otherwise)}\\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    State per parameter: ``step`` (0-d float32 tensor), ``exp_avg`` (m), ``exp_avg_sq`` (v) and,
    with amsgrad, ``max_exp_avg_sq``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        _check_adam_args(lr, betas, eps, weight_decay)
        _check_differentiable(differentiable)
        betas = tuple(_to_scalar(b) for b in betas)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Performs a single optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        updates = []
        for group in self.param_groups:
            lr = _to_scalar(group["lr"])
            beta1, beta2 = (_to_scalar(b) for b in group["betas"])
            eps, weight_decay, amsgrad = group["eps"], group["weight_decay"], group["amsgrad"]
            decoupled = group["decoupled_weight_decay"]
            buffers = ("exp_avg", "exp_avg_sq") + ("max_exp_avg_sq",) * bool(amsgrad)
            for p in _params_with_grad(group):
                state = self._stepped_state(p, *buffers)
                step = float(state["step"]._data)
                param, grad = _real(p._data), _real(p.grad._data)
                exp_avg, exp_avg_sq = _real(state["exp_avg"]._data), _real(state["exp_avg_sq"]._data)
                arrays = [param, grad, exp_avg, exp_avg_sq]
                settings = (step, lr, beta1, beta2, eps, weight_decay, decoupled, group["maximize"])
                if amsgrad:
                    arrays.append(_real(state["max_exp_avg_sq"]._data))
                if _vector.accelerated(*arrays):
                    update = functools.partial(_fused.adam_chunk, settings)  # MKL: fused passes
                else:
                    update = functools.partial(_adam_chunk, settings)
                # the operands in the chunk functions' order: two scratch slots before amsgrad's state
                updates.append(Update(update, arrays[:4] + [ScratchSlot(0), ScratchSlot(1)] + arrays[4:], param.size))
                p._vc[0] += 1
        _updates.run(updates, self._workspace_for)  # one split over the intra-op threads
        return loss


def _adam_chunk(settings, param, grad, exp_avg, exp_avg_sq, tmp0, tmp1, max_exp_avg_sq=None):
    """One parameter's Adam update in place, or the same on one contiguous chunk of every array."""
    step, lr, beta1, beta2, eps, weight_decay, decoupled, maximize = settings
    ws = K.Scratch(tmp0, tmp1)
    if weight_decay != 0 and decoupled:
        param *= 1 - lr * weight_decay
        g = K.effective_grad(grad, param, 0, maximize, ws)
    else:
        g = K.effective_grad(grad, param, weight_decay, maximize, ws)
    tmp = tmp1
    K.lerp_(exp_avg, g, 1 - beta1, tmp)
    K.decay_addcmul_(exp_avg_sq, beta2, g, 1 - beta2, tmp)

    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2 ** 0.5
    second = exp_avg_sq
    if max_exp_avg_sq is not None:
        second = max_exp_avg_sq
        np.maximum(second, exp_avg_sq, out=second)
    denom = np.sqrt(second, out=tmp)
    denom /= bias_correction2_sqrt
    denom += eps
    # Slot 0 held the effective gradient, which is dead by now.
    K.addcdiv_(param, exp_avg, denom, -step_size, tmp0)
