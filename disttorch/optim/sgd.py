"""Stochastic gradient descent, optionally with momentum / Nesterov momentum (PyTorch's SGD)."""
from __future__ import annotations

import functools

import numpy as np

from . import _fused, _kernels as K, _updates
from ._updates import ScratchSlot, Update
from .. import _vector
from .optimizer import Optimizer, _check_differentiable, _empty_like, _params_with_grad, _real, _to_scalar
from ..tensor import Tensor


class SGD(Optimizer):
    r"""Implements stochastic gradient descent (optionally with momentum).

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta_{t-1})`, at step t:

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) + \lambda\,\theta_{t-1}
              \quad(\text{minus sign when maximize}; \lambda = \text{weight\_decay})\\
        b_t &= g_t \ (t = 1), \qquad b_t = \mu\, b_{t-1} + (1-\tau)\, g_t \ (t > 1)
              \quad(\text{only when } \mu = \text{momentum} \neq 0; \tau = \text{dampening})\\
        g_t &\leftarrow g_t + \mu\, b_t \ (\text{nesterov}), \qquad g_t \leftarrow b_t \ (\text{otherwise})\\
        \theta_t &= \theta_{t-1} - \gamma\, g_t \quad(\gamma = \text{lr})

    State per parameter: ``momentum_buffer`` (only when momentum is non-zero).

    Args:
        params: parameters or parameter groups to optimize.
        lr (float): learning rate (default: 1e-3).
        momentum (float): momentum factor (default: 0).
        dampening (float): dampening for momentum (default: 0).
        weight_decay (float): L2 penalty (default: 0).
        nesterov (bool): Nesterov momentum; needs momentum > 0 and zero dampening (default: False).
        maximize (bool): maximize the objective instead of minimizing (default: False).
        foreach, fused: accepted for PyTorch compatibility; disttorch has one implementation.
        differentiable: must be False.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        _check_differentiable(differentiable)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Performs a single optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        updates = []
        for group in self.param_groups:
            lr = _to_scalar(group["lr"])
            momentum, dampening = group["momentum"], group["dampening"]
            weight_decay, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
            for p in _params_with_grad(group):
                param, grad = _real(p._data), _real(p.grad._data)
                buf, first = None, False
                if momentum != 0:
                    state = self.state[p]
                    buf_t = state.get("momentum_buffer")
                    if buf_t is None:
                        buf_t = state["momentum_buffer"] = _empty_like(p)
                        first = True
                    buf = _real(buf_t._data)
                settings = (first, lr, momentum, dampening, weight_decay, nesterov, maximize)
                state_arrays = [buf] if buf is not None else []
                if _vector.accelerated(param, grad, *state_arrays):  # MKL: fused passes (optim/_fused.py)
                    tmp0 = ScratchSlot(0) if (weight_decay != 0 or nesterov) else grad
                    operands = [param, grad, tmp0] + state_arrays
                    update = functools.partial(_fused.sgd_chunk, settings)
                else:
                    # scratch slot 0 only where the update writes it; otherwise grad just holds its
                    # place among the operands and is never written
                    tmp0 = ScratchSlot(0) if (maximize or weight_decay != 0 or nesterov) else grad
                    operands = [param, grad, tmp0, ScratchSlot(1)] + state_arrays
                    update = functools.partial(_sgd_chunk, settings)
                updates.append(Update(update, operands, param.size))
                p._vc[0] += 1
        _updates.run(updates, self._workspace_for)  # one split over the intra-op threads
        return loss


def _sgd_chunk(settings, param, grad, tmp0, tmp1, buf=None):
    _sgd_update(param, grad, buf, K.Scratch(tmp0, tmp1), *settings)


def _sgd_update(param, grad, buf, ws, first, lr, momentum, dampening, weight_decay, nesterov, maximize):
    """One parameter's update, in place (or one contiguous chunk of it: every pass is elementwise)."""
    g = K.effective_grad(grad, param, weight_decay, maximize, ws)
    if buf is not None:
        if first:
            buf[...] = g  # the first buffer is the gradient itself, undampened (PyTorch's choice)
        else:
            buf *= momentum
            K.add_scaled_(buf, g, 1 - dampening, ws.get(grad, 1))
        if nesterov:
            tmp = ws.get(grad, 1)
            np.multiply(buf, momentum, out=tmp)
            g = np.add(g, tmp, out=ws.get(grad, 0))
        else:
            g = buf
    K.add_scaled_(param, g, -lr, ws.get(grad, 1))
