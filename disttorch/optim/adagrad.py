"""Adagrad: per-coordinate learning rates from the running sum of squared gradients."""
from __future__ import annotations

import numpy as np

from . import _kernels as K
from .optimizer import (Optimizer, _check_differentiable, _check_nonnegative, _new_scalar, _params_with_grad,
                         _real, _to_scalar)
from ..tensor import Tensor
from .. import _backend


class Adagrad(Optimizer):
    r"""Implements Adagrad.

    With :math:`\gamma` = lr, :math:`\eta` = lr_decay, :math:`\lambda` = weight_decay, at step t:

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) + \lambda\theta_{t-1}\\
        \tilde\gamma &= \gamma / (1 + (t-1)\eta)\\
        s_t &= s_{t-1} + g_t^2 \qquad(s_0 = \text{initial\_accumulator\_value})\\
        \theta_t &= \theta_{t-1} - \tilde\gamma\, \frac{g_t}{\sqrt{s_t} + \epsilon}

    State per parameter (created at construction, as in PyTorch): ``step`` and ``sum`` (s).
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        _check_nonnegative(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                           initial_accumulator_value=initial_accumulator_value, eps=eps)
        _check_differentiable(differentiable)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p)

    def _init_state(self, p):
        state = self.state[p]
        state["step"] = _new_scalar(0.0)
        init = self.defaults["initial_accumulator_value"]
        if p._data.dtype.kind == "c":
            init = complex(init, init)
        state["sum"] = Tensor._wrap(_backend.array_module(p._data).full_like(p._data, init))
        return state

    def share_memory(self):
        """Kept for PyTorch compatibility: disttorch state is already in process memory."""

    def step(self, closure=None):
        """Performs a single optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        ws = self._workspace
        for group in self.param_groups:
            lr = _to_scalar(group["lr"])
            lr_decay, eps = group["lr_decay"], group["eps"]
            for p in _params_with_grad(group):
                state = self.state[p]
                if len(state) == 0:  # a parameter added later through add_param_group
                    state = self._init_state(p)
                step_t = state["step"]
                step_t._data += 1
                step = float(step_t._data)
                param, grad = _real(p._data), _real(p.grad._data)
                g = K.effective_grad(grad, param, group["weight_decay"], group["maximize"], ws)
                clr = lr / (1 + (step - 1) * lr_decay)
                state_sum = _real(state["sum"]._data)
                tmp = ws.get(grad, 1)
                np.multiply(g, g, out=tmp)  # state_sum.addcmul_(g, g, value=1)
                state_sum += tmp
                std = np.sqrt(state_sum, out=tmp)
                std += eps
                K.addcdiv_(param, g, std, -clr, ws.get(grad, 2))
                p._vc[0] += 1
        return loss
