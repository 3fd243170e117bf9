"""Hook plumbing for ``Module``: removable handles and the full-backward-hook identity nodes.

Full backward hooks put an identity node (``BackwardHookFunctionBackward``, PyTorch's name) on
every tensor input and output of the module call. The output nodes collect ``grad_output``, run
the backward pre-hooks, and the input nodes collect ``grad_input``; when the last expected input
gradient arrives the hooks run as ``hook(module, grad_input, grad_output)``. A returned
``grad_input`` replaces the gradients still in flight (exact for the usual one-input module; with
several inputs only the last-arriving gradient can still be replaced).
"""
from __future__ import annotations

import weakref

from ...ops._base import Op
from ...tensor import Tensor


class RemovableHandle:
    """Returned by ``register_*_hook``: ``remove()`` takes the hook out of its dict(s)."""

    next_id = 0

    def __init__(self, hooks_dict, *, extra_dict=None):
        self.hooks_dict_ref = weakref.ref(hooks_dict)
        self.id = RemovableHandle.next_id
        RemovableHandle.next_id += 1
        extras = [] if extra_dict is None else extra_dict if isinstance(extra_dict, list) else [extra_dict]
        self.extra_dict_ref = tuple(weakref.ref(d) for d in extras)

    def remove(self):
        hooks_dict = self.hooks_dict_ref()
        if hooks_dict is not None and self.id in hooks_dict:
            del hooks_dict[self.id]
        for ref in self.extra_dict_ref:
            extra = ref()
            if extra is not None and self.id in extra:
                del extra[self.id]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class BackwardHookFunctionBackward(Op):
    """Identity on the forward pass; hands the passing gradient to a callback on the way back."""

    fresh_grads = False  # backward may return the incoming gradient itself

    def forward(self, x, callback):
        self.callback = callback
        return x

    def backward(self, g, ns):
        return (self.callback(g, ns),)


def _as_tensor(g):
    return g if g is None or isinstance(g, Tensor) else Tensor._wrap(g)


def _as_mode(g, ns):
    """A hook's returned Tensor in the engine's current value type (array or Tensor)."""
    if g is None or ns.graph:
        return g
    return g._data if isinstance(g, Tensor) else g


class BackwardHook:
    """One module call's full backward hooks (``register_full_backward_hook`` / ``_pre_hook``)."""

    def __init__(self, module, hooks, pre_hooks):
        self.module = module
        self.hooks = hooks
        self.pre_hooks = pre_hooks
        self.n_inputs = 0
        self.pending_inputs = set()
        self.grad_inputs = []
        self.n_outputs = 0
        self.pending_outputs = set()
        self.grad_outputs = []

    # ---- forward-time wiring ---------------------------------------------------------------------
    @staticmethod
    def _wrap_tensors(items, make_callback, pending):
        """Wraps, in place, each tensor of ``items`` that requires grad so that its gradient reaches
        ``make_callback(slot)``, and records the slot in ``pending``. Slots count every tensor, also
        those that need no gradient; returns how many there are."""
        slot = 0
        for i, item in enumerate(items):
            if not isinstance(item, Tensor):
                continue
            if item.requires_grad:
                items[i] = BackwardHookFunctionBackward.apply(item, callback=make_callback(slot))
                pending.add(slot)
            slot += 1
        return slot

    def setup_input_hook(self, args):
        out = list(args)
        self.n_inputs = self._wrap_tensors(out, self._input_callback, self.pending_inputs)
        self.grad_inputs = [None] * self.n_inputs
        return tuple(out)

    def setup_output_hook(self, result):
        single = isinstance(result, Tensor)
        items = [result] if single else list(result) if isinstance(result, tuple) else None
        if items is None:
            return result
        self.n_outputs = self._wrap_tensors(items, self._output_callback, self.pending_outputs)
        self.grad_outputs = [None] * self.n_outputs
        return items[0] if single else tuple(items)

    # ---- backward-time callbacks --------------------------------------------------------------------
    def _output_callback(self, slot):
        def on_output(g, ns):
            self.grad_outputs[slot] = _as_tensor(g)
            self.pending_outputs.discard(slot)
            if self.pending_outputs:
                return g
            for hook in self.pre_hooks:
                res = hook(self.module, tuple(self.grad_outputs))
                if res is not None:
                    res = res if isinstance(res, (tuple, list)) else (res,)
                    self.grad_outputs = [_as_tensor(r) for r in res]
            g = _as_mode(self.grad_outputs[slot], ns)
            if not self.pending_inputs:
                # Nothing upstream needs a gradient: the hooks see grad_input of Nones now.
                self._run_hooks()
            return g
        return on_output

    def _input_callback(self, slot):
        def on_input(g, ns):
            self.grad_inputs[slot] = _as_tensor(g)
            self.pending_inputs.discard(slot)
            if self.pending_inputs:
                return g
            replaced = self._run_hooks()
            return _as_mode(replaced[slot], ns) if replaced is not None else g
        return on_input

    def _run_hooks(self):
        replaced = None
        grad_input = tuple(self.grad_inputs)
        for hook in self.hooks:
            res = hook(self.module, grad_input, tuple(self.grad_outputs))
            if res is not None:
                res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
                if len(res) != len(grad_input):
                    raise RuntimeError(
                        f"Backward hook returned an invalid number of grad_input, got {len(res)}, "
                        f"but expected {len(grad_input)}")
                grad_input = replaced = tuple(_as_tensor(r) for r in res)
        return replaced
