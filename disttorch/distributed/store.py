"""The key/value store on the rendezvous endpoint (``MASTER_ADDR:MASTER_PORT``), like torch's TCPStore.

Rank 0 runs ``StoreServer`` (a thread with a ROUTER socket); every rank talks to it through
``TCPStore`` (a DEALER socket). Requests and replies are plain byte frames, never pickles:

    request: [request_id, command, arg...]       reply: [request_id, b"ok" | b"err", value...]

Commands: SET, GET (waits until the key exists), ADD, WAIT, CHECK, DELETE, NUM_KEYS, COMPARE_SET,
JOIN (rendezvous, see ``rendezvous.py``) and JOIN_STATUS. The server socket is a PLAIN/CURVE server
checked by the process's ZAP handler, so only holders of the job secret get an answer. A malformed
request is answered with an error or dropped; it never stops the server thread.
"""
from __future__ import annotations

import datetime
import errno
import json
import logging
import threading
import time
from typing import Callable, Iterable

import zmq
from zmq.utils.monitor import recv_monitor_message

from ._zmq_sockets import close_monitored
from .errors import DistNetworkError, DistStoreError, DistTimeoutError, RendezvousError
from .rendezvous import RendezvousState
from .security import Credentials

log = logging.getLogger("disttorch.distributed")

MAX_STORE_MESSAGE = 256 * 1024 * 1024
MAX_KEY_BYTES = 4096
DEFAULT_TIMEOUT = datetime.timedelta(seconds=300)
#: how long a closing server still tries to deliver the answers it has queued
REPLY_LINGER_MS = 1000

_COMMANDS = {b"SET", b"GET", b"ADD", b"WAIT", b"CHECK", b"DELETE", b"NUM_KEYS", b"COMPARE_SET",
             b"JOIN", b"JOIN_STATUS"}


def seconds(timeout) -> float:
    """Accepts a timedelta or a number of seconds."""
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    value = float(timeout)
    if value <= 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    return value


def _bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"store values must be bytes or str, got {type(value).__name__}")


def _key(key) -> bytes:
    k = _bytes(key)
    if len(k) > MAX_KEY_BYTES:
        raise ValueError(f"store key of {len(k)} bytes exceeds {MAX_KEY_BYTES}")
    return k


