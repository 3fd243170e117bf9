"""``spawn`` / ``start_processes``: run ``fn(i, *args)`` in ``nprocs`` processes, as torch.multiprocessing.

A child's uncaught exception travels back (its traceback as text) and is re-raised in the parent
as ``ProcessRaisedException`` naming the child's index; a child that exits non-zero or dies of a
signal gives ``ProcessExitedException``. On the first failure the other children are terminated.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import sys
import traceback

__all__ = ["ProcessContext", "ProcessException", "ProcessExitedException", "ProcessRaisedException", "spawn",
           "start_processes"]


class ProcessException(Exception):
    """A child of ``spawn`` failed; ``error_index`` is its index, ``pid`` its process id."""

    def __init__(self, msg: str, error_index: int, pid: int):
        super().__init__(msg)
        self.msg = msg
        self.error_index = error_index
        self.pid = pid

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid)


class ProcessRaisedException(ProcessException):
    """The child raised; the message holds its traceback."""


class ProcessExitedException(ProcessException):
    """The child exited with a non-zero code or was killed by a signal."""

    def __init__(self, msg: str, error_index: int, error_pid: int, exit_code: int, signal_name: str | None = None):
        super().__init__(msg, error_index, error_pid)
        self.exit_code = exit_code
        self.signal_name = signal_name

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid, self.exit_code, self.signal_name)


def _child_main(fn, i, args, error_queue):
    try:
        fn(i, *args)
    except KeyboardInterrupt:
        pass  # the parent is stopping everyone
    except Exception:
        error_queue.put((i, traceback.format_exc()))
        sys.exit(1)


class ProcessContext:
    """The started children of one ``spawn``; ``join()`` until all finish or one fails."""

    def __init__(self, processes, error_queue):
        self.processes = processes
        self.error_queue = error_queue
        self.sentinels = {p.sentinel: i for i, p in enumerate(processes)}

    def pids(self):
        return [p.pid for p in self.processes]

    def join(self, timeout=None) -> bool:
        """Waits up to ``timeout`` seconds; True when every child has exited cleanly.

        Raises ProcessRaisedException / ProcessExitedException for the first child that failed,
        after terminating the others.
        """
        if not self.sentinels:
            return True
        ready = multiprocessing.connection.wait(list(self.sentinels), timeout=timeout)
        failed = None
        for sentinel in ready:
            i = self.sentinels.pop(sentinel)
            p = self.processes[i]
            p.join()
            if p.exitcode != 0 and failed is None:
                failed = i
        if failed is None:
            return not self.sentinels
        for p in self.processes:  # stop the others before reporting
            if p.is_alive():
                p.terminate()
        for p in self.processes:
            p.join()
        self.sentinels.clear()
        raised = {}
        while not self.error_queue.empty():
            i, text = self.error_queue.get()
            raised[i] = text
        p = self.processes[failed]
        if failed in raised:
            msg = f"\n\n-- Process {failed} terminated with the following error:\n{raised[failed]}"
            raise ProcessRaisedException(msg, failed, p.pid)
        if p.exitcode < 0:
            name = signal.Signals(-p.exitcode).name
            raise ProcessExitedException(f"process {failed} terminated with signal {name}", failed, p.pid,
                                         p.exitcode, name)
        raise ProcessExitedException(f"process {failed} terminated with exit code {p.exitcode}", failed, p.pid,
                                     p.exitcode)


def start_processes(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """Starts ``nprocs`` processes running ``fn(i, *args)`` with ``start_method``; see ``spawn``."""
    from ._shared_storage import register_reductions
    if int(nprocs) < 1:
        raise ValueError(f"nprocs must be at least 1, got {nprocs}")
    register_reductions()
    ctx = multiprocessing.get_context(start_method)
    error_queue = ctx.SimpleQueue()
    processes = []
    for i in range(int(nprocs)):
        p = ctx.Process(target=_child_main, args=(fn, i, tuple(args), error_queue), daemon=daemon)
        p.start()
        processes.append(p)
    context = ProcessContext(processes, error_queue)
    if not join:
        return context
    while not context.join():
        pass
    return None


def spawn(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """Runs ``fn(i, *args)`` for i in 0..nprocs-1, each in a new process (PyTorch's ``mp.spawn``).

    With ``join=True`` waits for all and re-raises the first failure naming the process index;
    with ``join=False`` returns the ``ProcessContext``.
    """
    return start_processes(fn, args, nprocs, join, daemon, start_method)
