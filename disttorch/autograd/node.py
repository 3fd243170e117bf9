"""Graph nodes: ``grad_fn`` objects.

A node is created by an op when its result needs a gradient. ``next_functions`` holds one
``(node, 0)`` pair per differentiable input (``(None, 0)`` for inputs that need no gradient), as in
PyTorch. Ops subclass ``Op`` (see ``disttorch/ops/_base.py``), which puts ``forward`` and
``backward`` side by side; leaves get an ``AccumulateGrad`` node.
"""
from __future__ import annotations

_FREED = object()  # marks saved values released after backward


class Node:
    """Base of every grad_fn. Subclasses implement ``_backward(grad, ns)``."""

    # Per-instance state lives in the instance dict; these class-level defaults mean creating a
    # node costs no __init__ call (op creation is on every forward's hot path).
    next_functions = ()
    needs_input_grad = ()
    saved = None
    _saved_versions = None
    _out_vc = None  # version counter of the output, set by ops that save their output
    _out_version = 0  # the output's version when saved: 0, except for an in-place op's (relu_)
    _hooks = None
    _pre_hooks = None

    # True when backward always returns freshly allocated arrays (never the incoming grad itself);
    # lets the engine hand them to ``.grad`` without a defensive copy.
    fresh_grads = True

    def name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        return f"<{type(self).__name__} object at {hex(id(self))}>"

    def register_hook(self, hook):
        """``hook(grad_inputs, grad_outputs)`` runs after this node's backward."""
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return _RemovableHandle(self._hooks, hook)

    def register_prehook(self, hook):
        """``hook(grad_outputs)`` runs before this node's backward; may return replacement grads."""
        if self._pre_hooks is None:
            self._pre_hooks = []
        self._pre_hooks.append(hook)
        return _RemovableHandle(self._pre_hooks, hook)


class _RemovableHandle:
    """Returned by every ``register_*hook``; ``remove()`` detaches the hook."""

    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class AccumulateGrad(Node):
    """Sink node of a leaf tensor: adds incoming gradients into ``variable.grad``."""

    #: ``sink(shape, dtype) -> ndarray | None``: memory the leaf's gradient may be computed in
    #: this backward (DDP puts its shared-memory input area here, ``nn/parallel/_reducer.py``),
    #: asked by ops through ``ops/_base.grad_destination``; None: ops allocate as usual
    sink = None

    def __init__(self, variable):
        self.variable = variable
