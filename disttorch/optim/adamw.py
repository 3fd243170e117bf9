"""AdamW: Adam with weight decay decoupled from the gradient (Loshchilov & Hutter)."""
from __future__ import annotations

from .adam import Adam


class AdamW(Adam):
    r"""Implements AdamW: Adam whose weight decay shrinks the parameters directly.

    .. math::
        \theta_{t-1} &\leftarrow \theta_{t-1}(1 - \gamma\lambda)\\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2\\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    where :math:`\hat v_t = \max(\hat v_{t-1}, v_t)` with amsgrad and :math:`v_t` otherwise.
    Same state as :class:`Adam`; the weight decay defaults to 1e-2.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True  # an AdamW state dict may come from plain Adam
