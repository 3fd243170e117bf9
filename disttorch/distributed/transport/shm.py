"""Shared memory for the ranks of one host: a segment, its layout, and a spin-yield-sleep barrier.

Layout (``n`` local ranks)::

    [ctrl rank 0 | ctrl rank 1 | ... ]  CTRL_BYTES each:
        0    arrive counter (int64, alone on its cache line: the barrier spins on it)
        64   abort flag (int64); 72: the generation this rank sleeps on (0: awake)
        128  fingerprints (2 x 16 int64: by sequence-number parity, so a rank already publishing
             collective s+1 never overwrites what a slower rank still compares for s)
        384  abort reason (length, UTF-8)
    [slots rank 0: parity 0 | parity 1][slots rank 1: ...] ...   slot_bytes each, page aligned

A rank writes only its own control block and its own slots; everybody reads everything. The
barrier is a generation counter per rank: arriving means storing the new generation, and a rank
passes when every counter has reached it. Stores of a rank become visible to the others in
program order on x86-64 (TSO) — the data written before the counter store is there when the
counter is seen — which is why the shared-memory path is enabled on x86-64 only. A waiter spins
a few microseconds, yields the core briefly, then sleeps on its doorbell (a FIFO); an arriving rank
rings the doorbells of ranks that announced they sleep on its generation. (The announce-then-look
and store-then-look pairs are not fenced, so a wake-up can be missed; the sleep is bounded, which
bounds what that costs.)

The segment is unlinked as soon as every rank has attached it, so nothing is left in /dev/shm
even if every process is SIGKILLed afterwards.
"""
from __future__ import annotations

import os
import platform
import select
import sys
import time
import mmap  # noqa: I001

import numpy as np

from disttorch_launcher import settings

CTRL_BYTES = 1024
FP_OFFSET = 128
FP_WORDS = 16
REASON_OFFSET = 384
REASON_BYTES = CTRL_BYTES - REASON_OFFSET - 8
ABORT_OFFSET = 64
SLEEP_OFFSET = 72
PAGE = 4096
CHECK_INTERVAL_S = 0.05
#: Measured (2 ranks, 4 KiB all-reduce): spinning longer than a few microseconds before yielding
#: costs 70 -> 480 us whenever the scheduler puts both ranks on one core (it does, now and then);
#: sched_yield returns at once when nobody else wants the core, so yield-polling is nearly as quick.
SPIN_S = 5e-6
#: After spinning, a waiter yields the core this long, then sleeps on its doorbell (a FIFO) until
#: the rank it waits for arrives and rings it. Sleeping and being woken is what keeps the barrier
#: quick when ranks outnumber cores or other jobs load the machine: the scheduler runs a woken
#: sleeper at once, while a task that merely yields waits for its next turn.
YIELD_S = settings.get("DISTTORCH_SHM_YIELD_S")  # the variable is for experiments
#: a doorbell wait never lasts longer than this, so a lost wake-up costs at most this much
DOORBELL_TIMEOUT_S = 0.002


def supported() -> bool:
    """Shared-memory collectives rely on x86-64's store ordering (see the module docstring) and /dev/shm."""
    return (platform.machine().lower() in ("x86_64", "amd64") and sys.platform.startswith("linux")
            and os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK))


SHM_DIR = "/dev/shm"


