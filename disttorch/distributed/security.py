"""Who may talk to a rank: the per-job secret, the ZAP handler that checks it, CURVE keys.

Every disttorch socket that accepts connections (the store and each rank's data socket) is a
ZeroMQ PLAIN or CURVE *server*; libzmq asks the process's ZAP handler (RFC 27, a REP socket at
``inproc://zeromq.zap.01``) to approve each handshake, so a peer without the secret never gets a
single frame through.

- CURVE (the default when MASTER_ADDR is not a loopback address, i.e. whenever the job may span
  hosts; ``DISTTORCH_CURVE=1`` forces it): every rank derives the same key pair from the secret;
  the handler admits only clients holding it, the handshake proves possession of the key without
  sending anything replayable, and traffic is encrypted.
- PLAIN (jobs on loopback, or ``DISTTORCH_CURVE=0`` on a trusted fabric): the password is an HMAC
  of the secret, never the secret itself, but it is the same on every connection, so it only
  protects links nobody else can read; the link is not encrypted. Same-host collectives run
  through shared memory and are never encrypted.

The secret is ``DISTTORCH_SECRET`` (the launcher generates one per job). Without it a single-host
job uses a key file that rank 0 writes into the user's private runtime directory (mode 0700, file
0600): only the same user can read it, which is what "derived at rendezvous" amounts to when no
launcher handed out a secret. Multi-host jobs must set ``DISTTORCH_SECRET``.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import socket
import stat
import tempfile
import threading
import time

import zmq
from zmq.utils import z85

from .errors import DistError

log = logging.getLogger("disttorch.distributed")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
PLAIN_USER = b"disttorch"


def runtime_dir() -> str:
    """A directory only this user can enter, for key files and ipc:// sockets."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base) and os.access(base, os.W_OK):
        path = os.path.join(base, "disttorch")
    else:
        path = os.path.join(tempfile.gettempdir(), f"disttorch-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    # Someone else could have created the directory first to read our keys: refuse it.
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise DistError(f"runtime directory {path} must be a directory owned by uid {os.getuid()} "
                        f"with mode 0700 (found uid {st.st_uid}, mode {oct(st.st_mode & 0o777)})")
    return path


def clean_runtime_dir(path: str) -> None:
    """Removes ipc sockets and doorbells that processes killed by a signal left behind (their
    names start with, or contain ``p<pid>``, the pid of the process that made them)."""
    import re

    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        m = re.match(r"(\d+)-[0-9a-f]+\.sock$", name) or re.search(r"p(\d+)-\d+\.bell$", name)
        if m is None:
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
            continue  # alive (or not ours to judge)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            pass


def is_local_address(host: str) -> bool:
    """True when ``host`` is this machine (loopback, or one of its interface addresses / names)."""
    if host in ("localhost", "", None):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    addrs = {info[4][0] for info in infos}
    if any(a.startswith("127.") or a == "::1" for a in addrs):
        return True
    return bool(addrs & local_addresses())


def is_loopback_address(host: str | None) -> bool:
    """True when every address ``host`` resolves to is a loopback address (127/8, ::1)."""
    if host in ("localhost", "", None):
        return True
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return bool(addrs) and all(a.startswith("127.") or a == "::1" for a in addrs)


def local_addresses() -> set[str]:
    try:
        import psutil

        return {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs
                if a.family in (socket.AF_INET, socket.AF_INET6)}
    except Exception:  # pragma: no cover - psutil missing or sandboxed
        return {"127.0.0.1"}


def key_file(master_addr: str, master_port: int) -> str:
    """The key file of the job whose store is at ``master_addr:master_port`` (names of the same
    address, like ``localhost`` and ``127.0.0.1``, give the same file)."""
    try:
        addr = socket.getaddrinfo(master_addr, None, socket.AF_INET)[0][4][0]
    except OSError:
        addr = master_addr
    if addr.startswith("127."):
        addr = "127.0.0.1"
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in addr)
    return os.path.join(runtime_dir(), f"job-{safe}-{master_port}.key")


