"""The launcher-to-launcher control channel: one TCP connection from every node's launcher to
node 0's, carrying JSON lines (never pickles: nothing from the network is ever unpickled).

Port: `--control-port`, by default MASTER_PORT + 1 (MASTER_PORT itself belongs to worker rank 0's
rendezvous store). Node 0 binds it on loopback when the master address is a loopback address,
else on all interfaces.

Handshake: a mutual challenge-response with HMAC-SHA256 over fresh nonces, keyed by the job
secret every node was given by its operator (`DISTTORCH_SECRET`, or by the ssh driver over
ssh's stdin). Each side proves it holds the secret without sending it, and nothing secret ever
travels on this channel: a multi-node job without a shared secret is refused before it starts
(`disttorch-run --new-secret` prints one).

    node 0 -> node : {"type": "hello", "proto": 2, "nonce": Ns}
    node -> node 0 : {"type": "join", "nonce": Nc, "mac": H("join", Ns, Nc), node info...}
    node 0 -> node : {"type": "welcome", "mac": H("welcome", Nc, Ns), "run_id": ...}

A join without a MAC, with a wrong one, or replayed from another connection (whose server
nonce differs) is answered with a `reject` naming the reason, and logged by node 0.

After the handshake node 0 sends `start` / `stop` / `finish` and `ping`; nodes send `done` and
`ping`. `dump` goes both ways: a node whose launcher got SIGUSR1 sends it to node 0, which sends
it to every node, whose launcher then has its workers print their stacks. Every message is one
JSON object on one line of at most MAX_MESSAGE bytes.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import threading

__all__ = ["PROTOCOL", "MAX_MESSAGE", "ControlError", "Connection", "mac", "new_nonce",
           "server_handshake", "client_handshake"]

PROTOCOL = 2  # 2: no open jobs (1 handed the job secret to unauthenticated joiners)
MAX_MESSAGE = 1 << 20  # a traceback-laden `done` is a few KiB; anything this big is hostile


class ControlError(Exception):
    """A broken, malformed or unauthenticated control connection."""


def mac(secret: str, *parts: str) -> str:
    """HMAC-SHA256 of the '|'-joined parts under the job secret, as hex."""
    return hmac.new(secret.encode(), "|".join(parts).encode(), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    return secrets.token_hex(16)


class Connection:
    """A JSON-lines message connection over a connected stream socket (thread-safe sends)."""

    def __init__(self, sock: socket.socket, peer: str = "") -> None:
        self.sock = sock
        self.peer = peer
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small messages must leave at once; keepalive notices a peer host that vanished.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._reader = sock.makefile("rb")
        self._send_lock = threading.Lock()
        self.closed = False

    def send(self, message: dict) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        if len(data) > MAX_MESSAGE:
            raise ControlError(f"control message of {len(data)} bytes exceeds {MAX_MESSAGE}")
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                raise ControlError(f"send to {self.peer or 'peer'} failed: {exc}") from None

    def recv(self) -> dict | None:
        """The next message, or None when the peer closed the connection."""
        try:
            line = self._reader.readline(MAX_MESSAGE + 1)
        except (OSError, ValueError) as exc:
            raise ControlError(f"receive from {self.peer or 'peer'} failed: {exc}") from None
        if not line:
            return None
        if len(line) > MAX_MESSAGE or not line.endswith(b"\n"):
            raise ControlError(f"oversized or truncated control message from {self.peer}")
        try:
            message = json.loads(line)
        except ValueError:
            raise ControlError(f"malformed control message from {self.peer}") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ControlError(f"control message without a type from {self.peer}")
        return message

    def settimeout(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._reader.close()
        self.sock.close()


def server_handshake(conn: Connection, secret: str, *, run_id: str) -> dict:
    """Node 0's side. Returns the node's join message; raises ControlError when rejected.

    The node must prove it holds `secret`; the welcome carries node 0's proof and the run id,
    never the secret.
    """
    if not secret:
        raise ValueError("the control channel needs the job secret (DISTTORCH_SECRET)")
    nonce = new_nonce()
    conn.send({"type": "hello", "proto": PROTOCOL, "nonce": nonce})
    join = conn.recv()
    if join is None or join.get("type") != "join":
        raise ControlError(f"{conn.peer}: expected a join message, got {join!r:.80}")
    if join.get("proto") != PROTOCOL:
        _reject(conn, f"control protocol {join.get('proto')!r} differs from node 0's {PROTOCOL}")
    client_nonce = join.get("nonce")
    if not isinstance(client_nonce, str) or len(client_nonce) < 16:
        _reject(conn, "join without a fresh nonce")
    if not join.get("mac"):
        _reject(conn, "join without a MAC: this node has no DISTTORCH_SECRET (set the same "
                      "DISTTORCH_SECRET on every node)")
    if not hmac.compare_digest(str(join["mac"]), mac(secret, "join", nonce, client_nonce)):
        _reject(conn, "authentication failed: wrong MAC (this node's DISTTORCH_SECRET differs "
                      "from node 0's, or the join was replayed)")
    conn.send({"type": "welcome", "run_id": run_id,
               "mac": mac(secret, "welcome", client_nonce, nonce)})
    return join


def _reject(conn: Connection, reason: str) -> None:
    try:
        conn.send({"type": "reject", "reason": reason})
    except ControlError:
        pass
    raise ControlError(f"rejected {conn.peer}: {reason}")


def client_handshake(conn: Connection, secret: str, info: dict) -> dict:
    """A node's side. Returns node 0's welcome; raises ControlError when node 0 rejects the
    node or cannot prove it holds the secret."""
    if not secret:
        raise ValueError("the control channel needs the job secret (DISTTORCH_SECRET)")
    hello = conn.recv()
    if hello is None or hello.get("type") != "hello":
        raise ControlError(f"node 0 at {conn.peer} did not greet: {hello!r:.80}")
    if hello.get("proto") != PROTOCOL:
        raise ControlError(f"node 0 at {conn.peer} speaks control protocol "
                           f"{hello.get('proto')!r}, this launcher {PROTOCOL}: run the same "
                           f"disttorch version on every node")
    nonce = new_nonce()
    server_nonce = str(hello.get("nonce", ""))
    conn.send({"type": "join", "proto": PROTOCOL, "nonce": nonce,
               "mac": mac(secret, "join", server_nonce, nonce), **info})
    welcome = conn.recv()
    if welcome is None:
        raise ControlError(f"node 0 at {conn.peer} closed the connection during the handshake")
    if welcome.get("type") == "reject":
        raise ControlError(f"node 0 rejected this node: {welcome.get('reason')}")
    if welcome.get("type") != "welcome":
        raise ControlError(f"node 0 at {conn.peer} sent {welcome.get('type')!r}, not a welcome")
    if not hmac.compare_digest(str(welcome.get("mac", "")),
                               mac(secret, "welcome", nonce, server_nonce)):
        raise ControlError(f"node 0 at {conn.peer} failed to prove it holds DISTTORCH_SECRET")
    return welcome
