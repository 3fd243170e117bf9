"""User-defined differentiable ops: ``class MyOp(disttorch.autograd.Function)`` with static
``forward(ctx, ...)`` and ``backward(ctx, *grads)``, used as ``MyOp.apply(...)``."""
from __future__ import annotations

from .grad_mode import STATE, no_grad
from .node import Node


class FunctionCtx:
    """The ``ctx`` object: ``save_for_backward``, ``saved_tensors``, ``needs_input_grad``, attributes."""

    def save_for_backward(self, *tensors):
        self._saved = tensors
        self._saved_versions = tuple(t._vc[0] if t is not None else None for t in tensors)

    @property
    def saved_tensors(self):
        saved = getattr(self, "_saved", ())
        if saved is None:
            from .engine import _FREED_MSG
            raise RuntimeError(_FREED_MSG)
        for t, v in zip(saved, self._saved_versions):
            if t is not None and t._vc[0] != v:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an inplace operation: "
                    f"is at version {t._vc[0]}; expected version {v} instead.")
        return saved

    def mark_dirty(self, *tensors):
        self._dirty = tensors

    def mark_non_differentiable(self, *tensors):
        self._non_diff = tensors

    def set_materialize_grads(self, value):
        self._materialize = value


class BackwardCFunction(Node):
    """The grad_fn of a custom Function; named ``<Function>Backward``."""

    fresh_grads = False

    def backward(self, g, ns, *saved):
        from ..tensor import Tensor
        ctx = self.ctx
        # One node per differentiable output (the engine routes one gradient per node); the user's
        # backward gets this output's gradient and zeros for the others (PyTorch's materialized grads).
        # Backward is linear in its gradients, so the nodes' input gradients add up to the full one.
        outs = []
        for i, spec in enumerate(self.out_specs):
            if i == self.out_index:
                outs.append(g if ns.graph else Tensor._wrap(g))
            elif spec is None:
                outs.append(None)
            else:
                z = Tensor._wrap(_zeros(g, *spec))
                outs.append(z)
        if ns.graph:
            grads = self.fn_cls.backward(ctx, *outs)
        else:
            with no_grad():
                grads = self.fn_cls.backward(ctx, *outs)
        if not isinstance(grads, tuple):
            grads = (grads,)
        out = []
        for gi, (nxt, _) in zip(grads, self.next_functions):
            if gi is None or nxt is None:
                out.append(None)
            else:
                out.append(gi if ns.graph else gi._data)
        return tuple(out)


class Function:
    """Base class of custom autograd ops (PyTorch's ``torch.autograd.Function``)."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise RuntimeError("A custom autograd.Function must override forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise RuntimeError("A custom autograd.Function must override backward(ctx, *grads) to be differentiated")

    @classmethod
    def apply(cls, *args, **kwargs):
        from ..tensor import Tensor
        ctx = FunctionCtx()
        tensor_args = [a for a in args if isinstance(a, Tensor)]
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a._requires_grad for a in args)
        record = STATE.enabled and any(t._requires_grad for t in tensor_args)
        with no_grad():
            out = cls.forward(ctx, *args, **kwargs)
        if not record:
            return out
        node_cls = _node_class(cls)
        edges = []
        for a in args:
            if isinstance(a, Tensor) and a._requires_grad:
                edges.append((a.grad_fn if a.grad_fn is not None else a._grad_accumulator(), 0))
            else:
                edges.append((None, 0))
        edges = tuple(edges)
        outs = out if isinstance(out, tuple) else (out,)
        specs = [(tuple(o._data.shape), o._data.dtype) if isinstance(o, Tensor) else None for o in outs]
        non_diff = set(id(t) for t in getattr(ctx, "_non_diff", ()))
        wrapped = []
        for i, o in enumerate(outs):
            if isinstance(o, Tensor) and id(o) not in non_diff and o._data.dtype.kind in "fc":
                if any(o is a for a in tensor_args):
                    o = o.view_as(o) if not hasattr(ctx, "_dirty") else o
                node = node_cls()
                node.ctx, node.fn_cls = ctx, cls
                node.next_functions = edges
                node.needs_input_grad = ctx.needs_input_grad
                node.out_index, node.out_specs = i, specs
                o.grad_fn = node
                o._requires_grad = True
            wrapped.append(o)
        return tuple(wrapped) if isinstance(out, tuple) else wrapped[0]


def _zeros(like, shape, dtype):
    from .._backend import array_module
    return array_module(like._data if hasattr(like, "_data") else like).zeros(shape, dtype=dtype)


_node_classes = {}


def _node_class(fn_cls):
    c = _node_classes.get(fn_cls)
    if c is None:
        c = _node_classes[fn_cls] = type(fn_cls.__name__ + "Backward", (BackwardCFunction,), {})
    return c
