"""ZeroMQ transport: one PULL socket in, one PUSH socket per peer out.

- Every rank binds a PULL socket (``tcp://`` on the chosen interface, plus ``ipc://`` in the user's
  private runtime directory for same-host peers) as a PLAIN/CURVE server: peers without the job
  secret are refused during the handshake by the process's ZAP handler.
- Every rank connects a PUSH socket to each peer, so a message's destination is a socket, sends
  never block (no high-water mark: memory is bounded by the algorithms, which never have more than
  one tensor's worth in flight), and ZMTP heartbeats on that connection tell a dead or stopped
  peer from a slow one without any Python on the other side (tcp only: a same-host peer on ipc
  is watched through /proc by the process group).
- Payloads above ``ZERO_COPY_MIN`` bytes are sent zero-copy with a tracker (``sends_done``); smaller
  ones are copied (cheaper than tracking). Incoming payloads go straight into the waiting array
  (``recv_into``) when the mailbox has one, else stay in libzmq's buffer (no copy) until used.
- ``MAXMSGSIZE`` makes libzmq itself drop a connection that sends a frame larger than the job's
  chunk size, so a peer cannot make a rank allocate unbounded memory; headers are validated
  (``wire.decode``), and a message from another job, group or an impossible rank is dropped.
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import threading
import time

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from .._zmq_sockets import close_monitored
from ..errors import DistNetworkError
from ..wire import MAX_HEADER_SIZE, WireError, decode
from .base import Message, Sink, Transport

log = logging.getLogger("disttorch.distributed")

ZERO_COPY_MIN = 256 * 1024
#: On close, libzmq keeps trying this long to deliver what is still queued: a rank that leaves right
#: after its last send (the peer may not even have finished the handshake) must not lose it.
CLOSE_LINGER_MS = 1000
_MONITOR_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class _Peer:
    __slots__ = ("sock", "monitor", "endpoint", "connected", "ever", "since", "auth_failed")

    def __init__(self, sock, monitor, endpoint):
        self.sock, self.monitor, self.endpoint = sock, monitor, endpoint
        self.connected = self.ever = self.auth_failed = False
        self.since = time.monotonic()


class ZmqTransport(Transport):
    """Framed messages between the ranks of one group over ZeroMQ (see the module docstring)."""

    def __init__(self, context: zmq.Context, credentials, rank: int, world_size: int, *, job_id: int,
                 group_id: int, bind_host: str, ipc_dir: str | None, max_payload: int,
                 heartbeat_s: float = 1.0, heartbeat_timeout_s: float = 5.0):
        self.context, self.credentials = context, credentials
        self.rank, self.world_size = rank, world_size
        self.job_id, self.group_id = job_id, group_id
        self.max_payload = max_payload
        self.heartbeat_ms = max(100, int(heartbeat_s * 1000))
        self.heartbeat_timeout_ms = max(self.heartbeat_ms, int(heartbeat_timeout_s * 1000))
        self.stats = {"dropped": 0, "sent": 0, "received": 0}
        self.send_timeout_s = 30.0  # the process group sets its timeout here
        self._trackers: list = []
        self._peers: dict[int, _Peer] = {}
        # sends come from the caller's thread (point to point) and the group's worker thread
        # (async collectives): a ZeroMQ socket must not be used by two threads at once
        self._send_lock = threading.Lock()
        self._monitor_lock = threading.Lock()
        pull = context.socket(zmq.PULL)
        pull.linger = 0
        pull.rcvhwm = 0
        pull.setsockopt(zmq.MAXMSGSIZE, max(max_payload, MAX_HEADER_SIZE))
        pull.setsockopt(zmq.HANDSHAKE_IVL, self.heartbeat_timeout_ms)
        credentials.server(pull)
        try:
            pull.bind(f"tcp://{_bracket(bind_host)}:*")
        except zmq.ZMQError as e:
            pull.close(0)
            raise DistNetworkError(f"rank {rank} could not bind a data socket on {bind_host}: {e}") from None
        self.tcp_endpoint = pull.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.ipc_endpoint = None
        if ipc_dir is not None:
            path = os.path.join(ipc_dir, f"{os.getpid()}-{secrets.token_hex(4)}.sock")
            pull.bind(f"ipc://{path}")
            self.ipc_endpoint = f"ipc://{path}"
        self.pull = pull
        self._rcvtimeo = -1

    # -- setup ---------------------------------------------------------------------------------
    def connect(self, endpoints: dict[int, str]) -> None:
        """Connects a PUSH socket to every peer's endpoint (``{rank: endpoint}``, self excluded)."""
        try:
            self._connect(endpoints)
        except zmq.ZMQError as e:
            if e.errno != errno.EMFILE:
                raise
            from .._runtime import limits_report

            raise DistNetworkError(
                f"rank {self.rank} ran out of sockets connecting to {len(endpoints)} peers ({e}): "
                f"{limits_report()}. Raise the one that is reached") from None

    def _connect(self, endpoints: dict[int, str]) -> None:
        for peer, endpoint in endpoints.items():
            if peer == self.rank:
                continue
            sock = self.context.socket(zmq.PUSH)
            sock.linger = 0
            sock.sndhwm = 0
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            remote = not endpoint.startswith("ipc://")
            if remote:
                # Heartbeats and the connection monitor tell a dead or stopped remote host from a
                # slow one. A same-host peer (ipc) is watched through /proc instead (its secret
                # was checked by the store already), and for it they would only cost: 128 ranks
                # on one host are 16,256 connections pinging every second plus two more sockets
                # per connection, and on a loaded machine a starved peer misses its pong and
                # looks lost while it is merely slow.
                sock.setsockopt(zmq.HEARTBEAT_IVL, self.heartbeat_ms)
                sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, self.heartbeat_timeout_ms)
                sock.setsockopt(zmq.HEARTBEAT_TTL, self.heartbeat_timeout_ms)
            sock.setsockopt(zmq.HANDSHAKE_IVL, self.heartbeat_timeout_ms)
            self.credentials.client(sock)
            monitor = sock.get_monitor_socket(_MONITOR_EVENTS) if remote else None
            sock.connect(endpoint)
            self._peers[peer] = _Peer(sock, monitor, endpoint)

    # -- sending -------------------------------------------------------------------------------
    def send(self, dst: int, header: bytes, payload: np.ndarray | None, copy: bool = False) -> None:
        sock = self._peers[dst].sock
        with self._send_lock:
            self.stats["sent"] += 1
            self._send_first(dst, sock, header)
            if payload is None or payload.nbytes == 0:
                sock.send(b"")
                return
            data = payload.reshape(-1).view(np.uint8)
            if copy or data.nbytes < ZERO_COPY_MIN:
                sock.send(data, copy=True)
            else:
                self._trackers.append(sock.send(data, copy=False, track=True))

    def _send_first(self, dst: int, sock, header: bytes) -> None:
        """Queues the first frame without blocking forever: with no high-water mark a send only
        waits when the connection has no pipe at all (the peer refused our handshake)."""
        try:
            sock.send(header, zmq.SNDMORE | zmq.NOBLOCK)
            return
        except zmq.Again:
            pass
        deadline = time.monotonic() + self.send_timeout_s
        while True:
            sock.poll(100, zmq.POLLOUT)
            try:
                sock.send(header, zmq.SNDMORE | zmq.NOBLOCK)  # once the first frame is in, the rest follow
                return
            except zmq.Again:
                if time.monotonic() >= deadline:
                    problem = self.peer_problem(dst, grace_s=0) or "its connection is not usable"
                    raise DistNetworkError(f"rank {self.rank} could not queue a message to peer {dst}: "
                                           f"{problem}") from None

    def sends_done(self) -> bool:
        with self._send_lock:
            trackers = self._trackers
            if trackers and trackers[-1].done:
                # libzmq releases a connection's messages in order, but trackers of different
                # peers finish independently: check them all once the newest is done
                self._trackers = trackers = [t for t in trackers if not t.done]
            return not trackers

    # -- receiving -----------------------------------------------------------------------------
    def recv(self, timeout_ms: int, sink: Sink) -> Message | None:
        pull = self.pull
        # A blocking recv with RCVTIMEO wakes as fast as zmq_poll without building a Poller per
        # call (at ~50 us per message on loopback, every few microseconds count).
        try:
            if timeout_ms <= 0:
                head = pull.recv(zmq.NOBLOCK)
            else:
                if self._rcvtimeo != timeout_ms:
                    pull.setsockopt(zmq.RCVTIMEO, timeout_ms)
                    self._rcvtimeo = timeout_ms
                head = pull.recv()
        except zmq.Again:
            return None
        more = pull.getsockopt(zmq.RCVMORE)
        try:
            h = decode(head, self.max_payload)
            if h.job_id != self.job_id:
                raise WireError(f"foreign job id {h.job_id:#x} (this job is {self.job_id:#x})")
            if h.group != self.group_id:
                raise WireError(f"group {h.group}, this socket serves group {self.group_id}")
            if not 0 <= h.src < self.world_size or h.src == self.rank:
                raise WireError(f"impossible source rank {h.src} for world size {self.world_size}")
            if not more:
                raise WireError("message has no payload frame")
        except WireError as e:
            self._drop(str(e), more, head)
            return None
        dest = sink(h)
        if dest is not None and dest.nbytes == h.nbytes:
            n = pull.recv_into(dest.reshape(-1).view(np.uint8)) if h.nbytes else pull.recv_into(bytearray())
            payload = None
        else:
            payload = pull.recv(copy=h.nbytes < ZERO_COPY_MIN)
            n = len(payload) if isinstance(payload, bytes) else len(payload.buffer)
        more = pull.getsockopt(zmq.RCVMORE)
        if n != h.nbytes or more:
            why = "more than two frames" if more else f"payload of {n} bytes where the header says {h.nbytes}"
            self._drop(why, more, head)
            return None
        self.stats["received"] += 1
        return Message(h, payload)

    def _drop(self, reason: str, more: bool, head: bytes) -> None:
        while more:  # discard the rest of the multipart message
            self.pull.recv(copy=False)
            more = self.pull.getsockopt(zmq.RCVMORE)
        self.stats["dropped"] += 1
        n = self.stats["dropped"]
        if n <= 10 or n % 1000 == 0:
            log.warning("disttorch: rank %d dropped a malformed or foreign message (%s; %d dropped so far; "
                        "first bytes %r)", self.rank, reason, n, bytes(head[:16]))

    # -- health --------------------------------------------------------------------------------
    def _poll_monitors(self) -> None:
        with self._monitor_lock:
            self._poll_monitors_locked()

    def _poll_monitors_locked(self) -> None:
        now = time.monotonic()
        for p in self._peers.values():
            while p.monitor is not None and p.monitor.poll(0):
                try:
                    event = recv_monitor_message(p.monitor, zmq.NOBLOCK)["event"]
                except zmq.Again:
                    break
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    p.connected = p.ever = True
                    p.auth_failed = False
                elif event == zmq.EVENT_DISCONNECTED:
                    if p.connected:
                        p.since = now
                    p.connected = False
                else:
                    p.auth_failed = True

    def peer_problem(self, peer: int, grace_s: float = 1.0) -> str | None:
        self._poll_monitors()
        p = self._peers.get(peer)
        if p is None or p.connected or p.monitor is None:  # no monitor: a same-host peer (see connect)
            return None
        quiet = time.monotonic() - p.since
        if p.ever and quiet > grace_s:
            return f"lost its connection {quiet:.1f} s ago (no heartbeat answer, or the process ended)"
        if not p.ever and quiet > self.heartbeat_timeout_ms / 1000 + grace_s:
            why = " (it rejected our credentials)" if p.auth_failed else ""
            return f"never accepted a connection at {p.endpoint}{why}"
        return None

    def close(self) -> None:
        with self._send_lock, self._monitor_lock:
            self._close()

    def _close(self) -> None:
        for p in self._peers.values():
            close_monitored(p.sock, p.monitor, CLOSE_LINGER_MS)
        self._peers.clear()
        self._trackers.clear()
        self.pull.close(0)
        if self.ipc_endpoint is not None:  # libzmq removes it too, but not always before exit
            try:
                os.unlink(self.ipc_endpoint[len("ipc://"):])
            except OSError:
                pass


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
