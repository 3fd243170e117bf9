"""The main process's side of the DataLoader workers: start them, hand out tasks, receive batches
without ever blocking on a dead worker, and stop them all.

Each worker has its own index queue (tasks in) and its own result pipe (batches out). Waiting for
a batch means waiting on that worker's pipe *and on every worker's process sentinel*, so a worker
that dies (an exception escaping the loop, a segfault, the OOM killer) wakes the main process at
once and is reported with its exit code or signal name instead of hanging the job.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import weakref

from . import _shared_memory
from ._worker import _Release, _worker_loop

# How long a stopping worker may take to finish its current batch before it is terminated.
_SHUTDOWN_GRACE_S = 5.0


def default_context():
    """fork on Linux (fast start, no pickling of the dataset) unless a GPU runtime is loaded in
    this process, which a forked child must not touch; spawn elsewhere."""
    if sys.platform.startswith("linux") and "cupy" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def resolve_context(context):
    if context is None:
        return default_context()
    if isinstance(context, str):
        methods = multiprocessing.get_all_start_methods()
        if context not in methods:
            raise ValueError(f"multiprocessing_context relies on a start method that is not available "
                             f"on this platform: {context!r} (available: {methods})")
        return multiprocessing.get_context(context)
    if not hasattr(context, "Process"):
        raise TypeError(f"multiprocessing_context option should be a valid context object or a string "
                        f"specifying the start method, but got multiprocessing_context={context!r}")
    return context


class WorkerPool:
    """``num_workers`` worker processes with their queues and pipes."""

    def __init__(self, *, num_workers, context, is_iterable, dataset, auto_collation, collate_fn,
                 drop_last, base_seed, worker_init_fn) -> None:
        self.num_workers = num_workers
        self.prefix = _shared_memory.new_prefix()
        self.processes, self.index_queues, self.readers = [], [], []
        self.receiver = _shared_memory.SegmentReceiver()
        self._pending_releases = {}  # worker_id -> slot names to return with its next task
        # Tear-down state lives outside `self` so the finalizer does not keep the pool alive.
        self._finalizer = weakref.finalize(self, _shutdown, os.getpid(), self.processes,
                                           self.index_queues, self.readers, self.prefix, self.receiver)
        fork = context.get_start_method() == "fork"
        # PR_SET_PDEATHSIG fires when the *thread* that forked dies, and only the main thread's
        # end means the process's end; a forkserver's children have the forkserver as parent.
        set_pdeathsig = (threading.current_thread() is threading.main_thread()
                         and context.get_start_method() != "forkserver")
        inherited_fds = []
        try:
            for worker_id in range(num_workers):
                index_queue = context.Queue()
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(
                    target=_worker_loop,
                    args=(is_iterable, dataset, index_queue, writer, auto_collation, collate_fn,
                          drop_last, base_seed, worker_init_fn, worker_id, num_workers, self.prefix,
                          os.getpid(), list(inherited_fds) if fork else [], set_pdeathsig),
                    daemon=True,  # multiprocessing terminates daemonic children at interpreter exit
                )
                process.start()
                writer.close()
                inherited_fds.append(reader.fileno())
                self.index_queues.append(index_queue)
                self.readers.append(reader)
                self.processes.append(process)
        except BaseException:
            self.shutdown()
            raise

    def put(self, worker_id: int, message) -> None:
        """Sends a control message (resume, release) to one worker."""
        self.index_queues[worker_id].put(message)

    def _collect_releases(self) -> dict:
        pending = self._pending_releases
        for owner, names in self.receiver.take_released().items():
            pending.setdefault(owner, []).extend(names)
        return pending

    def put_task(self, worker_id: int, task_idx: int, index) -> None:
        """Sends a task, with the worker's slots that the main process has released meanwhile
        (riding along with tasks halves the messages a worker has to read)."""
        released = self._collect_releases().pop(worker_id, ())
        self.index_queues[worker_id].put((task_idx, index, released))

    def send_releases(self) -> None:
        """Hands every released slot back to its worker now (before a new epoch starts)."""
        pending = self._collect_releases()
        for worker_id, names in pending.items():
            self.index_queues[worker_id].put(_Release(names))
        pending.clear()

    def recv(self, worker_id: int, timeout: float):
        """The next message from ``worker_id``: waits at most ``timeout`` seconds (0 = forever)."""
        reader = self.readers[worker_id]
        self._wait([reader], timeout)
        try:
            message = reader.recv_bytes()
        except (EOFError, OSError):
            self.raise_if_dead()
            raise RuntimeError(f"DataLoader worker {worker_id} closed its result pipe unexpectedly") from None
        return self.receiver.loads(message, worker_id)

    def wait_any(self, worker_ids, timeout: float) -> int:
        """The first of ``worker_ids`` with a message ready."""
        readers = [self.readers[w] for w in worker_ids]
        ready = self._wait(readers, timeout)
        return worker_ids[readers.index(ready)]

    def _wait(self, readers, timeout: float):
        for reader in readers:
            if reader.poll():
                return reader
        deadline = time.monotonic() + timeout if timeout else None
        sentinels = [p.sentinel for p in self.processes]
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = multiprocessing.connection.wait(readers + sentinels, remaining)
            for reader in readers:
                if reader in ready:
                    return reader
            if ready:
                self.raise_if_dead()
            elif deadline is not None and time.monotonic() >= deadline:
                raise RuntimeError(f"DataLoader timed out after {timeout} seconds")

    def raise_if_dead(self) -> None:
        """Raises a RuntimeError naming every worker that has exited (and stops the others)."""
        dead = [(worker_id, p) for worker_id, p in enumerate(self.processes) if p.exitcode is not None]
        if not dead:
            return
        reasons = [_describe_exit(worker_id, p.pid, p.exitcode) for worker_id, p in dead]
        pids = ", ".join(str(p.pid) for _, p in dead)
        self.shutdown()
        raise RuntimeError(f"DataLoader worker (pid(s) {pids}) exited unexpectedly: " + "; ".join(reasons))

    def shutdown(self) -> None:
        self._finalizer()


def _describe_exit(worker_id: int, pid: int, exitcode: int) -> str:
    if exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
            name, description = sig.name, signal.strsignal(sig) or sig.name
        except ValueError:
            name, description = f"signal {-exitcode}", "unknown signal"
        text = f"worker {worker_id} (pid {pid}) is killed by signal: {description} ({name})."
        if name == "SIGKILL":
            text += " It may have been stopped by the out-of-memory killer; reduce num_workers or the batch size."
        elif name == "SIGBUS":
            text += " This usually means shared memory (/dev/shm) ran out; enlarge it (docker --shm-size)."
        return text
    return f"worker {worker_id} (pid {pid}) exited with exit code {exitcode}."


def _shutdown(owner_pid, processes, index_queues, readers, prefix, receiver) -> None:
    """Stops every worker, never waiting more than the grace period, and frees what they left."""
    if os.getpid() != owner_pid:
        return  # a forked copy of the pool: the workers belong to the process that started them
    # Each step is best effort: a worker or pipe may already be gone, and shutdown must go on.
    for index_queue in index_queues:
        _quietly(index_queue.put, None)
    # Closing our ends makes a worker blocked on a full pipe fail with EPIPE and exit.
    for reader in readers:
        _quietly(reader.close)
    deadline = time.monotonic() + _SHUTDOWN_GRACE_S
    for process in processes:
        _quietly(lambda p=process: p.join(max(0.0, deadline - time.monotonic())))
    for process in processes:
        _quietly(_terminate, process)
    for index_queue in index_queues:
        _quietly(index_queue.cancel_join_thread)  # never block exit on tasks nobody will read
        _quietly(index_queue.close)
    receiver.close()
    _shared_memory.unlink_prefix(prefix)


def _quietly(fn, *args):
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - shutdown of something that may already be gone
        return


def _terminate(process):
    if process.is_alive():
        process.terminate()
        process.join(1.0)
    if process.is_alive():
        process.kill()
        process.join()