def write_key_file(path: str, secret: bytes) -> None:
    """Writes the secret with mode 0600 and an atomic rename, so readers see all of it or none."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    os.replace(tmp, path)


def read_key_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data or None
    except FileNotFoundError:
        return None


def new_secret() -> bytes:
    return secrets.token_hex(32).encode()


class Credentials:
    """The tokens a socket needs, all derived from the job secret."""

    def __init__(self, secret: bytes, curve: bool = False):
        if not secret:
            raise ValueError("the job secret must not be empty")
        self.secret = secret
        self.curve = curve
        self.password = hmac.new(secret, b"disttorch-zap-plain-v1", hashlib.sha256).hexdigest().encode()
        if curve:
            if not zmq.has("curve"):
                raise DistError("this job uses CURVE encryption (DISTTORCH_CURVE=1, or by default when "
                                "MASTER_ADDR is not a loopback address) but this libzmq was built without "
                                "CURVE support: install a pyzmq with libsodium, or set DISTTORCH_CURVE=0 "
                                "on a trusted network")
            raw = hmac.new(secret, b"disttorch-curve-v1", hashlib.sha256).digest()
            self.curve_secret = z85.encode(raw)
            self.curve_public = zmq.curve_public(self.curve_secret)
            self.curve_public_raw = z85.decode(self.curve_public)

    def server(self, sock: zmq.Socket) -> None:
        """Makes ``sock`` (before bind) demand these credentials from every connecting peer."""
        if self.curve:
            sock.curve_server = True
            sock.curve_secretkey = self.curve_secret
            sock.curve_publickey = self.curve_public
        else:
            sock.plain_server = True
        sock.zap_domain = b"disttorch"

    def client(self, sock: zmq.Socket) -> None:
        """Makes ``sock`` (before connect) present these credentials."""
        if self.curve:
            sock.curve_serverkey = self.curve_public
            sock.curve_publickey = self.curve_public
            sock.curve_secretkey = self.curve_secret
        else:
            sock.plain_username = PLAIN_USER
            sock.plain_password = self.password

    def check(self, mechanism: bytes, credentials: list[bytes]) -> bool:
        if self.curve:
            return mechanism == b"CURVE" and len(credentials) == 1 and hmac.compare_digest(
                credentials[0], self.curve_public_raw)
        return (mechanism == b"PLAIN" and len(credentials) == 2 and credentials[0] == PLAIN_USER
                and hmac.compare_digest(credentials[1], self.password))


class ZapAuthenticator:
    """The process's ZAP handler: a thread answering libzmq's handshake checks.

    The credentials can be swapped (``set_credentials``) because rank 0 learns a derived secret
    only after it created the context. Rejections are logged (rate limited) and counted.
    """

    def __init__(self, context: zmq.Context, credentials: Credentials | None):
        self.context = context
        self.credentials = credentials
        self.rejected = 0
        self.accepted = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="disttorch-zap", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise DistError(f"could not start the ZAP authenticator: {self._error}")

    def set_credentials(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def _run(self) -> None:
        try:
            sock = self.context.socket(zmq.REP)
            sock.linger = 0
            sock.bind(ZAP_ENDPOINT)
        except BaseException as e:  # noqa: BLE001 - reported to the constructor
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                try:  # the context may be destroyed under us at interpreter exit: end quietly
                    if not sock.poll(100):
                        continue
                    frames = sock.recv_multipart()
                    sock.send_multipart(self._answer(frames))
                except zmq.ZMQError:
                    break
        finally:
            try:
                sock.close(0)
            except zmq.ZMQError:
                pass

    def _answer(self, frames: list[bytes]) -> list[bytes]:
        if len(frames) < 6:
            return [b"1.0", frames[1] if len(frames) > 1 else b"", b"400", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, identity, mechanism = frames[:6]
        creds = self.credentials
        if creds is not None and creds.check(mechanism, frames[6:]):
            self.accepted += 1
            return [b"1.0", request_id, b"200", b"OK", b"disttorch", b""]
        self.rejected += 1
        if self.rejected <= 10 or self.rejected % 1000 == 0:
            log.warning("disttorch: rejected a %s connection from %s (bad or missing job secret; %d rejected so far)",
                        mechanism.decode(errors="replace") or "NULL", address.decode(errors="replace"),
                        self.rejected)
        return [b"1.0", request_id, b"400", b"bad credentials", b"", b""]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


def wait_for_key_file(path: str, deadline: float) -> bytes | None:
    """Polls for rank 0's key file until ``deadline``; None if it never appears."""
    delay = 0.01
    while True:
        data = read_key_file(path)
        if data is not None or time.monotonic() >= deadline:
            return data
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
