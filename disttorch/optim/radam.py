"""RAdam: Adam whose adaptive step is switched on once its variance is tractable (Liu et al.)."""
from __future__ import annotations

import numpy as np

from . import _kernels as K
from .adam import _check_adam_args
from .optimizer import Optimizer, _check_differentiable, _params_with_grad, _real, _to_scalar


class RAdam(Optimizer):
    r"""Implements RAdam.

    With :math:`\gamma` = lr, :math:`\beta_1, \beta_2` = betas, at step t:

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2\\
        \hat m_t &= m_t / (1-\beta_1^t)\\
        \rho_\infty &= 2/(1-\beta_2) - 1, \qquad \rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)\\
        \theta_t &= \theta_{t-1} - \gamma\,\hat m_t\, \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon}\, r_t,
            \quad r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}
            \quad(\rho_t > 5)\\
        \theta_t &= \theta_{t-1} - \gamma\,\hat m_t \quad(\rho_t \le 5)

    where :math:`g_t` includes :math:`\lambda\theta_{t-1}` unless ``decoupled_weight_decay``, which
    instead scales :math:`\theta_{t-1}` by :math:`1-\gamma\lambda`.
    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, decoupled_weight_decay=False,
                 *, foreach=None, maximize=False, capturable=False, differentiable=False):
        _check_adam_args(lr, betas, eps, weight_decay)
        _check_differentiable(differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, decoupled_weight_decay=decoupled_weight_decay,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Performs a single optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        ws = self._workspace
        for group in self.param_groups:
            lr = _to_scalar(group["lr"])
            beta1, beta2 = (_to_scalar(b) for b in group["betas"])
            eps, weight_decay = group["eps"], group["weight_decay"]
            for p in _params_with_grad(group):
                state = self._stepped_state(p, "exp_avg", "exp_avg_sq")
                step = float(state["step"]._data)
                param, grad = _real(p._data), _real(p.grad._data)
                if weight_decay != 0 and group["decoupled_weight_decay"]:
                    param *= 1 - lr * weight_decay
                    g = K.effective_grad(grad, param, 0, group["maximize"], ws)
                else:
                    g = K.effective_grad(grad, param, weight_decay, group["maximize"], ws)
                exp_avg, exp_avg_sq = _real(state["exp_avg"]._data), _real(state["exp_avg_sq"]._data)
                update = ws.get(grad, 1)
                K.lerp_(exp_avg, g, 1 - beta1, update)
                K.decay_addcmul_(exp_avg_sq, beta2, g, 1 - beta2, update)
                bias_correction1 = 1 - beta1 ** step
                bias_correction2 = 1 - beta2 ** step
                np.divide(exp_avg, bias_correction1, out=update)
                update *= lr
                rho_inf = 2 / (1 - beta2) - 1
                rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
                if rho_t > 5.0:
                    rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
                    adaptive = ws.get(grad, 0)  # g is dead once the moments are updated
                    np.sqrt(exp_avg_sq, out=adaptive)
                    adaptive += eps
                    np.divide(bias_correction2 ** 0.5, adaptive, out=adaptive)
                    update *= adaptive
                    update *= rect
                param -= update
                p._vc[0] += 1
        return loss
