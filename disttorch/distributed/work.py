"""Work handles of asynchronous operations (``async_op=True``, ``isend``, ``irecv``) and their futures."""
from __future__ import annotations

import threading
from typing import Callable

from .errors import DistTimeoutError
from .store import seconds


class Future:
    """A small torch.futures.Future: ``wait``, ``value``, ``done``, ``then``, ``add_done_callback``."""

    def __init__(self, work: "Work"):
        self._work = work

    def wait(self):
        self._work.wait()
        return self._work.result()

    def value(self):
        return self.wait()

    def done(self) -> bool:
        return self._work.is_completed()

    def add_done_callback(self, callback: Callable[["Future"], None]) -> None:
        self._work._on_done(lambda: callback(self))

    def then(self, callback: Callable[["Future"], object]) -> "Future":
        chained = Work(f"then({self._work.label})")
        def run():
            try:
                chained._finish(callback(self), None)
            except BaseException as e:  # noqa: BLE001 - delivered through the chained future
                chained._finish(None, e)
        self._work._on_done(run)
        return Future(chained)


class Work:
    """The handle of one asynchronous operation (torch.distributed.Work)."""

    def __init__(self, label: str, result=None, lazy: Callable[[float | None], bool] | None = None,
                 poll: Callable[[], bool] | None = None):
        self.label = label
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._exc: BaseException | None = None
        self._result = result
        self._callbacks: list[Callable[[], None]] = []
        self._lazy = lazy      # completes the operation in the waiting thread (irecv, isend)
        self._poll = poll      # non-blocking attempt for is_completed()
        self._source_rank: int | None = None

    # -- completion (executor side) -------------------------------------------------------------
    def _finish(self, result, exc: BaseException | None) -> None:
        with self._lock:
            if self._event.is_set():
                return
            if result is not None:
                self._result = result
            self._exc = exc
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb()

    def _on_done(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    # -- user side -----------------------------------------------------------------------------
    def wait(self, timeout=None) -> bool:
        """Blocks until the operation finished; re-raises its error. ``timeout``: seconds or timedelta."""
        limit = None if timeout is None else seconds(timeout)
        if self._lazy is not None and not self._event.is_set():
            try:
                self._lazy(limit)
            except BaseException as e:  # noqa: BLE001
                self._finish(None, e)
        if not self._event.wait(limit):
            raise DistTimeoutError(f"{self.label} did not complete within {limit:.1f} s")
        if self._exc is not None:
            raise self._exc
        return True

    def is_completed(self) -> bool:
        if not self._event.is_set() and self._poll is not None:
            try:
                self._poll()
            except BaseException as e:  # noqa: BLE001
                self._finish(None, e)
        return self._event.is_set()

    def is_success(self) -> bool:
        return self._event.is_set() and self._exc is None

    def exception(self) -> BaseException | None:
        return self._exc

    def result(self):
        return self._result

    def source_rank(self) -> int:
        if self._source_rank is None:
            raise RuntimeError(f"{self.label}: no source rank (not a receive from any source, or not complete)")
        return self._source_rank

    def get_future(self) -> Future:
        return Future(self)

    def synchronize(self) -> None:
        self.wait()

    def block_current_stream(self) -> None:  # CUDA-stream API of torch; host memory needs nothing
        pass

    def __repr__(self):
        state = "done" if self._event.is_set() else "pending"
        return f"<Work {self.label} {state}>"
