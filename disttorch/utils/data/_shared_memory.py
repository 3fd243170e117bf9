"""Moves batches from worker processes to the main process through POSIX shared memory.

A worker pickles its batch with protocol 5: every contiguous array buffer of at least
``SHARE_THRESHOLD`` bytes goes out of band into a shared-memory *slot*, and only the slot's name
and the buffer's offset travel through the pipe. The main process maps the slot (once; it then
unlinks the name and keeps the mapping) and rebuilds the arrays on top of it: no copy on the
receiving side, and none on the sending side either, because the worker's collate stacks the
batch straight into a slot (``empty``).

Slots are recycled instead of created per batch: fresh shared pages cost far more than the data
(allocating and zeroing a 400 KB batch's pages takes ~10x as long as copying it). When the last
array viewing a slot dies in the main process, the slot's name is queued for release; the loader
sends the releases to the worker, which reuses the slot for a later batch. A worker keeps a few
free slots and retires the rest, telling the main process to drop its mapping too.

Slot names start with a per-loader prefix, so whatever a dead or interrupted worker left behind
is found and unlinked by ``unlink_prefix``. Where POSIX shared memory is missing (Windows)
everything travels in-band through the pipe.
"""
from __future__ import annotations

import collections
import itertools
import mmap
import os
import pickle
import secrets
import warnings
import weakref

import numpy as np

try:
    import _posixshmem
except ImportError:  # Windows: no POSIX shared memory; batches are pickled through the pipe
    _posixshmem = None

# Below this size a buffer is cheaper to copy through the pipe than to give a slot of its own;
# measured with benchmarks/dataloader.py.
SHARE_THRESHOLD = 64 * 1024
# Free slots a worker keeps for reuse; more are retired (unmapped on both sides).
MAX_FREE_SLOTS = 8

_SHM_DIR = "/dev/shm"  # where Linux keeps segment names; used only to sweep leftovers

_allocator = None  # the worker's SegmentAllocator while it is collating a batch


def available() -> bool:
    return _posixshmem is not None


def new_prefix() -> str:
    """A name prefix unique to one loader iterator (short: macOS allows 31 characters in all)."""
    return f"dt{os.getpid():x}_{secrets.token_hex(3)}_"


def _address(buffer) -> int:
    return np.frombuffer(buffer, dtype=np.uint8).__array_interface__["data"][0]


class _Slot:
    __slots__ = ("name", "size", "mm", "address")

    def __init__(self, name: str, size: int, mm: mmap.mmap) -> None:
        self.name, self.size, self.mm = name, size, mm
        self.address = _address(mm)


