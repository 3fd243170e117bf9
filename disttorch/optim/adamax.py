"""Adamax: Adam with the infinity norm in place of the second moment."""
from __future__ import annotations

import numpy as np

from . import _kernels as K
from .adam import _check_adam_args
from .optimizer import Optimizer, _check_differentiable, _params_with_grad, _real, _to_scalar


class Adamax(Optimizer):
    r"""Implements Adamax.

    With :math:`\gamma` = lr, :math:`\beta_1, \beta_2` = betas, at step t:

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) + \lambda\theta_{t-1}\\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t\\
        u_t &= \max(\beta_2 u_{t-1},\ |g_t| + \epsilon)\\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,\frac{m_t}{u_t}

    State per parameter: ``step``, ``exp_avg`` (m), ``exp_inf`` (u).
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False):
        _check_adam_args(lr, betas, eps, weight_decay)
        _check_differentiable(differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Performs a single optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        ws = self._workspace
        for group in self.param_groups:
            lr = _to_scalar(group["lr"])
            beta1, beta2 = (_to_scalar(b) for b in group["betas"])
            eps = group["eps"]
            for p in _params_with_grad(group):
                state = self._stepped_state(p, "exp_avg", "exp_inf")
                step_t = state["step"]
                param, grad = _real(p._data), _real(p.grad._data)
                g = K.effective_grad(grad, param, group["weight_decay"], group["maximize"], ws)
                exp_avg, exp_inf = _real(state["exp_avg"]._data), _real(state["exp_inf"]._data)
                tmp = ws.get(grad, 1)
                K.lerp_(exp_avg, g, 1 - beta1, tmp)
                exp_inf *= beta2
                np.abs(g, out=tmp)
                tmp += eps
                np.maximum(exp_inf, tmp, out=exp_inf)
                clr = lr / (1 - beta1 ** float(step_t._data))
                K.addcdiv_(param, exp_avg, exp_inf, -clr, tmp)
                p._vc[0] += 1
        return loss
