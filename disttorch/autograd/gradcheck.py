"""``gradcheck``: compares analytical gradients with central finite differences."""
from __future__ import annotations

import numpy as np


class GradcheckError(RuntimeError):
    """Raised by ``gradcheck`` when analytical and numerical Jacobians differ."""


def _numerical_jacobian(fn, inputs, eps):
    jac = []
    outs = fn(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    for inp in inputs:
        if not getattr(inp, "requires_grad", False):
            jac.append(None)
            continue
        arr = inp._data
        cols = []
        # index the array itself: reshape(-1) would copy a non-contiguous input and perturb nothing
        for idx in np.ndindex(*arr.shape):
            orig = arr[idx].item()
            arr[idx] = orig + eps
            plus = [o._data.astype(np.float64).reshape(-1).copy() for o in _tuple(fn(*inputs))]
            arr[idx] = orig - eps
            minus = [o._data.astype(np.float64).reshape(-1).copy() for o in _tuple(fn(*inputs))]
            arr[idx] = orig
            cols.append(np.concatenate([(p - m) / (2 * eps) for p, m in zip(plus, minus)]))
        jac.append(np.stack(cols, 1) if cols else np.zeros((sum(o.numel() for o in outs), 0)))
    return jac


def _tuple(x):
    if isinstance(x, list):  # torch accepts a list of inputs too
        return tuple(x)
    return x if isinstance(x, tuple) else (x,)


def _analytical_jacobian(fn, inputs):
    from .engine import grad
    outs = _tuple(fn(*inputs))
    diff = [i for i in inputs if getattr(i, "requires_grad", False)]
    rows = []
    for o in outs:
        flat = o.reshape(-1)
        for k in range(flat.numel()):
            if not o.requires_grad:
                rows.append([np.zeros(i.numel()) for i in diff])
                continue
            gs = grad(flat[k], diff, retain_graph=True, allow_unused=True)
            rows.append([np.zeros(i.numel()) if g is None else g._data.astype(np.float64).reshape(-1) for g, i in zip(gs, diff)])
    jac, j = [], 0
    for inp in inputs:
        if not getattr(inp, "requires_grad", False):
            jac.append(None)
            continue
        jac.append(np.stack([r[j] for r in rows], 0) if rows else np.zeros((0, inp.numel())))
        j += 1
    return jac


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, **unused):
    """True when the gradients of ``func`` at ``inputs`` (float64 advised) match finite differences."""
    inputs = _tuple(inputs)
    numerical = _numerical_jacobian(func, inputs, eps)
    analytical = _analytical_jacobian(func, inputs)
    for i, (n, a) in enumerate(zip(numerical, analytical)):
        if n is None:
            continue
        if not np.allclose(a, n, rtol=rtol, atol=atol):
            if raise_exception:
                raise GradcheckError(
                    f"Jacobian mismatch for output 0 with respect to input {i},\nnumerical:{n}\nanalytical:{a}\n")
            return False
    return True


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, **unused):
    """Checks second derivatives: gradcheck of the function's vector-Jacobian product."""
    from .engine import grad
    inputs = _tuple(inputs)
    diff = [i for i in inputs if getattr(i, "requires_grad", False)]

    def first(*xs):
        out = _tuple(func(*xs))
        from .. import _torch_api as T
        total = sum(o.sum() for o in out)
        gs = grad(total, [x for x in xs if x.requires_grad], create_graph=True, allow_unused=True)
        return tuple(g if g is not None else T.zeros_like(x) for g, x in zip(gs, diff))

    return gradcheck(first, inputs, eps=eps, atol=atol, rtol=rtol, raise_exception=raise_exception)
