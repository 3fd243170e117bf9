"""Grad mode: whether ops record the graph (``no_grad``, ``enable_grad``, ``set_grad_enabled``,
``inference_mode``). Process-global, read on every op, so kept as a plain attribute."""
from __future__ import annotations

import functools


class _State:
    enabled = True
    #: ops may compute a leaf's gradient straight into its ``AccumulateGrad.sink``: only inside a
    #: ``backward()`` that accumulates into ``.grad`` (never ``autograd.grad``, never under
    #: ``create_graph``); see ``ops/_base.grad_destination``
    grad_sinks = False


STATE = _State()


def is_grad_enabled() -> bool:
    return STATE.enabled


class _GradModeContext:
    """Base of the grad-mode context managers; each also works as a decorator."""

    _target = True

    def __enter__(self):
        self._prev = STATE.enabled
        STATE.enabled = self._target

    def __exit__(self, *exc):
        STATE.enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradModeContext):
    """Disables graph recording: results of ops have ``requires_grad=False``."""

    _target = False


class enable_grad(_GradModeContext):
    """Re-enables graph recording inside a ``no_grad`` block."""

    _target = True


class set_grad_enabled(_GradModeContext):
    """Sets grad mode to ``mode`` immediately, and restores it on exit when used as a context."""

    def __init__(self, mode: bool):
        self._prev = STATE.enabled
        self._target = bool(mode)
        STATE.enabled = self._target

    def __enter__(self):
        STATE.enabled = self._target

    def __call__(self, fn):
        STATE.enabled = self._prev
        mode = self._target

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)
        return wrapper


class inference_mode(_GradModeContext):
    """Like ``no_grad`` (disttorch keeps no extra view/version bookkeeping to drop)."""

    def __init__(self, mode: bool = True):
        self._target = not mode

    def __call__(self, fn):
        mode = not self._target

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(mode):
                return fn(*args, **kwargs)
        return wrapper


def is_inference_mode_enabled() -> bool:
    return not STATE.enabled