class SegmentAllocator:
    """A worker's shared-memory slots: free, in the batch being built, or lent to the main process."""

    def __init__(self, prefix: str, max_free: int = MAX_FREE_SLOTS) -> None:
        self.prefix = prefix
        self._counter = itertools.count()
        self._max_free = max_free
        self._free = []  # slots ready for reuse
        self._batch = []  # slots taken for the batch being built
        self._lent = {}  # name -> slot, mapped by the main process and not yet released
        self._retired = []  # names of slots dropped since the last message
        self._disabled = not available()

    def _create(self, size: int) -> _Slot:
        name = f"/{self.prefix}{next(self._counter)}"
        fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            if hasattr(os, "posix_fallocate"):
                # Reserve the pages now: a full /dev/shm (Docker's default is 64 MB) then fails
                # here with ENOSPC instead of killing the worker with SIGBUS on first write.
                os.posix_fallocate(fd, 0, size)
            mm = mmap.mmap(fd, size)
        except BaseException:  # also SystemExit: a worker's SIGTERM lands mid-fallocate most often
            _unlink(name)
            raise
        finally:
            os.close(fd)
        return _Slot(name, size, mm)

    def _take(self, nbytes: int) -> _Slot | None:
        """The smallest free slot that fits, else a new one; None if shared memory is unusable."""
        fitting = [s for s in self._free if s.size >= nbytes]
        if fitting:
            slot = min(fitting, key=lambda s: s.size)
            self._free.remove(slot)
        elif self._disabled:
            return None
        else:
            try:
                slot = self._create(nbytes)
            except OSError as error:
                self._disabled = True
                warnings.warn(f"DataLoader worker could not allocate {nbytes} bytes of shared memory ({error}); "
                              f"batches will be copied through a pipe instead. Enlarge /dev/shm "
                              f"(e.g. docker run --shm-size=1g) to restore zero-copy transfers.")
                return None
        self._batch.append(slot)
        return slot

    def empty(self, shape, dtype) -> np.ndarray | None:
        """An uninitialised array in a slot, or None if shared memory is unusable."""
        dtype = np.dtype(dtype)
        slot = self._take(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        if slot is None:
            return None
        return np.ndarray(shape, dtype=dtype, buffer=slot.mm)

    def share(self, buffer: memoryview) -> tuple | None:
        """(name, slot size, offset, nbytes) of a slot holding ``buffer``: its own, or a copy."""
        nbytes = buffer.nbytes
        address = _address(buffer)
        for slot in self._batch:
            if slot.address <= address and address + nbytes <= slot.address + slot.size:
                return slot.name, slot.size, address - slot.address, nbytes  # already there: no copy
        slot = self._take(nbytes)
        if slot is None:
            return None
        np.frombuffer(slot.mm, dtype=np.uint8, count=nbytes)[:] = np.frombuffer(buffer, dtype=np.uint8)
        return slot.name, slot.size, 0, nbytes

    def finish(self, sent_names) -> None:
        """The batch went out: slots it references are lent, the others are free again."""
        for slot in self._batch:
            if slot.name in sent_names:
                self._lent[slot.name] = slot
            else:
                self._free.append(slot)
        self._batch = []
        self._trim()

    def release(self, names) -> None:
        """The main process no longer uses these slots."""
        for name in names:
            slot = self._lent.pop(name, None)
            if slot is not None:
                self._free.append(slot)
        self._trim()

    def _trim(self) -> None:
        while len(self._free) > self._max_free:
            slot = self._free.pop(0)
            _unlink(slot.name)  # in case the main process never mapped it
            try:
                slot.mm.close()
            except BufferError:
                pass  # an array of ours still views it; the mapping goes when that array does
            self._retired.append(slot.name)

    def take_retired(self) -> list:
        retired, self._retired = self._retired, []
        return retired

    def unlink_all(self) -> None:
        """Unlinks every name this worker created (names already unlinked are ignored)."""
        for slot in itertools.chain(self._free, self._batch, self._lent.values()):
            _unlink(slot.name)


def _unlink(name: str) -> None:
    try:
        _posixshmem.shm_unlink(name)
    except OSError:
        pass


def empty(shape, dtype) -> np.ndarray:
    """``np.empty``, except inside a DataLoader worker where a large array goes in shared memory."""
    allocator = _allocator
    if allocator is not None:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if nbytes >= SHARE_THRESHOLD:
            array = allocator.empty(shape, dtype)
            if array is not None:
                return array
    return np.empty(shape, dtype)


def dumps(obj, allocator: SegmentAllocator | None) -> bytes:
    """Pickles ``obj``, moving large array buffers into the allocator's shared-memory slots."""
    refs = []

    def out_of_band(pickle_buffer) -> bool:
        # Returning True keeps the buffer in-band (copied into the pickle stream).
        raw = pickle_buffer.raw()
        if allocator is None or raw.nbytes < SHARE_THRESHOLD:
            return True
        ref = allocator.share(raw)
        if ref is None:
            return True
        refs.append(ref)
        return False

    try:
        payload = pickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
    except BaseException:
        if allocator is not None:
            allocator.finish(())
        raise
    retired = []
    if allocator is not None:
        allocator.finish({ref[0] for ref in refs})
        retired = allocator.take_retired()
    return pickle.dumps((refs, retired, payload), protocol=5)


class SegmentReceiver:
    """The main process's side: maps slots, rebuilds arrays on them, and notes which are released.

    ``released`` collects (worker_id, name) pairs from finalizers, which may run at any moment
    (garbage collection); it is a deque because appending to one takes no lock.
    """

    def __init__(self) -> None:
        self._maps = {}  # slot name -> mmap (the name itself is unlinked right after mapping)
        self.released = collections.deque()

    def loads(self, message: bytes, worker_id: int):
        refs, retired, payload = pickle.loads(message)
        for name in retired:
            self._maps.pop(name, None)  # arrays still viewing it keep the memory alive
        if not refs:
            return pickle.loads(payload)
        bases, buffers = {}, []
        for name, size, offset, nbytes in refs:
            base = bases.get(name)
            if base is None:
                mm = self._maps.get(name)
                if mm is None:
                    mm = self._maps[name] = _attach(name, size)
                    _unlink(name)  # both sides hold mappings now; the name is no longer needed
                base = bases[name] = np.frombuffer(mm, dtype=np.uint8)
                # When every array built on this slot is gone, hand the slot back to its worker.
                weakref.finalize(base, self.released.append, (worker_id, name)).atexit = False
            buffers.append(base[offset: offset + nbytes])
        return pickle.loads(payload, buffers=buffers)

    def take_released(self) -> dict:
        """{worker_id: [names]} released since the last call."""
        out = {}
        while True:
            try:
                worker_id, name = self.released.popleft()
            except IndexError:
                return out
            out.setdefault(worker_id, []).append(name)

    def close(self) -> None:
        self._maps.clear()
        self.released.clear()


def _attach(name: str, size: int) -> mmap.mmap:
    fd = _posixshmem.shm_open(name, os.O_RDWR, 0o600)
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def unlink_prefix(prefix: str) -> None:
    """Unlinks every segment whose name starts with ``prefix`` (leftovers of dead workers)."""
    if _posixshmem is None or not os.path.isdir(_SHM_DIR):
        return
    try:
        names = os.listdir(_SHM_DIR)
    except OSError:
        return
    for entry in names:
        if entry.startswith(prefix):
            _unlink("/" + entry)
