"""The executor of one process group: call order, sequence numbers, deadlines, abort.

Collectives of a group must run in the order they were called, on every rank, so each gets the
next sequence number when it is submitted. A synchronous call runs in the caller's thread when
nothing is queued (no thread hand-off on the common path); ``async_op=True``, or a call made while
others are queued, goes to the group's worker thread and gets a ``Work``. Each body runs as
``body(seq, deadline)`` with ``deadline = now + timeout_s`` taken when it starts, not when it was
queued (a queued all-reduce must not time out because the one before it was slow).

The first failure of any body makes the executor unusable: it calls ``tell_peers(exc)`` once
(unless the failure is itself an abort received from a peer), and every later submission raises
``ProcessGroupAbortedError`` at once, naming the first failure, instead of hanging on peers that
gave up.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Generator

from .errors import DistError, ProcessGroupAbortedError
from .work import Work

Body = Callable[[int, float], None]
#: a generator function: ``body(seq, deadline)`` yields when it needs more input, and receives how much
#: is ready (``StagedRun.feed``)
StagedBody = Callable[[int, float], Generator[None, int, None]]


class Executor:
    """Runs bodies in submission order, inline or on one worker thread.

    Args:
        name: the group's name, for messages and the thread's name.
        timeout_s: each body's time limit (its deadline is taken when it starts).
        begin: ``begin(seq, label)`` before a body runs, in the thread that runs it (the group
            sets its thread-local description and its wait reports there).
        end: ``end()`` after a body, in the same thread, whatever happened.
        tell_peers: ``tell_peers(exc)`` on the first failure that is not an abort from a peer.
    """

    def __init__(self, name: str, timeout_s: float, *, begin: Callable[[int, str], None] | None = None,
                 end: Callable[[], None] | None = None,
                 tell_peers: Callable[[BaseException], None] | None = None):
        self.name = name
        self.timeout_s = timeout_s
        self._begin, self._end, self._tell_peers = begin, end, tell_peers
        self.seq = 0  # the last sequence number handed out
        self.last_finished = 0  # the last sequence number whose body returned
        self.failed: BaseException | None = None
        self.closed = False
        self._cv = threading.Condition()
        self._queue: collections.deque = collections.deque()
        self._busy = False
        self._worker: threading.Thread | None = None
        self._open: str | None = None  # the staged collective that runs a part at a time, if any

    # -- state ---------------------------------------------------------------------------------
    def ensure_usable(self, label: str) -> None:
        """Raises if the group was closed or an earlier operation failed."""
        if self.closed:
            raise DistError(f"{label}: process group {self.name} was destroyed")
        if self.failed is not None:
            raise ProcessGroupAbortedError(f"{label}: process group {self.name} is unusable after an earlier "
                                           f"failure: {self.failed}")

    def fail(self, exc: BaseException) -> None:
        """Records the first failure and tells the peers (once; not for an abort they sent us)."""
        if self.failed is not None:
            return
        self.failed = exc
        if isinstance(exc, ProcessGroupAbortedError) or self._tell_peers is None:
            return  # somebody else aborted; telling everyone again helps nobody
        self._tell_peers(exc)

    # -- submission ----------------------------------------------------------------------------
    def submit(self, label: str, body: Body, async_op: bool, after: Callable[[], None] | None = None,
               result=None) -> Work | None:
        """Runs ``body(seq, deadline)`` in call order; then ``after()``. Returns a Work when
        ``async_op``, else None once the body has run (its exception propagates)."""
        self.ensure_usable(label)
        with self._cv:
            if self._open is not None:
                raise DistError(f"{label} on process group {self.name} was issued while the staged {self._open} "
                                f"waits for the rest of its input (DDP's gradients across hosts, still being "
                                f"computed): a collective inside backward (a custom autograd function) cannot run "
                                f"before DDP's all-reduce ends; set DISTTORCH_DDP_OVERLAP=off for this model")
            self.seq += 1
            seq = self.seq
            inline = not async_op and not self._busy and not self._queue
            if inline:
                self._busy = True
            else:
                work = Work(f"{label} #{seq} on group {self.name}", result=result)
                self._queue.append((seq, label, body, after, work))
                self._start_worker()
                self._cv.notify_all()
        if inline:
            try:
                self._run(seq, label, body, after)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
            return None
        if async_op:
            return work
        work.wait()
        return None

    def _run(self, seq: int, label: str, body: Body, after) -> None:
        if self._begin is not None:
            self._begin(seq, label)
        try:
            self.ensure_usable(label)
            body(seq, time.monotonic() + self.timeout_s)
            self.last_finished = seq
            if after is not None:
                after()
        except BaseException as e:
            # the peers are somewhere inside this collective: tell them, and refuse further calls
            self.fail(e)
            raise
        finally:
            if self._end is not None:
                self._end()

    def open_staged(self, label: str, body: StagedBody) -> "StagedRun | None":
        """Starts a collective that runs in the caller's thread a part at a time: ``body(seq,
        deadline)`` is a generator that yields whenever it needs more of its input, and
        ``StagedRun.feed`` resumes it. Until it ends, the group runs nothing else: a collective
        submitted meanwhile raises at once (it would wait for this one, whose input its caller is
        still computing). None when something is queued or running: then submit the whole."""
        self.ensure_usable(label)
        with self._cv:
            if self._busy or self._queue:
                return None
            self.seq += 1
            seq = self.seq
            self._busy = True
            self._open = f"{label} #{seq}"
        run = StagedRun(self, seq, label)
        run.start(body)
        return run

    def _close_staged(self, run: "StagedRun", exc: BaseException | None) -> None:
        try:
            if exc is None:
                self.last_finished = run.seq
            else:
                self.fail(exc)
        finally:
            if self._end is not None:
                self._end()
            with self._cv:
                self._busy = False
                self._open = None
                self._cv.notify_all()

    def _start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work_loop, name=f"disttorch-pg-{self.name}", daemon=True)
            self._worker.start()

    def _work_loop(self) -> None:
        while True:
            with self._cv:
                while not self.closed and (self._busy or not self._queue):
                    self._cv.wait()
                if self.closed and not self._queue:
                    return
                seq, label, body, after, work = self._queue.popleft()
                self._busy = True
            try:
                self._run(seq, label, body, after)
                work._finish(None, None)  # noqa: SLF001
            except BaseException as e:  # noqa: BLE001 - handed to the waiter
                work._finish(None, e)  # noqa: SLF001
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def close(self, join_s: float = 5.0) -> None:
        """Refuses new submissions; the worker finishes what is queued (each body fails fast on
        its own once the transport is gone) and exits."""
        with self._cv:
            self.closed = True
            self._cv.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(join_s)


class StagedRun:
    """A collective opened by ``Executor.open_staged``, run by its caller a part at a time."""

    def __init__(self, executor: Executor, seq: int, label: str):
        self.executor, self.seq, self.label = executor, seq, label
        self.done = False
        self._gen = None

    def start(self, body: StagedBody) -> None:
        ex = self.executor
        if ex._begin is not None:  # noqa: SLF001
            ex._begin(self.seq, self.label)  # noqa: SLF001
        try:
            self._gen = body(self.seq, time.monotonic() + ex.timeout_s)
        except BaseException as e:
            self._end(e)
            raise
        self._step(None)

    def feed(self, ready: int) -> bool:
        """Hands the body ``ready`` (how much input is final) and runs it until it needs more or
        ends; True once it has ended. Its exception propagates (the group is then unusable)."""
        if not self.done:
            self._step(ready)
        return self.done

    def abort(self, reason: str) -> None:
        """Ends a run whose input will never be complete: the body gets a DistError (and the peers,
        who wait inside this collective, hear of it)."""
        if self.done:
            return
        try:
            self._gen.throw(DistError(f"{self.label} #{self.seq}: {reason}"))
        except StopIteration:
            self._end(None)
        except BaseException as e:  # noqa: BLE001 - recorded as the group's failure
            self._end(e)
        else:
            self._gen.close()
            self._end(DistError(f"{self.label} #{self.seq}: {reason}"))

    def _step(self, value) -> None:
        try:
            self._gen.send(value)
        except StopIteration:
            self._end(None)
        except BaseException as e:
            self._end(e)
            raise

    def _end(self, exc: BaseException | None) -> None:
        if not self.done:
            self.done = True
            self.executor._close_staged(self, exc)  # noqa: SLF001
