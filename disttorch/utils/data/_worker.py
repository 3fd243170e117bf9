"""What runs inside a DataLoader worker process: seeding, the task loop, and error forwarding.

A worker takes ``(task_idx, indices, released_slots)`` from its index queue, fetches and collates that batch, and
writes ``(task_idx, batch)`` to its own result pipe, so one worker's results arrive in task
order. Exceptions are caught and sent back as an ``ExceptionWrapper`` carrying the formatted
traceback; the main process re-raises them.
"""
from __future__ import annotations

import os
import queue
import random
import signal
import sys
import traceback

import numpy as np

from . import _shared_memory
from ._fetch import create_fetcher

# How often an idle worker checks that its parent is still alive (seconds).
_PARENT_CHECK_INTERVAL = 1.0


class WorkerInfo:
    """What a worker knows about itself: ``id``, ``num_workers``, ``seed`` and its ``dataset`` copy."""

    __initialized = False

    def __init__(self, **kwargs) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.__keys = tuple(kwargs.keys())
        self.__initialized = True

    def __setattr__(self, key, value):
        if self.__initialized:
            raise RuntimeError(f"Cannot assign attributes to {self.__class__.__name__} objects "
                               f"(tried to set {key!r})")
        return super().__setattr__(key, value)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__keys)
        return f"{self.__class__.__name__}({items})"


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker: its ``WorkerInfo``; in the main process: None.

    Use it in ``IterableDataset.__iter__`` or ``worker_init_fn`` to give each worker its own
    shard (``info.id`` out of ``info.num_workers``) or its own random state (``info.seed``).
    """
    return _worker_info


class KeyErrorMessage(str):
    """A str whose repr is itself, so a re-raised KeyError prints its traceback readably."""

    def __repr__(self):
        return self


class ExceptionWrapper:
    """An exception caught in a worker: its type and formatted traceback, picklable."""

    def __init__(self, exc_info=None, where: str = "in background") -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def reraise(self):
        """Raises the exception again in this process, its message carrying the original traceback."""
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            msg = KeyErrorMessage(msg)
        try:
            exception = self.exc_type(msg)
        except Exception:
            # The exception type takes other constructor arguments; keep the message anyway.
            raise RuntimeError(msg) from None
        raise exception


class _IterableEnd:
    """A worker's IterableDataset copy is exhausted."""

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id


class _Release:
    """Shared-memory slots the main process no longer uses; the worker may refill them."""

    def __init__(self, names) -> None:
        self.names = names


class _ResumeIteration:
    """Persistent workers: start a new epoch (re-create the dataset iterator). Echoed back as the ack."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch


def seed_worker(base_seed: int, worker_id: int) -> int:
    """Seeds disttorch, Python's ``random`` and NumPy's global state for one worker; returns its seed.

    The classic PyTorch pitfall is a NumPy state copied unchanged into every forked worker, so all
    workers draw the same "random" augmentations; here each one gets a distinct state derived from
    (base_seed, worker_id), and base_seed is drawn afresh from the loader's generator per epoch.
    """
    seed = base_seed + worker_id
    random.seed(seed)
    import disttorch

    disttorch.manual_seed(seed)
    np.random.seed(np.random.SeedSequence([worker_id, base_seed]).generate_state(4))
    return seed


def _limit_threads() -> None:
    """One BLAS thread per worker, as torch does: N workers x M threads would oversubscribe."""
    import disttorch

    set_num_threads = getattr(disttorch, "set_num_threads", None)
    if set_num_threads is not None:
        try:
            set_num_threads(1)
        except Exception:
            pass  # a missing thread-pool library must not stop the worker


def _set_parent_death_signal() -> None:
    """Linux: have the kernel send SIGTERM to this worker when the process that forked it dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no prctl: the idle-loop parent check still ends the worker


_terminating_signal = None


def _exit_on_sigterm(signum, frame):
    # Unwind instead of dying outright so the finally-block of the loop unlinks this worker's
    # segments; the loop then re-sends the signal so the main process sees "killed by SIGTERM".
    # Only the first signal unwinds: the parent-death signal comes once per exiting thread of a
    # killed parent, microseconds apart, and a second SystemExit landing in the finally-block
    # before it has switched this handler off would skip the whole clean-up.
    global _terminating_signal
    if _terminating_signal is not None:
        return
    _terminating_signal = signum
    raise SystemExit(128 + signum)


