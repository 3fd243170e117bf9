"""The backward engine: runs the graph in dependency order, without recursion.

Grads travel as raw arrays on the fast path; with ``create_graph=True`` they are Tensors and every
backward formula is itself recorded (see ``disttorch/ops/_base.py``). Saved values are released
as each node finishes unless ``retain_graph`` is set.
"""
from __future__ import annotations

import re

import numpy as np

from .grad_mode import STATE
from .node import _FREED, AccumulateGrad

# Bound by _bind() at the first backward: these modules import autograd in turn. (Importing them
# inside each call cost about 0.4 us per import on every backward.)
Tensor = array_namespace = TENSOR_NS = _NP_NS = None


def _bind():
    global Tensor, array_namespace, TENSOR_NS, _NP_NS
    from ..ops._base import array_namespace as _array_namespace
    from ..ops._tensor_ns import TENSOR_NS as _tensor_ns
    from ..tensor import Tensor as _tensor
    Tensor, array_namespace, TENSOR_NS = _tensor, _array_namespace, _tensor_ns
    _NP_NS = _array_namespace(np.empty(0))

_FREED_MSG = (
    "Trying to backward through the graph a second time (or directly access saved tensors after they "
    "have already been freed). Saved intermediate values of the graph are freed when you call .backward() "
    "or autograd.grad(). Specify retain_graph=True if you need to backward through the graph a second time "
    "or if you need to access saved tensors after calling backward.")


def _type_str(t):
    from ..tensor import _TYPE_NAMES
    return f"torch.{_TYPE_NAMES.get(t.dtype.name, 'Tensor')} [{', '.join(str(s) for s in t.shape)}]"


def _modified_error(type_str, node, version, expected):
    # PyTorch names the producing op without its "Backward<N>" suffix ("output 0 of Add")
    where = f", which is output 0 of {re.sub(r'Backward[0-9]*$', '', type(node).__name__)}," if node is not None else ""
    return RuntimeError(
        f"one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: [{type_str}]{where} is at version {version}; expected version {expected} instead. "
        "Hint: enable anomaly detection to find the operation that failed to compute its gradient, "
        "with torch.autograd.set_detect_anomaly(True, check_nan=False).")


def _check_versions(node):
    versions = node._saved_versions
    for t, v in zip(node.saved, versions):
        if t._vc[0] != v:
            raise _modified_error(_type_str(t), t.grad_fn, t._vc[0], v)
    out_vc = node._out_vc
    if out_vc is not None and out_vc[0] != node._out_version:
        raise _modified_error(_type_str(Tensor._wrap(node.out)), node, out_vc[0], node._out_version)


