"""``autograd.functional``: Jacobians and Hessians of functions of tensors."""
from __future__ import annotations

from .engine import grad as _grad


def _as_tuple(x):
    return (x, False) if isinstance(x, tuple) else ((x,), True)


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False, strategy="reverse-mode"):
    """d func(inputs) / d inputs, one reverse pass per output element.

    Shapes follow PyTorch: for a single input and output the result has shape
    ``output.shape + input.shape``; tuples give nested tuples (outputs outer).
    """
    from .. import _torch_api as T
    ins, single_in = _as_tuple(inputs)
    ins = tuple(i.detach().requires_grad_(True) for i in ins)
    outs, single_out = _as_tuple(func(*ins))
    result = []
    for out in outs:
        flat = out.reshape(-1)
        rows = [[] for _ in ins]
        for k in range(flat.numel()):
            gs = _grad(flat[k], ins, retain_graph=True, create_graph=create_graph, allow_unused=True)
            for j, (g, inp) in enumerate(zip(gs, ins)):
                rows[j].append(T.zeros_like(inp) if g is None else g)
        per_in = []
        for j, inp in enumerate(ins):
            stacked = T.stack(rows[j]) if rows[j] else T.zeros(0, *inp.shape, dtype=inp.dtype)
            per_in.append(stacked.reshape(tuple(out.shape) + tuple(inp.shape)))
        result.append(per_in[0] if single_in else tuple(per_in))
    return result[0] if single_out else tuple(result)


def hessian(func, inputs, create_graph=False, strict=False):
    """Second derivatives of a scalar function, via a Jacobian of its gradient."""
    ins, single_in = _as_tuple(inputs)

    def gradient(*xs):
        out = func(*xs)
        gs = _grad(out, xs, create_graph=True, allow_unused=True)
        return gs[0] if single_in else gs

    return jacobian(gradient, inputs, create_graph=create_graph)


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    ins, single_in = _as_tuple(inputs)
    ins = tuple(i.detach().requires_grad_(True) for i in ins)
    out = func(*ins)
    gs = _grad(out, ins, grad_outputs=v, create_graph=create_graph, allow_unused=True)
    return out.detach(), (gs[0] if single_in else gs)