def _note_sigterm(signum, frame):
    # During the clean-up a SIGTERM must not cut it short: the parent-pid check and the kernel's
    # parent-death signal race (the main's death triggers both), and a SystemExit raised between
    # two unlinks would leak the rest. Noted here, acted on once the clean-up is done.
    global _terminating_signal
    _terminating_signal = signum


def _worker_loop(is_iterable, dataset, index_queue, result_conn, auto_collation, collate_fn,
                 drop_last, base_seed, init_fn, worker_id, num_workers, shm_prefix, main_pid,
                 fds_to_close, set_pdeathsig):
    """The body of worker process ``worker_id``; returns when told to (None) or the parent dies."""
    global _worker_info
    # Ctrl-C goes to the whole process group; the main process handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    for fd in fds_to_close:
        # Forked workers inherit the main's ends of the other workers' pipes; holding them would
        # keep a pipe open after the main process closed it.
        try:
            os.close(fd)
        except OSError:
            pass
    # The process that started us: the main process (fork, spawn) or a forkserver. When it goes
    # away we are reparented, which the idle loop notices.
    parent_pid = os.getppid()
    if set_pdeathsig:
        _set_parent_death_signal()
        if parent_pid != main_pid:
            return  # the main process died before we could ask to be told

    seed = seed_worker(base_seed, worker_id)
    _limit_threads()
    _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)
    allocator = _shared_memory.SegmentAllocator(f"{shm_prefix}w{worker_id}_")
    where = f"in DataLoader worker process {worker_id} (pid {os.getpid()})"

    init_exception = None
    fetcher = None
    try:
        if init_fn is not None:
            init_fn(worker_id)
        fetcher = create_fetcher(is_iterable, dataset, auto_collation, collate_fn, drop_last)
    except Exception:
        init_exception = ExceptionWrapper(where=where)

    iteration_end = False
    parent_gone = False
    try:
        while True:
            try:
                task = index_queue.get(timeout=_PARENT_CHECK_INTERVAL)
            except queue.Empty:
                if os.getppid() != parent_pid:
                    parent_gone = True
                    break
                continue
            if task is None:
                break
            if isinstance(task, _Release):
                allocator.release(task.names)
                continue
            if isinstance(task, _ResumeIteration):
                iteration_end = False
                if is_iterable:
                    try:
                        fetcher = create_fetcher(is_iterable, dataset, auto_collation, collate_fn, drop_last)
                    except Exception:
                        init_exception = ExceptionWrapper(where=where)
                _send(result_conn, (None, task), allocator, where)
                continue
            task_idx, index, released = task
            if released:
                allocator.release(released)
            if iteration_end:
                continue  # the main process skips tasks sent to an exhausted worker
            if init_exception is not None:
                data, init_exception = init_exception, None
            else:
                _shared_memory._allocator = allocator
                try:
                    data = fetcher.fetch(index)
                except StopIteration:
                    if not is_iterable:
                        data = ExceptionWrapper(where=where)
                    else:
                        data = _IterableEnd(worker_id)
                        iteration_end = True
                except Exception:
                    data = ExceptionWrapper(where=where)
                finally:
                    _shared_memory._allocator = None
            _send(result_conn, (task_idx, data), allocator, where)
            del data  # drop our mapping of the batch's segments before fetching the next one
    except (BrokenPipeError, EOFError, ConnectionResetError):
        parent_gone = True  # the main process closed its end: it is shutting down or dead
    finally:
        signal.signal(signal.SIGTERM, _note_sigterm)
        allocator.unlink_all()
        if parent_gone or _terminating_signal is not None or os.getppid() != parent_pid:
            # Batches sent but never received would leak; nobody else will unlink them now. A
            # SIGTERM counts even while the parent pid is unchanged: the parent-death signal fires
            # when the forking *thread* exits, and a killed main process's threads exit one by one,
            # the kernel handing us to a sibling thread (same pid) that is itself about to go.
            _shared_memory.unlink_prefix(allocator.prefix)
        try:
            result_conn.close()
        except OSError:
            pass
        if _terminating_signal is not None:
            signal.signal(_terminating_signal, signal.SIG_DFL)
            os.kill(os.getpid(), _terminating_signal)


def _send(conn, message, allocator, where: str) -> None:
    try:
        payload = _shared_memory.dumps(message, allocator)
    except Exception:
        allocator.unlink_all()
        error = ExceptionWrapper(where=f"{where} while pickling its batch for the main process")
        payload = _shared_memory.dumps((message[0], error), None)
    conn.send_bytes(payload)  # a broken pipe ends the loop; the finally-block sweeps the slots
