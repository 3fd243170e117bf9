"""A minimal ``torch.futures.Future``: what communication hooks return.

A future is resolved lazily: ``wait()`` runs the waiter (e.g. ``Work.wait``) once, then the chained
``then`` callbacks, so a hook's decompression step runs on the thread that waits for the result.
"""
from __future__ import annotations

import threading


class Future:
    """Holds a value that becomes available later; ``wait()`` blocks until it does."""

    def __init__(self, waiter=None):
        self._waiter = waiter          # callable producing the value, run on first wait()
        self._lock = threading.Lock()
        self._done = False
        self._value = None
        self._error = None

    def set_result(self, value):
        with self._lock:
            self._value, self._done, self._waiter = value, True, None

    def set_exception(self, error):
        with self._lock:
            self._error, self._done, self._waiter = error, True, None

    def done(self) -> bool:
        return self._done

    def wait(self):
        """Blocks until the value is ready and returns it (re-raises the producer's error)."""
        with self._lock:
            if not self._done:
                try:
                    self._value = self._waiter() if self._waiter is not None else None
                except BaseException as exc:  # kept so every waiter sees the same failure
                    self._error = exc
                self._done, self._waiter = True, None
        if self._error is not None:
            raise self._error
        return self._value

    def value(self):
        return self.wait()

    def then(self, callback):
        """A future whose value is ``callback(self)``, computed when it is waited on."""
        return Future(lambda: callback(self._wait_self()))

    def _wait_self(self):
        self.wait()
        return self


def completed(value) -> Future:
    """A future that is already resolved with ``value``."""
    fut = Future()
    fut.set_result(value)
    return fut


def from_work(work, tensor) -> Future:
    """Wraps an async collective's ``Work``: the future's value is ``tensor`` once ``work`` is done."""
    def waiter():
        if work is not None:
            work.wait()
        return tensor
    return Future(waiter)