class StoreServer:
    """Serves the key/value store and the rendezvous from a background thread of rank 0."""

    def __init__(self, context: zmq.Context, host: str, port: int, credentials: Credentials,
                 world_size: int | None):
        self.host, self.port = host, port
        self._sock = context.socket(zmq.ROUTER)
        self._sock.linger = 0
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_STORE_MESSAGE)
        credentials.server(self._sock)
        bind_host = "0.0.0.0" if host in ("", "*", "0.0.0.0") else _resolve(host)
        try:
            self._sock.bind(f"tcp://{_bracket(bind_host)}:{port}")
        except zmq.ZMQError as e:
            self._sock.close(0)
            if e.errno == errno.EADDRINUSE:
                raise DistNetworkError(
                    f"MASTER_PORT {port} on {host} is already in use (another job or a stale process?); "
                    f"choose a free port (disttorch-run picks one when --master-port is not given)") from None
            raise DistNetworkError(f"rank 0 could not serve the store on {host}:{port}: {e}") from None
        if port == 0:
            self.port = int(self._sock.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])
        self.data: dict[bytes, bytes] = {}
        self.rendezvous = RendezvousState(world_size) if world_size else None
        self._waiters: list[tuple[bytes, bytes, bytes, list[bytes]]] = []  # ident, req_id, cmd, keys
        self._join_waiters: list[tuple[bytes, bytes]] = []
        self._stop = threading.Event()
        self.dropped = 0
        self._thread = threading.Thread(target=self._serve, name="disttorch-store", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)

    # -- the loop -----------------------------------------------------------------------------
    def _serve(self) -> None:
        sock = self._sock
        try:
            while not self._stop.is_set():
                try:
                    if not sock.poll(100):
                        continue
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                except zmq.ZMQError:
                    # Also how the loop ends when a script exits without destroy_process_group:
                    # the interpreter terminates the ZeroMQ context under this daemon thread.
                    break
                try:
                    self._handle(frames)
                except Exception as e:  # never let one request stop the store
                    self.dropped += 1
                    log.warning("disttorch store: dropped a malformed request (%s)", e)
        finally:
            try:
                # answers already queued (a rank's last request before this rank leaves) still go out
                sock.close(REPLY_LINGER_MS)
            except zmq.ZMQError:
                pass

    def _reply(self, ident: bytes, req_id: bytes, ok: bool, *values: bytes) -> None:
        try:
            self._sock.send_multipart([ident, req_id, b"ok" if ok else b"err", *values], zmq.NOBLOCK)
        except zmq.ZMQError:  # the client went away; nothing to do
            pass

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) < 3 or frames[2] not in _COMMANDS or len(frames[1]) > 64:
            raise ValueError(f"{len(frames)} frames, command {frames[2][:16] if len(frames) > 2 else None!r}")
        ident, req_id, cmd, args = frames[0], frames[1], frames[2], frames[3:]
        if any(len(a) > MAX_KEY_BYTES for a in args[:1]) and cmd != b"JOIN":
            return self._reply(ident, req_id, False, b"key too long")
        d = self.data
        if cmd == b"SET" and len(args) == 2:
            d[args[0]] = args[1]
            self._reply(ident, req_id, True)
            self._wake()
        elif cmd == b"GET" and len(args) == 1:
            if args[0] in d:
                self._reply(ident, req_id, True, d[args[0]])
            else:
                self._waiters.append((ident, req_id, cmd, [args[0]]))
        elif cmd == b"ADD" and len(args) == 2:
            value = int(d.get(args[0], b"0")) + int(args[1])
            d[args[0]] = str(value).encode()
            self._reply(ident, req_id, True, d[args[0]])
            self._wake()
        elif cmd == b"WAIT":
            if all(k in d for k in args):
                self._reply(ident, req_id, True)
            else:
                self._waiters.append((ident, req_id, cmd, list(args)))
        elif cmd == b"CHECK":
            self._reply(ident, req_id, True, b"1" if all(k in d for k in args) else b"0")
        elif cmd == b"DELETE" and len(args) == 1:
            self._reply(ident, req_id, True, b"1" if d.pop(args[0], None) is not None else b"0")
        elif cmd == b"NUM_KEYS":
            self._reply(ident, req_id, True, str(len(d)).encode())
        elif cmd == b"COMPARE_SET" and len(args) == 3:
            key, expected, desired = args
            current = d.get(key)
            if (current is None and expected == b"") or current == expected:
                d[key] = desired
                self._wake()
            self._reply(ident, req_id, True, d.get(key, expected))
        elif cmd == b"JOIN" and len(args) == 1:
            self._join(ident, req_id, args[0])
        elif cmd == b"JOIN_STATUS":
            status = self.rendezvous.status() if self.rendezvous else {}
            self._reply(ident, req_id, True, json.dumps(status).encode())
        else:
            raise ValueError(f"bad arguments for {cmd.decode()}: {len(args)} frames")

    def _wake(self) -> None:
        still = []
        for ident, req_id, cmd, keys in self._waiters:
            if all(k in self.data for k in keys):
                self._reply(ident, req_id, True, *([self.data[keys[0]]] if cmd == b"GET" else []))
            else:
                still.append((ident, req_id, cmd, keys))
        self._waiters = still

    def _join(self, ident: bytes, req_id: bytes, payload: bytes) -> None:
        rdzv = self.rendezvous
        if rdzv is None:
            return self._reply(ident, req_id, False, b"this store does not run a rendezvous")
        try:
            info = rdzv.parse(payload)
        except Exception as e:
            return self._reply(ident, req_id, False, f"rendezvous: bad registration: {e}".encode())
        state, value = rdzv.join(info)
        me = (ident, req_id, info["rank"])
        if state == "wait":
            self._join_waiters.append(me)
        elif state == "done":
            table = json.dumps(value).encode()
            self.data[b"rdzv/table"] = table
            for w in self._join_waiters + [me]:
                self._reply(w[0], w[1], True, table)
            self._join_waiters = []
            self._wake()
        else:
            for w in self._join_waiters + [me]:
                self._reply(w[0], w[1], False, value.encode())
                rdzv.told.add(w[2])
            self._join_waiters = []