def segment_size(n: int, slot_bytes: int) -> int:
    ctrl = -(-n * CTRL_BYTES // PAGE) * PAGE
    return ctrl + n * 2 * slot_bytes


class ShmSegment:
    """A file in /dev/shm (mode 0600: only this user can map it), mapped into memory.

    Plain files instead of ``multiprocessing.shared_memory``: its resource tracker (Python < 3.13)
    registers attaching processes too and unlinks segments other ranks still use, or complains
    when several ranks of one spawn tree unregister the same name. Here the creator unlinks the
    file once every rank has mapped it, and the memory lives exactly as long as the mappings.
    """

    def __init__(self, name: str, size: int | None = None, create: bool = False):
        self.name = name
        self.path = os.path.join(SHM_DIR, name)
        if create:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, size)  # zero-filled
                # Reserve the pages now: a tmpfs that is too small (Docker's /dev/shm is 64 MiB)
                # then fails here with ENOSPC, instead of killing the process with SIGBUS when a
                # page past the limit is first touched.
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, size)
            except OSError:
                os.close(fd)
                os.unlink(self.path)
                raise
        else:
            fd = os.open(self.path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.buf = memoryview(self._map)
        self._unlinked = False

    def unlink(self) -> None:
        if not self._unlinked:
            self._unlinked = True
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        try:
            self.buf.release()
            self._map.close()
        except (BufferError, ValueError):  # an array still views the segment; it goes with the process
            pass


class Doorbell:
    """One FIFO per local rank: a sleeping waiter blocks reading its own, peers write a byte to wake it.

    Every rank opens its FIFO read-write (so opening never blocks and writers always find a
    reader) before the others open it write-only; once all are open the paths are unlinked.
    """

    def __init__(self, path: str):
        self.path = path
        os.mkfifo(path, 0o600)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.peers: dict[int, int] = {}
        # poll, not select: with 128 local ranks a process holds ~900 descriptors before this
        # one is opened, and select() cannot watch a descriptor numbered 1024 or above
        self._poller = select.poll()
        self._poller.register(self.fd, select.POLLIN)

    def open_peers(self, paths: dict[int, str]) -> None:
        for k, path in paths.items():
            self.peers[k] = os.open(path, os.O_WRONLY | os.O_NONBLOCK)

    def unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def ring(self, k: int) -> None:
        try:
            os.write(self.peers[k], b"!")
        except BlockingIOError:  # the pipe is full of wake-ups already
            pass
        except OSError:  # the peer is gone (EPIPE): the liveness check will say so
            pass

    def wait(self, timeout: float) -> None:
        if self._poller.poll(max(0, int(timeout * 1000)) or 1):
            try:
                os.read(self.fd, 4096)
            except BlockingIOError:
                pass

    def close(self) -> None:
        for fd in [self.fd, *self.peers.values()]:
            try:
                os.close(fd)
            except OSError:
                pass
        self.peers = {}
        self.unlink()


class ShmComm:
    """The shared-memory view of ``n`` local ranks: slots, fingerprints, barrier, abort flags."""

    def __init__(self, segment: ShmSegment, n: int, me: int, slot_bytes: int, oversubscribed: bool,
                 doorbell: Doorbell | None = None):
        self.segment, self.n, self.me, self.slot_bytes = segment, n, me, slot_bytes
        buf = segment.buf
        raw = np.frombuffer(buf, np.uint8)
        self.arrive = np.ndarray((n,), np.int64, buf, 0, (CTRL_BYTES,))
        self.abort_flags = np.ndarray((n,), np.int64, buf, ABORT_OFFSET, (CTRL_BYTES,))
        self.sleeping = np.ndarray((n,), np.int64, buf, SLEEP_OFFSET, (CTRL_BYTES,))
        self.doorbell = doorbell
        self.fingerprints = np.ndarray((n, 2, FP_WORDS), np.int64, buf, FP_OFFSET, (CTRL_BYTES, FP_WORDS * 8, 8))
        ctrl = -(-n * CTRL_BYTES // PAGE) * PAGE
        self._slots = [[raw[ctrl + (k * 2 + p) * slot_bytes: ctrl + (k * 2 + p + 1) * slot_bytes] for p in (0, 1)]
                       for k in range(n)]
        self._raw = raw
        self.gen = int(self.arrive[me])
        self._others = [k for k in range(n) if k != me]
        self.parity = 0
        self.oversubscribed = oversubscribed
        # Spinning pays only briefly, and only when every rank has a core; otherwise yield at once so
        # the rank we wait for can run.
        self.spin_s = 0.0 if oversubscribed else SPIN_S
        self.stall_hook = None  # set by the process group: stall_hook(laggards, deadline_passed)

    def slot(self, k: int, parity: int) -> np.ndarray:
        return self._slots[k][parity]

    def next_parity(self) -> int:
        p = self.parity
        self.parity ^= 1
        return p

    # -- fingerprints -------------------------------------------------------------------------
    def publish_fingerprint(self, seq: int, words: list[int]) -> None:
        row = self.fingerprints[self.me, seq & 1]
        row[:] = 0
        row[: len(words)] = words

    def fingerprints_of(self, seq: int) -> np.ndarray:
        """Every rank's published fingerprint for collective ``seq`` (a view; valid from the
        collective's first barrier until this rank arrives at the next one)."""
        return self.fingerprints[:, seq & 1]

    # -- barrier ------------------------------------------------------------------------------
    def barrier(self, deadline: float) -> None:
        self.gen += 1
        gen = self.gen
        arrive = self.arrive
        arrive[self.me] = gen
        if self.doorbell is not None:
            sleeping = self.sleeping
            for k in self._others:
                if sleeping[k] == gen:  # k sleeps until this generation is complete: wake it
                    self.doorbell.ring(k)
        for k in self._others:
            if arrive[k] < gen:
                self._wait(k, gen, deadline)

    def _wait(self, k: int, gen: int, deadline: float) -> None:
        """Spin briefly, yield the core a little, then sleep on the doorbell until rank ``k`` arrives."""
        arrive = self.arrive
        start = time.perf_counter()
        spin_until = start + self.spin_s
        while time.perf_counter() < spin_until:
            if arrive[k] >= gen:
                return
        yield_until = start + YIELD_S
        while time.perf_counter() < yield_until:
            os.sched_yield()  # a rank sharing this core may be the one we wait for
            if arrive[k] >= gen:
                return
        next_check = time.monotonic() + CHECK_INTERVAL_S
        bell, sleeping, me = self.doorbell, self.sleeping, self.me
        nap = 20e-6
        try:
            while True:
                if bell is not None:
                    sleeping[me] = gen  # announce first, then look: a peer arriving now sees it
                if arrive[k] >= gen:
                    return
                now = time.monotonic()
                if now >= next_check:
                    self._check(gen, now >= deadline)
                    next_check = now + CHECK_INTERVAL_S
                if bell is not None:
                    bell.wait(DOORBELL_TIMEOUT_S)
                else:
                    time.sleep(nap)
                    nap = min(nap * 2, DOORBELL_TIMEOUT_S)
        finally:
            if bell is not None:
                sleeping[me] = 0

    def _check(self, gen: int, deadline_passed: bool) -> None:
        laggards = [k for k in range(self.n) if self.arrive[k] < gen]
        if self.stall_hook is not None:
            self.stall_hook(laggards, deadline_passed)

    # -- aborts -------------------------------------------------------------------------------
    def set_abort(self, reason: str) -> None:
        data = reason.encode("utf-8", "replace")[:REASON_BYTES]
        base = self.me * CTRL_BYTES + REASON_OFFSET
        self._raw[base: base + 8].view(np.int64)[0] = len(data)
        self._raw[base + 8: base + 8 + len(data)] = np.frombuffer(data, np.uint8)
        self.abort_flags[self.me] = 1

    def aborted_by(self) -> tuple[int, str] | None:
        """(local rank, reason) of the first rank that aborted, or None."""
        flags = self.abort_flags
        for k in range(self.n):
            if k != self.me and flags[k]:
                base = k * CTRL_BYTES + REASON_OFFSET
                length = int(self._raw[base: base + 8].view(np.int64)[0])
                length = max(0, min(length, REASON_BYTES))
                return k, bytes(self._raw[base + 8: base + 8 + length]).decode("utf-8", "replace")
        return None

    def close(self) -> None:
        if self.doorbell is not None:
            self.doorbell.close()
        self.arrive = self.abort_flags = self.fingerprints = self.sleeping = None
        self._slots = self._raw = None
        self.segment.close()
