"""Adadelta: unit-corrected steps from running averages of squared gradients and updates."""
from __future__ import annotations

import numpy as np

from . import _kernels as K
from .optimizer import Optimizer, _check_differentiable, _check_nonnegative, _params_with_grad, _real, _to_scalar


class Adadelta(Optimizer):
    r"""Implements Adadelta.

    With :math:`\gamma` = lr, :math:`\rho` = rho, at step t:

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) + \lambda\theta_{t-1}\\
        v_t &= \rho v_{t-1} + (1-\rho) g_t^2\\
        \Delta x_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t\\
        u_t &= \rho u_{t-1} + (1-\rho)\Delta x_t^2\\
        \theta_t &= \theta_{t-1} - \gamma\Delta x_t

    State per parameter: ``step``, ``square_avg`` (v), ``acc_delta`` (u).
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        _check_nonnegative(lr=lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        _check_nonnegative(eps=eps, weight_decay=weight_decay)
        _check_differentiable(differentiable)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, capturable=capturable,
                        foreach=foreach, differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Performs a single optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        ws = self._workspace
        for group in self.param_groups:
            lr = _to_scalar(group["lr"])
            rho, eps = group["rho"], group["eps"]
            for p in _params_with_grad(group):
                state = self._stepped_state(p, "square_avg", "acc_delta")
                param, grad = _real(p._data), _real(p.grad._data)
                g = K.effective_grad(grad, param, group["weight_decay"], group["maximize"], ws)
                square_avg, acc_delta = _real(state["square_avg"]._data), _real(state["acc_delta"]._data)
                std, delta = ws.get(grad, 1), ws.get(grad, 2)
                K.decay_addcmul_(square_avg, rho, g, 1 - rho, std)
                np.add(square_avg, eps, out=std)
                np.sqrt(std, out=std)
                np.add(acc_delta, eps, out=delta)
                np.sqrt(delta, out=delta)
                delta /= std
                delta *= g
                K.decay_addcmul_(acc_delta, rho, delta, 1 - rho, std)
                K.add_scaled_(param, delta, -lr, std)
                p._vc[0] += 1
        return loss