def _resolve(host: str) -> str:
    """libzmq binds IP addresses, not host names."""
    import socket

    try:
        return socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0]
    except OSError:
        return host


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class Store:
    """torch.distributed.Store: the interface shared by TCPStore and PrefixStore."""

    timeout: datetime.timedelta

    def set(self, key, value) -> None: raise NotImplementedError
    def get(self, key) -> bytes: raise NotImplementedError
    def add(self, key, amount: int) -> int: raise NotImplementedError
    def wait(self, keys, timeout=None) -> None: raise NotImplementedError
    def check(self, keys) -> bool: raise NotImplementedError
    def delete_key(self, key) -> bool: raise NotImplementedError
    def num_keys(self) -> int: raise NotImplementedError
    def compare_set(self, key, expected_value, desired_value) -> bytes: raise NotImplementedError

    def set_timeout(self, timeout) -> None:
        self.timeout = datetime.timedelta(seconds=seconds(timeout))


class TCPStore(Store):
    """Client of the store at ``host_name:port``; with ``is_master=True`` it also serves it.

    ``credentials`` default to the job secret (``DISTTORCH_SECRET``, or the single-host key file).
    ``credentials_provider`` is asked again when the server rejects us: rank 0 may have replaced a
    stale key file after we read it.
    """

    def __init__(self, host_name: str, port: int, world_size: int | None = None, is_master: bool = False,
                 timeout=DEFAULT_TIMEOUT, wait_for_workers: bool = True, multi_tenant: bool = False, *,
                 credentials: Credentials | None = None,
                 credentials_provider: Callable[[], Credentials] | None = None, context=None):
        from . import _runtime

        self.host, self.port = host_name, int(port)
        self.world_size = world_size
        self.timeout = datetime.timedelta(seconds=seconds(timeout))
        if credentials is None:
            credentials, credentials_provider = _runtime.store_credentials(host_name, self.port, is_master,
                                                                           seconds(timeout))
        self._credentials = credentials
        self._provider = credentials_provider
        # only a server's credentials go to the process's ZAP handler; a client just presents its own
        self._context = context or _runtime.context(credentials if is_master else None)
        self.server = None
        if is_master:
            self.server = StoreServer(self._context, host_name, self.port, credentials, world_size)
            self.port = self.server.port
            _runtime.publish_key_file(host_name, self.port, credentials)
        self._lock = threading.Lock()
        self._req = 0
        self._sock = None
        self._monitor = None
        self._connect()

    # -- connection ----------------------------------------------------------------------------
    def _connect(self) -> None:
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_STORE_MESSAGE)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self._credentials.client(sock)
        self._monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED
                                                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        connect_host = "127.0.0.1" if self.host in ("", "*", "0.0.0.0") else self.host
        sock.connect(f"tcp://{_bracket(connect_host)}:{self.port}")
        self._sock = sock
        self._auth_failures = 0
        self._connected = False

    def _drain_monitor(self) -> None:
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected = True
            elif event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                self._auth_failures += 1

    def _reconnect_with(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._close_sockets()
        self._connect()

    def _close_sockets(self) -> None:
        if self._sock is not None:
            close_monitored(self._sock, self._monitor)
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close_sockets()
        if self.server is not None:
            self.server.close()
            self.server = None

    # -- requests ------------------------------------------------------------------------------
    def _request(self, cmd: bytes, args: Iterable[bytes], what: str, timeout: float | None = None) -> list[bytes]:
        timeout = self.timeout.total_seconds() if timeout is None else timeout
        deadline = time.monotonic() + timeout
        frames = list(args)
        with self._lock:
            if self._sock is None:
                raise DistStoreError("the store client is closed")
            self._req += 1
            req_id = str(self._req).encode()
            self._send(req_id, cmd, frames, deadline, what, timeout)
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise DistTimeoutError(self._timeout_message(what, timeout))
                if self._sock.poll(min(250, max(1, int((deadline - now) * 1000)))):
                    reply = self._sock.recv_multipart()
                    if len(reply) < 2 or reply[0] != req_id:
                        continue  # a late answer to a request that already timed out
                    if reply[1] == b"ok":
                        return reply[2:]
                    message = reply[2].decode("utf-8", "replace") if len(reply) > 2 else "unknown error"
                    raise (RendezvousError if cmd == b"JOIN" else DistStoreError)(message)
                self._drain_monitor()
                if self._auth_failures and not self._connected and self._provider is not None:
                    fresh = self._provider()
                    if fresh is not None and fresh.secret != self._credentials.secret:
                        # our first attempt never passed the handshake, so resending cannot duplicate it
                        self._reconnect_with(fresh)
                        self._send(req_id, cmd, frames, deadline, what, timeout)

    def _send(self, req_id: bytes, cmd: bytes, frames: list, deadline: float, what: str, timeout: float) -> None:
        # never a blocking send: a DEALER whose only connection was refused (wrong secret) has no
        # pipe to queue into, and a blocking send would wait forever
        while True:
            try:
                self._sock.send_multipart([req_id, cmd, *frames], zmq.NOBLOCK)
                return
            except zmq.Again:
                if time.monotonic() >= deadline:
                    raise DistTimeoutError(self._timeout_message(what, timeout)) from None
                self._sock.poll(50, zmq.POLLOUT)
                self._drain_monitor()

    def _timeout_message(self, what: str, timeout: float) -> str:
        self._drain_monitor()
        msg = f"store at {self.host}:{self.port} did not answer {what} within {timeout:.1f} s"
        if self._auth_failures and not self._connected:
            msg += (" (the server rejected this process's credentials: is DISTTORCH_SECRET the same on "
                    "every rank?)")
        elif not self._connected:
            msg += " (never connected: is rank 0 running and MASTER_ADDR/MASTER_PORT right?)"
        return msg

    def set(self, key, value) -> None:
        self._request(b"SET", [_key(key), _bytes(value)], f"set({key!r})")

    def get(self, key) -> bytes:
        return self._request(b"GET", [_key(key)], f"get({key!r}) (the key was never set)")[0]

    def add(self, key, amount: int) -> int:
        return int(self._request(b"ADD", [_key(key), str(int(amount)).encode()], f"add({key!r})")[0])

    def wait(self, keys, timeout=None) -> None:
        keys = [keys] if isinstance(keys, (str, bytes)) else list(keys)
        t = None if timeout is None else seconds(timeout)
        self._request(b"WAIT", [_key(k) for k in keys], f"wait({keys!r})", t)

    def check(self, keys) -> bool:
        keys = [keys] if isinstance(keys, (str, bytes)) else list(keys)
        return self._request(b"CHECK", [_key(k) for k in keys], f"check({keys!r})")[0] == b"1"

    def delete_key(self, key) -> bool:
        return self._request(b"DELETE", [_key(key)], f"delete_key({key!r})")[0] == b"1"

    def num_keys(self) -> int:
        return int(self._request(b"NUM_KEYS", [], "num_keys()")[0])

    def compare_set(self, key, expected_value, desired_value) -> bytes:
        return self._request(b"COMPARE_SET", [_key(key), _bytes(expected_value), _bytes(desired_value)],
                             f"compare_set({key!r})")[0]

    def join(self, registration: dict, timeout: float) -> dict:
        """Registers this rank and returns the peer table once every rank has joined."""
        try:
            reply = self._request(b"JOIN", [json.dumps(registration).encode()],
                                  f"the rendezvous of rank {registration['rank']}", timeout)
        except DistTimeoutError as e:
            detail = ""
            try:
                status = json.loads(self._request(b"JOIN_STATUS", [], "join status", 2.0)[0])
                if status.get("missing"):
                    detail = (f"; ranks {status['missing']} of world_size {status['world_size']} "
                              f"never joined")
            except Exception:
                pass
            raise DistTimeoutError(f"rendezvous timed out: {e}{detail}") from None
        return json.loads(reply[0])


class PrefixStore(Store):
    """torch.distributed.PrefixStore: every key of ``store`` prefixed with ``prefix + "/"``."""

    def __init__(self, prefix: str, store: Store):
        self.prefix, self.underlying_store = prefix, store

    @property
    def timeout(self):
        return self.underlying_store.timeout

    def _k(self, key) -> bytes:
        return f"{self.prefix}/".encode() + _bytes(key)

    def set(self, key, value) -> None:
        self.underlying_store.set(self._k(key), value)

    def get(self, key) -> bytes:
        return self.underlying_store.get(self._k(key))

    def add(self, key, amount: int) -> int:
        return self.underlying_store.add(self._k(key), amount)

    def wait(self, keys, timeout=None) -> None:
        keys = [keys] if isinstance(keys, (str, bytes)) else list(keys)
        self.underlying_store.wait([self._k(k) for k in keys], timeout)

    def check(self, keys) -> bool:
        keys = [keys] if isinstance(keys, (str, bytes)) else list(keys)
        return self.underlying_store.check([self._k(k) for k in keys])

    def delete_key(self, key) -> bool:
        return self.underlying_store.delete_key(self._k(key))

    def num_keys(self) -> int:
        return self.underlying_store.num_keys()

    def compare_set(self, key, expected_value, desired_value) -> bytes:
        return self.underlying_store.compare_set(self._k(key), expected_value, desired_value)
