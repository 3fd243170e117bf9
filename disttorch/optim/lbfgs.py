"""L-BFGS (PyTorch's port of minFunc), with an optional strong-Wolfe line search."""
from __future__ import annotations

import numpy as np

from .. import _backend
from .optimizer import Optimizer, _check_nonnegative, _real, _to_scalar
from ..tensor import Tensor
from ._line_search import strong_wolfe


class LBFGS(Optimizer):
    r"""Implements L-BFGS over all parameters flattened into one vector :math:`x`.

    Each ``step(closure)`` runs up to ``max_iter`` iterations. With gradient :math:`g_k`, the
    last ``history_size`` pairs :math:`s_i = x_{i+1}-x_i`, :math:`y_i = g_{i+1}-g_i` (kept when
    :math:`y_i^\top s_i > 10^{-10}`), :math:`\rho_i = 1/y_i^\top s_i` and
    :math:`H_0 = y^\top s / y^\top y` of the newest pair, the direction is the two-loop recursion

    .. math::
        q &= -g_k;\quad \alpha_i = \rho_i s_i^\top q,\ q \leftarrow q - \alpha_i y_i
            \ \ (i = \text{newest}\ldots\text{oldest})\\
        r &= H_0 q;\quad \beta_i = \rho_i y_i^\top r,\ r \leftarrow r + (\alpha_i - \beta_i) s_i
            \ \ (i = \text{oldest}\ldots\text{newest})\\
        d_k &= r, \qquad x_{k+1} = x_k + t_k d_k

    with :math:`d_1 = -g_1` and :math:`t_1 = \min(1, 1/\lVert g_1\rVert_1)\,\text{lr}`, else
    :math:`t_k = \text{lr}`, or :math:`t_k` from the strong-Wolfe line search
    (``line_search_fn="strong_wolfe"``). Iteration stops early when
    :math:`\max|g| \le` tolerance_grad, when :math:`\max|t d| \le` tolerance_change, when the loss
    changes by less than tolerance_change, or after ``max_eval`` closure evaluations.

    Only one parameter group is supported. ``closure`` must clear the gradients, compute the loss,
    call ``backward`` and return the loss.
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        _check_nonnegative(lr=lr)
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"only 'strong_wolfe' is supported as line_search_fn, got {line_search_fn!r}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]

    def __setstate__(self, state):
        super().__setstate__(state)
        self._params = self.param_groups[0]["params"]

    # ---- flat views of the parameters -------------------------------------------------------------
    def _gather_flat_grad(self):
        views = []
        for p in self._params:
            if p.grad is None:
                param = _real(p._data)
                views.append(_backend.array_module(param).zeros(param.size, dtype=param.dtype))
            else:
                views.append(_real(p.grad._data).reshape(-1))
        return _backend.array_module(views[0]).concatenate(views)

    def _add_grad(self, step_size, update):
        """Parameters += step_size * update (the flat vector cut back into parameter shapes)."""
        offset = 0
        for p in self._params:
            param = _real(p._data)
            n = param.size
            param += update[offset:offset + n].reshape(param.shape) * step_size
            p._vc[0] += 1
            offset += n

    def _clone_param(self):
        return [p._data.copy() for p in self._params]

    def _set_param(self, params_data):
        for p, data in zip(self._params, params_data):
            p._data[...] = data
            p._vc[0] += 1

    def _directional_evaluate(self, closure, x, t, d):
        self._add_grad(t, d)
        loss = float(closure())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    # ---- the iteration ------------------------------------------------------------------------------
    def step(self, closure=None):
        """Runs up to ``max_iter`` L-BFGS iterations; returns the loss ``closure()`` gave first."""
        if closure is None:
            raise TypeError("LBFGS.step() requires a closure that re-evaluates the model and returns the loss")
        group = self.param_groups[0]
        lr = _to_scalar(group["lr"])
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]

        def evaluate():
            return self._eval_closure(closure)

        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = evaluate()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        if np.abs(flat_grad).max() <= tolerance_grad:
            return orig_loss

        d = _array(state.get("d"))
        t = _to_scalar(state.get("t"))
        old_dirs = [_array(v) for v in state.get("old_dirs") or []]
        old_stps = [_array(v) for v in state.get("old_stps") or []]
        ro = [_array(v) for v in state.get("ro") or []]
        H_diag = _array(state.get("H_diag"))
        prev_flat_grad = _array(state.get("prev_flat_grad"))
        prev_loss = state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = y.dot(s)
                if ys > 1e-10:  # keep only pairs that preserve positive definiteness
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / y.dot(y)
                num_old = len(old_dirs)
                if "al" not in state:
                    state["al"] = [None] * history_size
                al = state["al"]
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = _tensor(old_stps[i].dot(q) * ro[i])
                    q -= old_dirs[i] * _array(al[i])
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = old_dirs[i].dot(r) * ro[i]
                    r += old_stps[i] * (_array(al[i]) - be_i)

            prev_flat_grad = flat_grad.copy()
            prev_loss = loss
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / np.abs(flat_grad).sum()) * lr
            else:
                t = lr
            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:  # not a descent direction
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = self._clone_param()

                def obj_func(x, step, direction):
                    return self._directional_evaluate(evaluate, x, step, direction)

                loss, flat_grad, t, ls_func_evals = strong_wolfe(obj_func, x_init, t, d, loss, flat_grad, gtd,
                                                                  max_ls=max_eval - current_evals)
                self._add_grad(t, d)
                opt_cond = np.abs(flat_grad).max() <= tolerance_grad
            else:
                self._add_grad(t, d)
                opt_cond = False
                if n_iter != max_iter:
                    # Re-evaluate only if another iteration may follow (saves one closure call).
                    loss = float(evaluate())
                    flat_grad = self._gather_flat_grad()
                    opt_cond = np.abs(flat_grad).max() <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if np.abs(d * t).max() <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = _tensor(d)
        state["t"] = float(t)
        state["old_dirs"] = [_tensor(v) for v in old_dirs]
        state["old_stps"] = [_tensor(v) for v in old_stps]
        state["ro"] = [_tensor(v) for v in ro]
        state["H_diag"] = _tensor(H_diag)
        state["prev_flat_grad"] = _tensor(prev_flat_grad)
        state["prev_loss"] = prev_loss
        return orig_loss


def _tensor(value):
    """State values are tensors (so state_dict serializes); NumPy scalars become 0-d tensors."""
    if value is None or isinstance(value, (int, float)):
        return value
    return Tensor._wrap(np.asarray(value) if isinstance(value, np.generic) else value)


def _array(value):
    if isinstance(value, Tensor):
        return value._data[()] if value._data.ndim == 0 else value._data
    return value
