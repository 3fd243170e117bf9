"""RMSprop: gradient scaled by a running root-mean-square, optionally centered and with momentum."""
from __future__ import annotations

import numpy as np

from . import _kernels as K
from .optimizer import Optimizer, _check_differentiable, _check_nonnegative, _params_with_grad, _real, _to_scalar


class RMSprop(Optimizer):
    r"""Implements RMSprop.

    With :math:`\gamma` = lr, :math:`\alpha` = alpha, :math:`\mu` = momentum, at step t:

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) + \lambda\theta_{t-1}\\
        v_t &= \alpha v_{t-1} + (1-\alpha) g_t^2\\
        \tilde v_t &= v_t - \bar g_t^2,\ \ \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t
            \quad(\text{centered}),\qquad \tilde v_t = v_t \ (\text{otherwise})\\
        b_t &= \mu b_{t-1} + g_t / (\sqrt{\tilde v_t} + \epsilon),
            \quad \theta_t = \theta_{t-1} - \gamma b_t \quad(\mu > 0)\\
        \theta_t &= \theta_{t-1} - \gamma\, g_t / (\sqrt{\tilde v_t} + \epsilon) \quad(\mu = 0)

    State per parameter: ``step``, ``square_avg`` (v), ``momentum_buffer`` (b, when momentum > 0),
    ``grad_avg`` (:math:`\bar g`, when centered).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        _check_nonnegative(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        _check_differentiable(differentiable)
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay,
                        capturable=capturable, foreach=foreach, maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Performs a single optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        ws = self._workspace
        for group in self.param_groups:
            lr = _to_scalar(group["lr"])
            alpha, eps, momentum, centered = group["alpha"], group["eps"], group["momentum"], group["centered"]
            buffers = ("square_avg",) + ("momentum_buffer",) * bool(momentum > 0) + ("grad_avg",) * bool(centered)
            for p in _params_with_grad(group):
                state = self._stepped_state(p, *buffers)
                param, grad = _real(p._data), _real(p.grad._data)
                g = K.effective_grad(grad, param, group["weight_decay"], group["maximize"], ws)
                square_avg = _real(state["square_avg"]._data)
                avg = ws.get(grad, 1)
                K.decay_addcmul_(square_avg, alpha, g, 1 - alpha, avg)
                if centered:
                    grad_avg = _real(state["grad_avg"]._data)
                    K.lerp_(grad_avg, g, 1 - alpha, avg)
                    np.negative(grad_avg, out=avg)  # square_avg.addcmul(grad_avg, grad_avg, value=-1)
                    avg *= grad_avg
                    avg += square_avg
                    np.sqrt(avg, out=avg)
                else:
                    np.sqrt(square_avg, out=avg)
                avg += eps
                if momentum > 0:
                    buf = _real(state["momentum_buffer"]._data)
                    buf *= momentum
                    np.divide(g, avg, out=avg)  # buf.addcdiv_(g, avg); avg is dead afterwards
                    buf += avg
                    K.add_scaled_(param, buf, -lr, avg)
                else:
                    K.addcdiv_(param, g, avg, -lr, ws.get(grad, 2))
                p._vc[0] += 1
        return loss
