"""Matches incoming messages to the operations waiting for them, and keeps time while they wait.

Messages can arrive before anyone wants them (a faster peer is already a step or a collective
ahead, a point-to-point message waits for its ``recv``): they are stashed under their key, up to a
memory limit. A wanted message is received straight into its destination array (``sink``).

Progress is leader/follower: whichever thread waits takes the receive lock and pumps the socket
for everyone (a DDP communication thread in an all-reduce also delivers the main thread's irecv);
the others sleep on a condition until their key shows up. While waiting, a watchdog callback runs
every ``CHECK_INTERVAL_S`` (dead peers are reported within seconds), and the deadline raises
``DistTimeoutError`` naming the rank waited for.

A peer that leaves the group cleanly (``destroy_process_group`` or the end of its script) sends a
GOODBYE carrying the last collective it finished; it travels on the same connection as, and after,
everything else that peer sent us, so once it is here nothing more is coming from that peer.
``departed`` records it; the watchdog decides whether the wait still needs that peer.

Before a collective the group announces its fingerprint (``begin``); any message of that sequence
number whose header disagrees (another collective, shape, dtype, root or reduce op) is recorded as
a mismatch and raised as ``CollectiveMismatchError`` naming both sides.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import CollectiveMismatchError, DistBackendError, ProcessGroupAbortedError
from .transport.base import Message, Transport
from .wire import Kind, Op, dtype_of

log = logging.getLogger("disttorch.distributed")

CHECK_INTERVAL_S = 0.2
PUMP_SLICE_MS = 50


@dataclass(frozen=True)
class Fingerprint:
    """What every rank of a collective must agree on."""

    op: int
    rop: int          # ReduceOp value, 0 when the op does not reduce
    dtype: int        # wire dtype code
    root: int         # group rank of the root, -1 when none
    shape: tuple | None  # None: shapes may differ per peer (all_to_all)

    def describe(self) -> str:
        from .reduce_op import ReduceOp

        parts = []
        if self.shape is not None:
            parts.append(f"shape={tuple(self.shape)}")
        parts.append(f"dtype={dtype_of(self.dtype)}")
        if self.op in (Op.ALL_REDUCE, Op.ALL_REDUCE_DIRECT, Op.REDUCE, Op.REDUCE_SCATTER):
            parts.append(f"op={ReduceOp(self.rop).name}")
        if self.root >= 0:
            parts.append(f"root={self.root}")
        return f"{Op(self.op).label}({', '.join(parts)})"

    @staticmethod
    def of_header(h) -> "Fingerprint":
        return Fingerprint(h.op, h.rop, h.dtype, h.root, tuple(h.shape))

    def matches(self, h) -> bool:
        return (h.op == self.op and h.rop == self.rop and h.dtype == self.dtype and h.root == self.root
                and (self.shape is None or tuple(h.shape) == self.shape))


def key_of(h) -> tuple:
    if h.kind == Kind.DATA:
        return (Kind.DATA, h.src, h.seq, h.phase, h.step, h.tag)
    if h.kind == Kind.P2P:
        return (Kind.P2P, h.src, h.tag, h.seq, h.step)
    return (h.kind, h.src, h.seq)


class Watchdog:
    """What the mailbox asks while it waits; the process group implements it."""

    def check(self, waiting_for: int | None, departed: dict[int, int] | None = None) -> None:
        """Raises if a peer this operation needs is dead or unreachable. ``departed``: the peers
        whose GOODBYE had arrived (group rank -> last collective it finished) before the mailbox
        last looked for the awaited message."""

    def timeout_error(self, waiting_for: int | None) -> Exception:
        return DistBackendError("timed out")

    def describe_rank(self, group_rank: int) -> str:
        return f"rank {group_rank}"


class Mailbox:
    """The receive side of one process group (see the module docstring)."""

    def __init__(self, transport: Transport, watchdog: Watchdog, max_stash_bytes: int, name: str = ""):
        self.transport, self.name = transport, name
        self.watchdog = watchdog
        self.max_stash_bytes = max_stash_bytes
        self._cv = threading.Condition(threading.Lock())
        self._recv_lock = threading.Lock()
        self._stash: dict[tuple, Message] = {}
        self._stash_bytes = 0
        self._wanted: dict[tuple, np.ndarray] = {}
        self._expect: tuple[int, Fingerprint] | None = None
        self._min_seq = 0
        self.mismatch: str | None = None
        self.abort: tuple[int, str, str] | None = None  # (group rank, error class, reason)
        self.failure: Exception | None = None
        self.seen_seq: dict[int, int] = {}  # group rank -> highest collective it sent us data of
        self.departed: dict[int, int] = {}  # group rank -> last collective it finished, from its GOODBYE

    # -- the collective's frame --------------------------------------------------------------
    def begin(self, seq: int, fp: Fingerprint, my_rank: int) -> None:
        """Announces the collective ``seq`` (checks what already arrived for it)."""
        with self._cv:
            self._expect = (seq, fp, my_rank)
            self._min_seq = seq
            for key in [k for k in self._stash if k[0] == Kind.DATA and k[2] < seq]:
                self._unstash(key)
                log.warning("disttorch: dropped a stale message for collective #%d", key[2])
            for key, msg in self._stash.items():
                if key[0] == Kind.DATA and key[2] == seq:
                    self._check_fingerprint(msg.header)

    def end(self) -> None:
        with self._cv:
            self._expect = None

    def _check_fingerprint(self, h) -> None:
        seq, fp, me = self._expect
        if self.mismatch is None and not fp.matches(h):
            d = self.watchdog.describe_rank
            self.mismatch = (f"collective mismatch on group {self.name} at collective #{seq}: {d(me)} called "
                             f"{fp.describe()} but {d(h.src)} called {Fingerprint.of_header(h).describe()}")

    # -- taking messages -----------------------------------------------------------------------
    def take(self, key: tuple, deadline: float, dest: np.ndarray | None = None) -> Message:
        """Waits for the message ``key``; with ``dest`` its payload ends up in ``dest``."""
        with self._cv:
            self._raise_if_failed()
            msg = self._unstash(key)
            if msg is None and dest is not None:
                self._wanted[key] = dest
        if msg is None:
            try:
                msg = self._wait(lambda: key if key in self._stash else None, deadline, key[1])
            finally:
                if dest is not None:
                    with self._cv:
                        self._wanted.pop(key, None)
        if self.mismatch is not None:  # this very message may be the one that disagrees
            raise CollectiveMismatchError(self.mismatch)
        if dest is not None and msg.payload is not None and msg.header.nbytes == dest.nbytes:
            dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(msg.payload, np.uint8)
            msg = Message(msg.header, None)
        return msg

    def take_first(self, keys: list[tuple], deadline: float) -> Message:
        """Waits for whichever of ``keys`` arrives first (recv from any source)."""
        def ready():
            for k in keys:
                if k in self._stash:
                    return k
            return None

        with self._cv:
            k = ready()
            if k is not None:
                return self._unstash(k)
        return self._wait(ready, deadline, None)

    def poll(self, keys: list[tuple]) -> bool:
        """Non-blocking: receives what is there, then says whether all ``keys`` are stashed."""
        self._drain()
        with self._cv:
            return all(k in self._stash for k in keys)

    def _unstash(self, key: tuple) -> Message | None:
        msg = self._stash.pop(key, None)
        if msg is not None and msg.payload is not None:
            self._stash_bytes -= msg.header.nbytes
        return msg

    def _raise_if_failed(self) -> None:
        if self.mismatch is not None:
            raise CollectiveMismatchError(self.mismatch)
        if self.abort is not None:
            src, cls, reason = self.abort
            raise ProcessGroupAbortedError(f"{self.watchdog.describe_rank(src)} aborted the process group: "
                                           f"{reason}")
        if self.failure is not None:
            raise self.failure

    def _wait(self, ready: Callable[[], tuple | None], deadline: float, waiting_for: int | None) -> Message:
        next_check = time.monotonic() + CHECK_INTERVAL_S
        while True:
            with self._cv:
                k = ready()
                if k is not None:
                    return self._unstash(k)
                self._raise_if_failed()
            now = time.monotonic()
            if now >= next_check or now >= deadline:
                # what already arrived counts: a peer may have sent everything and then exited
                self._drain()
                with self._cv:
                    # the goodbyes are copied before looking: a peer's GOODBYE follows all its
                    # messages, so any message of a peer in this copy is already in the stash
                    departed = dict(self.departed)
                    k = ready()
                    if k is not None:
                        return self._unstash(k)
                    self._raise_if_failed()
                if now >= deadline:
                    raise self.watchdog.timeout_error(waiting_for)
                self.watchdog.check(waiting_for, departed)
                next_check = now + CHECK_INTERVAL_S
            slice_ms = max(0, min(PUMP_SLICE_MS, int((min(deadline, next_check) - now) * 1000)))
            if self._recv_lock.acquire(False):
                try:
                    self._pump(slice_ms)
                finally:
                    self._recv_lock.release()
            else:
                with self._cv:
                    if ready() is None:
                        self._cv.wait(slice_ms / 1000 or 0.001)

    def _drain(self) -> None:
        if self._recv_lock.acquire(timeout=0.05):
            try:
                self._pump(0)
            finally:
                self._recv_lock.release()

    def settle(self, timeout_ms: int = 50) -> None:
        """Receives what is in flight, waiting up to ``timeout_ms`` for the first message: called
        before a peer is declared lost, so that a GOODBYE still in the sockets is seen first."""
        if self._recv_lock.acquire(timeout=timeout_ms / 1000):
            try:
                self._pump(timeout_ms)
            finally:
                self._recv_lock.release()

    # -- receiving (holder of the receive lock only) --------------------------------------------
    def _sink(self, h) -> np.ndarray | None:
        with self._cv:
            return self._wanted.get(key_of(h))

    def _pump(self, timeout_ms: int) -> None:
        """Receives one message (waiting up to ``timeout_ms``), then whatever else is already there."""
        t = self.transport
        got = False
        msg = t.recv(timeout_ms, self._sink)
        while msg is not None:
            got = True
            self._dispatch(msg)
            msg = t.recv(0, self._sink)
        if got:
            with self._cv:
                self._cv.notify_all()

    def _dispatch(self, msg: Message) -> None:
        h = msg.header
        with self._cv:
            if h.kind == Kind.ABORT:
                if self.abort is None:
                    reason = bytes(msg.payload or b"")[:4096].decode("utf-8", "replace")
                    cls, _, text = reason.partition("\0")
                    self.abort = (h.src, cls, text)
                return
            if h.kind == Kind.GOODBYE:
                self.departed.setdefault(h.src, h.seq)
                return
            if h.kind in (Kind.DATA, Kind.FINGERPRINT) and h.seq < self._min_seq:
                log.warning("disttorch: dropped a stale message for collective #%d from rank %d", h.seq, h.src)
                return
            if h.kind in (Kind.DATA, Kind.FINGERPRINT) and h.seq > self.seen_seq.get(h.src, 0):
                self.seen_seq[h.src] = h.seq
            key = key_of(h)
            if key in self._stash:
                log.warning("disttorch: dropped a duplicate message %s", key)
                return
            self._wanted.pop(key, None)
            if h.kind == Kind.DATA and self._expect is not None and h.seq == self._expect[0]:
                self._check_fingerprint(h)
            self._stash[key] = msg
            if msg.payload is not None:
                self._stash_bytes += h.nbytes
                if self._stash_bytes > self.max_stash_bytes and self.failure is None:
                    self.failure = DistBackendError(
                        f"more than {self.max_stash_bytes} bytes of messages arrived before they were "
                        f"wanted (raise DISTTORCH_MAX_UNEXPECTED_BYTES if a root runs far ahead)")
