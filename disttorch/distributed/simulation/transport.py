"""``SimulatedTransport``: a transport wrapper that shapes links, drops or corrupts messages, and
checks integrity. Installed around every process group's transport by
``process_group.set_transport_wrapper`` when simulation is on.

Shaping happens at both ends. The sender books each message on its ``LinkModel`` (its NIC) and
hands it to ZeroMQ at once, with its arrival time in the trailer; the receiver holds it until that
time before the mailbox may see it. So the real transfer over loopback overlaps the simulated
one (a message takes the longer of the two, not their sum), and the sender is never blocked,
as with a real NIC's send queue. A receiver never holds a message longer than the sender's flight
time after it came in, whatever the two clocks say.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time

import numpy as np

from ...profiler import trace
from ..errors import DistBackendError
from ..transport.base import Message, Sink, Transport
from ..wire import Kind, Op
from . import trailer as tr
from .faults import FaultInjector, _say
from .link import LinkModel

_SUB_MS = 1e-3


class MessageIntegrityError(DistBackendError):
    """A message's data does not match the checksum its sender computed (corrupted in transit)."""


class SimulatedTransport(Transport):
    """Wraps ``inner`` (see the module docstring); the rest of the group sees a normal transport."""

    def __init__(self, inner: Transport, link: LinkModel | None, faults: FaultInjector | None, integrity: bool):
        self.inner, self.link, self.faults, self.integrity = inner, link, faults, integrity
        self._held: list = []   # (due_ns, order, Message): arrived, but still "on the wire"
        self._order = itertools.count()
        self._tls = threading.local()

    # -- what the group reads off its transport ---------------------------------------------------
    @property
    def rank(self) -> int:
        return self.inner.rank

    @property
    def world_size(self) -> int:
        return self.inner.world_size

    @property
    def stats(self) -> dict:
        return self.inner.stats

    @property
    def send_timeout_s(self) -> float:
        return getattr(self.inner, "send_timeout_s", 30.0)

    @send_timeout_s.setter
    def send_timeout_s(self, value: float) -> None:
        self.inner.send_timeout_s = value

    def _describe(self, group_rank: int) -> str:
        gid = getattr(self.inner, "group_id", 0)
        return f"rank {group_rank}" if not gid else f"rank {group_rank} of group {gid}"

    # -- sending ---------------------------------------------------------------------------------
    def send(self, dst: int, header: bytes, payload: np.ndarray | None, copy: bool = False) -> None:
        nbytes = 0 if payload is None else payload.nbytes
        # the checksum covers the data as this rank meant to send it
        crc = tr.checksum(header, payload) if self.integrity else None
        faults = self.faults
        if faults is not None and faults.message_faults:
            armed = faults.take_message_fault(nbytes > 0)
            if armed is not None:
                if armed[0].kind == "drop":
                    self._report(armed, dst, header, nbytes, "dropped")
                    return
                payload, copy = self._corrupted(armed, dst, header, payload), False
        self._tls.sent = getattr(self._tls, "sent", 0) + nbytes
        arrival = flight = None
        if self.link is not None:
            now = time.time_ns()
            t = self.link.schedule(now, len(header) + nbytes, (getattr(self.inner, "group_id", 0), dst))
            arrival, flight = t.arrival_ns, t.arrival_ns - now
            if trace.ACTIVE and t.tx_end_ns > t.tx_start_ns:
                trace.complete(f"to {self._describe(dst)}", "network", t.tx_start_ns, t.tx_end_ns,
                               track="NIC (simulated)", bytes=len(header) + nbytes)
        if crc is not None or arrival is not None:
            header = tr.attach(header, crc=crc, arrival_ns=arrival, flight_ns=flight or 0)
        self.inner.send(dst, header, payload, copy)

    def _report(self, armed, dst: int, header: bytes, nbytes: int, done: str, extra: str = "") -> None:
        fault, n = armed
        h = tr.decode(header, 1 << 62)
        trace.instant(f"fault: {fault.kind}", "fault", collective=n, to=dst)
        _say(f"rank {self.faults.rank} {done} {extra}its message to {self._describe(dst)} ({_label(h)}, "
             f"{nbytes} bytes) at collective {n}")

    def _corrupted(self, armed, dst: int, header: bytes, payload: np.ndarray) -> np.ndarray:
        """A copy of ``payload`` with one byte flipped (the sender's own buffer stays intact)."""
        data = np.array(payload.reshape(-1).view(np.uint8), copy=True)
        at = self.faults.rng.randrange(data.nbytes)
        data[at] ^= 0xFF
        self._report(armed, dst, header, data.nbytes, "corrupted", f"byte {at} of ")
        return data

    def sends_done(self) -> bool:
        return self.inner.sends_done()

    def peer_problem(self, peer: int) -> str | None:
        return self.inner.peer_problem(peer)

    def close(self) -> None:
        self._held.clear()
        self.inner.close()

    # -- receiving -------------------------------------------------------------------------------
    def recv(self, timeout_ms: int, sink: Sink) -> Message | None:
        give_up = time.monotonic() + max(0, timeout_ms) / 1000
        while True:
            held = self._held
            now_ns = time.time_ns()
            if held and held[0][0] <= now_ns:
                return heapq.heappop(held)[2]
            left_s = give_up - time.monotonic()
            wait_s = max(0.0, left_s)
            if held:
                wait_s = min(wait_s, (held[0][0] - now_ns) / 1e9)
            got = self._receive(int(wait_s * 1000) if wait_s >= _SUB_MS else 0, sink)
            if got is None:
                if time.monotonic() >= give_up and not (held and held[0][0] <= time.time_ns()):
                    return None
                if 0 < wait_s < _SUB_MS:  # finer than the socket's millisecond timeout
                    time.sleep(wait_s)
                continue
            due, msg = got
            if due <= time.time_ns():
                return msg
            heapq.heappush(held, (due, next(self._order), msg))

    def _receive(self, timeout_ms: int, sink: Sink) -> tuple[int, Message] | None:
        """One message from the inner transport, trailer checked and removed: (due time, message)."""
        dest = []

        def into(h):
            out = sink(tr.detach(h)[0])
            dest.append(out)
            return out

        msg = self.inner.recv(timeout_ms, into)
        if msg is None:
            return None
        came_in = time.time_ns()
        h, t = tr.detach(msg.header)
        if t is None:
            return 0, msg
        if t.flags & tr.HAS_CRC:
            data = msg.payload if msg.payload is not None else (dest[-1] if dest else None)
            got = tr.checksum(tr.header_bytes(h), data)
            if got != t.crc:
                raise MessageIntegrityError(
                    f"integrity check failed on {self._describe(self.inner.rank)}: the message from "
                    f"{self._describe(h.src)} ({_label(h)}, {h.nbytes} bytes) has CRC32 {got:#010x} but its "
                    f"sender computed {t.crc:#010x}: the data was corrupted in transit")
        due = min(t.arrival_ns, came_in + t.flight_ns) if t.flags & tr.TIMED else 0
        return due, Message(h, msg.payload)

    def sent_bytes(self) -> int:
        """Payload bytes this thread has sent through this transport (the trace's per-collective count)."""
        return getattr(self._tls, "sent", 0)


def _label(h) -> str:
    try:
        op = Op(h.op).label
    except ValueError:
        op = f"op {h.op}"
    if h.kind == Kind.P2P:
        return f"send/recv tag {h.tag}"
    if h.kind == Kind.ABORT:
        return "abort notice"
    return f"collective #{h.seq} {op}"
