"""NAdam: Adam with Nesterov momentum and a momentum-decay schedule (Dozat)."""
from __future__ import annotations

import numpy as np

from . import _kernels as K
from .adam import _check_adam_args
from .optimizer import Optimizer, _check_differentiable, _check_nonnegative, _params_with_grad, _real, _to_scalar


class NAdam(Optimizer):
    r"""Implements NAdam.

    With :math:`\gamma` = lr, :math:`\beta_1, \beta_2` = betas, :math:`\psi` = momentum_decay, at step t:

    .. math::
        \mu_t &= \beta_1\,(1 - \tfrac12\, 0.96^{t\psi}), \qquad
            \mu_{t+1} = \beta_1\,(1 - \tfrac12\, 0.96^{(t+1)\psi})\\
        \Pi_t &= \prod_{i\le t}\mu_i \quad(\text{state ``mu\_product``})\\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2\\
        d_t &= \sqrt{v_t / (1-\beta_2^t)} + \epsilon\\
        \theta_t &= \theta_{t-1} - \gamma\frac{1-\mu_t}{1-\Pi_t}\frac{g_t}{d_t}
            - \gamma\frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\frac{m_t}{d_t}

    where :math:`g_t` includes :math:`\lambda\theta_{t-1}` unless ``decoupled_weight_decay``, which
    instead scales :math:`\theta_{t-1}` by :math:`1-\gamma\lambda`.
    State per parameter: ``step``, ``mu_product``, ``exp_avg``, ``exp_avg_sq``.
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        _check_adam_args(lr, betas, eps, weight_decay)
        _check_nonnegative(momentum_decay=momentum_decay)
        _check_differentiable(differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Performs a single optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        ws = self._workspace
        for group in self.param_groups:
            lr = _to_scalar(group["lr"])
            beta1, beta2 = (_to_scalar(b) for b in group["betas"])
            eps, weight_decay, momentum_decay = group["eps"], group["weight_decay"], group["momentum_decay"]
            for p in _params_with_grad(group):
                state = self._stepped_state(p, "exp_avg", "exp_avg_sq", mu_product=1.0)
                step = float(state["step"]._data)
                bias_correction2 = 1 - beta2 ** step
                param, grad = _real(p._data), _real(p.grad._data)
                if weight_decay != 0 and group["decoupled_weight_decay"]:
                    param *= 1 - lr * weight_decay
                    g = K.effective_grad(grad, param, 0, group["maximize"], ws)
                else:
                    g = K.effective_grad(grad, param, weight_decay, group["maximize"], ws)
                mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
                mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
                mu_product_t = state["mu_product"]
                mu_product_t._data *= mu  # kept in the scalar dtype (float32), as PyTorch does
                mu_product = float(mu_product_t._data)
                exp_avg, exp_avg_sq = _real(state["exp_avg"]._data), _real(state["exp_avg_sq"]._data)
                denom = ws.get(grad, 1)
                K.lerp_(exp_avg, g, 1 - beta1, denom)
                K.decay_addcmul_(exp_avg_sq, beta2, g, 1 - beta2, denom)
                np.divide(exp_avg_sq, bias_correction2, out=denom)
                np.sqrt(denom, out=denom)
                denom += eps
                mu_product_next = mu_product * mu_next
                tmp = ws.get(grad, 2)
                K.addcdiv_(param, g, denom, -lr * (1.0 - mu) / (1.0 - mu_product), tmp)
                K.addcdiv_(param, exp_avg, denom, (-lr * mu_next) / (1.0 - mu_product_next), tmp)
                p._vc[0] += 1
        return loss
