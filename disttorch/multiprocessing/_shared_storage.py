"""Tensor data in POSIX shared memory, and how such tensors travel to other processes.

``Tensor.share_memory_()`` copies the tensor's array into a fresh shared segment (``MAP_SHARED``)
and points the tensor at it. A child started by *fork* inherits the mapping itself; a child
started by *spawn* or *forkserver* receives the tensor pickled by multiprocessing's
``ForkingPickler``, which sends only the segment's name, offset, shape, strides and dtype, and the
child maps the same pages. Either way, every process writes into and reads from one memory, which
is what Hogwild training relies on.

The process that created a segment unlinks its name when the last array on it is freed (or at
exit); processes that mapped it keep their mapping, as with any unlinked POSIX segment. A process
killed by SIGKILL cannot unlink: its segments stay in /dev/shm as ``disttorch-mp-<pid>-*``
(a prefix unlike the DataLoader's ``dt<pid>_`` slots, so neither sweeps the other's).
"""
from __future__ import annotations

import bisect
import mmap
import os
import secrets
import weakref

import numpy as np

try:
    import _posixshmem
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None

# Mapped segments of this process, sorted by start address: (start, end, name).
_spans: list = []
_opened: weakref.WeakValueDictionary[str, mmap.mmap] = weakref.WeakValueDictionary()


def _address(buf) -> int:
    return np.frombuffer(buf, dtype=np.uint8).__array_interface__["data"][0]


def _track(m, name, creator_pid):
    start = _address(m)
    entry = (start, start + len(m), name)
    bisect.insort(_spans, entry)
    weakref.finalize(m, _forget, entry, creator_pid)


def _forget(entry, creator_pid):
    try:
        _spans.remove(entry)
    except ValueError:
        pass
    if creator_pid == os.getpid():  # only the creator unlinks, not its forked children
        try:
            _posixshmem.shm_unlink(entry[2])
        except OSError:
            pass


def _segment_of(arr):
    """(name, offset, start) of the segment holding ``arr``'s data, or None."""
    if type(arr) is not np.ndarray or not _spans:
        return None
    addr = arr.__array_interface__["data"][0]
    i = bisect.bisect_right(_spans, (addr, float("inf"), "")) - 1
    if i >= 0:
        start, end, name = _spans[i]
        if start <= addr < end or (start == addr == end):
            return name, addr - start, start
    return None


def is_in_shared_memory(arr) -> bool:
    return _segment_of(arr) is not None


def _map(name, size, create):
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = _posixshmem.shm_open(name, flags, mode=0o600)
    try:
        if create:
            os.ftruncate(fd, size)
        else:
            size = os.fstat(fd).st_size
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def move_to_shared_memory(tensor) -> None:
    """Points ``tensor`` at a shared-memory copy of its data (no-op on GPU or when already shared)."""
    arr = tensor._data
    if type(arr) is not np.ndarray or is_in_shared_memory(arr):
        return
    if _posixshmem is None:  # pragma: no cover
        raise RuntimeError("share_memory_(): POSIX shared memory is not available on this platform")
    register_reductions()
    size = max(arr.nbytes, 1)  # a zero-size mapping is not allowed
    name = f"/disttorch-mp-{os.getpid()}-{secrets.token_hex(6)}"
    m = _map(name, size, create=True)
    _track(m, name, os.getpid())
    shared = np.ndarray(arr.shape, dtype=arr.dtype, buffer=m)
    shared[...] = arr
    tensor._data = shared


def _open(name):
    m = _opened.get(name)
    if m is None:
        m = _map(name, 0, create=False)
        _opened[name] = m
        _track(m, name, None)
    return m


def _rebuild_shared(name, offset, shape, strides, dtype, requires_grad, cls):
    from ..tensor import Tensor
    m = _open(name)
    arr = np.ndarray(shape, dtype=dtype, buffer=m, offset=offset, strides=strides)
    t = Tensor._wrap(arr)
    if cls is not Tensor:
        t.__class__ = cls
    t._requires_grad = requires_grad
    return t


def _reduce_tensor(t):
    seg = _segment_of(t._data)
    if seg is None:
        return t.__reduce_ex__(5)
    if t.grad_fn is not None:
        raise RuntimeError("Cowardly refusing to serialize non-leaf tensor which requires_grad, since autograd does "
                           "not support crossing process boundaries.  If you just want to transfer the data, call "
                           "detach() on the tensor before serializing (e.g., putting it on the queue).")
    name, offset, _ = seg
    a = t._data
    return _rebuild_shared, (name, offset, a.shape, a.strides, a.dtype, t._requires_grad, type(t))


_registered = False


def register_reductions() -> None:
    """Teaches multiprocessing's pickler to send shared tensors by segment name (idempotent)."""
    global _registered
    if _registered:
        return
    from multiprocessing.reduction import ForkingPickler

    from ..tensor import Tensor
    # The pickler dispatches on the exact class: register Tensor and every subclass loaded now
    # (Parameter, ...); the core does not import nn to name them.
    todo = [Tensor]
    while todo:
        cls = todo.pop()
        ForkingPickler.register(cls, _reduce_tensor)
        todo.extend(cls.__subclasses__())
    _registered = True