def _make_root_grads(tensors, grad_tensors, create_graph):
    roots = []
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"backward expects Tensors, got {type(t).__name__}")
        if not t._requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
        g = grad_tensors[i] if grad_tensors is not None else None
        if g is None:
            if t._data.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            xp = np if type(t._data) is np.ndarray else __import__("disttorch")._backend.array_module(t._data)
            garr = xp.ones(t._data.shape, dtype=t._data.dtype)
            g = Tensor._wrap(garr) if create_graph else garr
            fresh = True
        else:
            if not isinstance(g, Tensor):
                g = Tensor._wrap(np.asarray(g, dtype=t._data.dtype))
            if tuple(g.shape) != tuple(t.shape):
                raise RuntimeError(
                    f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and output[{i}] has a shape of {t.shape}.")
            g = g if create_graph else g._data
            fresh = False
        node = t.grad_fn if t.grad_fn is not None else t._grad_accumulator()
        roots.append((node, g, fresh))
    return roots


def _collect(roots):
    """Dependency counts of every node reachable from the roots."""
    deps = {}
    stack = [n for n, _, _ in roots]
    seen = set(stack)
    while stack:
        node = stack.pop()
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            deps[nxt] = deps.get(nxt, 0) + 1
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return deps, seen


def _needed(seen, targets):
    """Nodes from which a target node is reachable (autograd.grad prunes everything else)."""
    # Walk the reversed edges from the targets: linear in the graph (a fixed point over the nodes
    # was quadratic on deep chains).
    parents = {}
    for node in seen:
        for nxt, _ in node.next_functions:
            if nxt is not None:
                parents.setdefault(nxt, []).append(node)
    needed = set(targets)
    stack = list(needed)
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent not in needed:
                needed.add(parent)
                stack.append(parent)
    return needed


def _add(a, b, a_owned, graph):
    if graph:
        return a + b, True
    if a_owned and a.shape == b.shape and a.dtype == b.dtype and a.flags.writeable:
        a += b
        return a, True
    return a + b, True


def run_backward(tensors, grad_tensors, retain_graph, create_graph, inputs=None, accumulate=True,
                 allow_unused=False):
    """Shared core of ``Tensor.backward``, ``autograd.backward`` and ``autograd.grad``."""
    if Tensor is None:
        _bind()
    np_ns = _NP_NS
    if retain_graph is None:
        retain_graph = create_graph
    roots = _make_root_grads(tensors, grad_tensors, create_graph)
    deps, seen = _collect(roots)

    capture = None
    if inputs is not None:
        capture = {}
        targets = []
        for t in inputs:
            if not t._requires_grad:
                raise RuntimeError("One of the differentiated Tensors does not require grad")
            node = t.grad_fn if t.grad_fn is not None else t._grad_accumulator()
            capture.setdefault(node, None)
            targets.append(node)
        needed = _needed(seen, targets)
    else:
        needed = None

    buffers = {}
    owned = {}
    for node, g, fresh in roots:
        if node in buffers:
            buffers[node], owned[node] = _add(buffers[node], g, owned[node], create_graph)
        else:
            buffers[node], owned[node] = g, fresh
    ready = [n for n, _, _ in roots if deps.get(n, 0) == 0]
    ready = list(dict.fromkeys(ready))

    acc_ready = []
    prev_mode, prev_sinks = STATE.enabled, STATE.grad_sinks
    STATE.enabled = bool(create_graph)
    # a leaf's gradient may be computed in its sink only when it goes into .grad (autograd.grad
    # hands gradients to the caller, who may keep them)
    STATE.grad_sinks = accumulate and capture is None and not create_graph
    try:
        while ready:
            node = ready.pop()
            g = buffers.pop(node, None)
            g_owned = owned.pop(node, False)
            skip = g is None or (needed is not None and node not in needed)
            if not skip:
                if node._pre_hooks:
                    for hook in node._pre_hooks:
                        res = hook(g)
                        if res is not None and res is not g:
                            g, g_owned = res, False
                if capture is not None and node in capture:
                    capture[node] = g if capture[node] is None else capture[node] + g
                    if not accumulate and type(node) is AccumulateGrad:
                        continue
            if not skip and type(node) is AccumulateGrad:
                if accumulate:
                    _accumulate(node.variable, g, g_owned, create_graph)
                continue
            if skip:
                grads = (None,) * len(node.next_functions)
            elif create_graph or node._hooks or type(g) is not np.ndarray:
                grads = _call_backward(node, g, create_graph, retain_graph, array_namespace, TENSOR_NS, Tensor)
            else:
                # fast path: NumPy grads, no hooks (inlined _call_backward)
                saved = node.saved
                if saved is None:
                    grads = node.backward(g, np_ns)
                else:
                    if saved is _FREED:
                        raise RuntimeError(_FREED_MSG)
                    out_vc = node._out_vc
                    if out_vc is not None and out_vc[0] != node._out_version:
                        _check_versions(node)
                    n_saved = len(saved)
                    if n_saved == 2:
                        a, b = saved
                        vs = node._saved_versions
                        if a._vc[0] != vs[0] or b._vc[0] != vs[1]:
                            _check_versions(node)
                        grads = node.backward(g, np_ns, a._data, b._data)
                    elif n_saved == 0:
                        grads = node.backward(g, np_ns)
                    else:
                        for t, v in zip(saved, node._saved_versions):
                            if t._vc[0] != v:
                                _check_versions(node)
                        grads = node.backward(g, np_ns, *[t._data for t in saved])
                    if not retain_graph:
                        node.saved = _FREED
                        if out_vc is not None:  # saves_output ops: release the output array too
                            del node.out
            fresh = node.fresh_grads
            for (nxt, _), gi in zip(node.next_functions, grads):
                if nxt is None:
                    continue
                if gi is not None:
                    if nxt in buffers:
                        buffers[nxt], owned[nxt] = _add(buffers[nxt], gi, owned[nxt], create_graph)
                    else:
                        buffers[nxt] = gi
                        owned[nxt] = fresh
                left = deps[nxt] - 1
                deps[nxt] = left
                if left == 0:
                    if type(nxt) is AccumulateGrad:
                        acc_ready.append(nxt)
                    else:
                        ready.append(nxt)
            if acc_ready:
                # Leaves' accumulations run right after the node that feeds them (PyTorch gives
                # AccumulateGrad top priority), so post-accumulate hooks such as DDP's bucket
                # reducer see each gradient as early as backward can produce it.
                ready.extend(acc_ready)
                acc_ready.clear()
    finally:
        STATE.enabled, STATE.grad_sinks = prev_mode, prev_sinks
    if capture is not None and accumulate:
        for t in inputs:  # backward(inputs=[non_leaf]) fills the non-leaf's .grad too
            g = capture.get(t.grad_fn) if t.grad_fn is not None else None
            if g is not None:
                gt = g if isinstance(g, Tensor) else Tensor._wrap(g.copy())
                t.grad = gt if t.grad is None else t.grad + gt
        return None
    if capture is not None:
        out = []
        for i, t in enumerate(inputs):
            node = t.grad_fn if t.grad_fn is not None else t._grad_accumulator()
            g = capture.get(node)
            if g is None and not allow_unused and not accumulate:
                raise RuntimeError(
                    f"The differentiated Tensor at index {i} appears to not have been used in the graph. "
                    "Set allow_unused=True if this is the desired behavior.")
            if g is not None and not isinstance(g, Tensor):
                # a view of some other array gets its own copy (g.copy() serves NumPy and CuPy alike)
                g = Tensor._wrap(np.array(g) if isinstance(g, np.generic) else g if _is_fresh(g) else g.copy())
            out.append(g)
        return tuple(out)
    return None


def _is_fresh(arr):
    return arr.base is None


def _call_backward(node, g, create_graph, retain_graph, array_namespace, tensor_ns, Tensor):
    saved = node.saved
    if saved is _FREED:
        raise RuntimeError(_FREED_MSG)
    if saved is not None:
        _check_versions(node)
    if create_graph:
        if not isinstance(g, Tensor):
            g = Tensor._wrap(g)
        grads = node.backward(g, tensor_ns, *(saved or ()))
    else:
        if isinstance(g, Tensor):
            g = g._data
        vals = [t._data for t in saved] if saved else ()
        grads = node.backward(g, array_namespace(g), *vals)
    if not retain_graph and saved is not None:
        node.saved = _FREED
        node.__dict__.pop("out", None)
    if node._hooks:
        for hook in node._hooks:
            hook(grads, (g,))
    return grads


def _accumulate(var, g, g_owned, create_graph):
    if create_graph:
        gt = g if isinstance(g, Tensor) else Tensor._wrap(g)
        if gt.dtype is not var.dtype:
            gt = gt.to(var.dtype)
        var.grad = gt if var.grad is None else var.grad + gt
    else:
        if isinstance(g, Tensor):
            g = g._data
        if isinstance(g, np.generic):  # NumPy reductions to () give scalars
            g, g_owned = np.asarray(g), True
        if g.dtype != var._data.dtype:
            g = g.astype(var._data.dtype)
            g_owned = True
        if g.shape != var._data.shape:
            g = g.reshape(var._data.shape) if g.size == var._data.size else np.broadcast_to(g, var._data.shape)
            g_owned = False
        if var.grad is None:
            var.grad = Tensor._wrap(g if g_owned else g.copy())
        else:
            grad = var.grad
            if grad._requires_grad:
                var.grad = Tensor._wrap(grad._data + g)
            else:
                grad._data += g
                grad._vc[0] += 1
    if var._post_acc_hooks:
        for hook in list(var._post_acc_hooks):
            hook(var)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """``torch.autograd.backward``: accumulates gradients of ``tensors`` into leaves' ``.grad``."""
    if Tensor is None:
        _bind()
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    if isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors]
    if inputs is not None:
        if isinstance(inputs, Tensor):
            inputs = [inputs]
        inputs = list(inputs)
        if not inputs:
            raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    run_backward(list(tensors), None if grad_tensors is None else list(grad_tensors), retain_graph,
                 create_graph, inputs=inputs, accumulate=True)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=None,
         is_grads_batched=False, materialize_grads=False):
    """``torch.autograd.grad``: returns d(outputs)/d(inputs) without touching ``.grad``."""
    if Tensor is None:
        _bind()
    single = isinstance(inputs, Tensor)
    if isinstance(outputs, Tensor):
        outputs = [outputs]
    if single:
        inputs = [inputs]
    if isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    allow = bool(allow_unused) or materialize_grads
    res = run_backward(list(outputs), None if grad_outputs is None else list(grad_outputs), retain_graph,
                       create_graph, inputs=list(inputs), accumulate=False, allow_unused=allow)
    if materialize_grads:
        from ..ops.creation import zeros_like
        res = tuple(zeros_like(i) if r is None else r for i, r in zip(inputs, res))
    return res
