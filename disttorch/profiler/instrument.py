"""Compute spans for a traced process: module forwards, backward, optimizer steps.

Installed only while tracing is on, so untraced code runs exactly as before (no flag check in
``Module.__call__``, the hottest call of a model):

- ``Module.__call__`` is wrapped: every call down to ``DISTTORCH_TRACE_MODULE_DEPTH`` levels of
  nesting (default 3: the model, its containers, their layers) becomes a span named after the
  module's class, category ``forward``;
- ``autograd.backward`` (what ``Tensor.backward`` calls) becomes a ``backward`` span; DDP's
  bucket all-reduces started from its hooks nest inside it;
- every optimizer's ``step`` becomes a ``<Optimizer>.step`` span through the global step hooks
  (``register_optimizer_step_pre_hook`` / ``_post_hook``, as in PyTorch).

``remove()`` undoes all three.
"""
from __future__ import annotations

import os
import threading
import time

from . import trace

_installed: dict | None = None
_depth = threading.local()


def _max_depth() -> int:
    value = os.environ.get("DISTTORCH_TRACE_MODULE_DEPTH", "3").strip()
    if not value.isdigit():
        raise ValueError(f"DISTTORCH_TRACE_MODULE_DEPTH={value!r}: expected a non-negative integer")
    return int(value)


def install() -> None:
    """Wraps the three entry points (idempotent)."""
    global _installed
    if _installed is not None:
        return
    from ..autograd import engine
    from .. import autograd
    from ..nn.modules.module import Module
    from ..optim import optimizer

    limit = _max_depth()
    module_call = Module.__call__
    engine_backward = engine.backward

    def traced_call(self, *args, **kwargs):
        depth = getattr(_depth, "n", 0)
        if depth >= limit or not trace.ACTIVE:
            return module_call(self, *args, **kwargs)
        _depth.n = depth + 1
        start = time.time_ns()
        try:
            return module_call(self, *args, **kwargs)
        finally:
            _depth.n = depth
            trace.complete(type(self).__name__, "forward", start, time.time_ns())

    def traced_backward(*args, **kwargs):
        with trace.span("backward", "backward"):
            return engine_backward(*args, **kwargs)

    starts: dict = {}

    def step_pre(opt, args, kwargs):
        starts[(id(opt), threading.get_ident())] = time.time_ns()

    def step_post(opt, args, kwargs):
        start = starts.pop((id(opt), threading.get_ident()), None)
        if start is not None:
            trace.complete(f"{type(opt).__name__}.step", "optimizer", start, time.time_ns())

    traced_call.__wrapped__ = module_call
    traced_backward.__wrapped__ = engine_backward
    Module.__call__ = traced_call
    engine.backward = autograd.backward = traced_backward
    handles = (optimizer.register_optimizer_step_pre_hook(step_pre),
               optimizer.register_optimizer_step_post_hook(step_post))
    _installed = {"call": module_call, "backward": engine_backward, "handles": handles}


def remove() -> None:
    """Puts the original ``Module.__call__`` and ``backward`` back and drops the step hooks."""
    global _installed
    if _installed is None:
        return
    from ..autograd import engine
    from .. import autograd
    from ..nn.modules.module import Module

    Module.__call__ = _installed["call"]
    engine.backward = autograd.backward = _installed["backward"]
    for handle in _installed["handles"]:
        handle.remove()
    _installed = None
