"""Process-wide state of the collective layer: the ZeroMQ context, its ZAP handler, job credentials.

One context per process serves every process group and store; its ZAP handler thread approves
each incoming handshake against the job secret (see ``security.py``).
"""
from __future__ import annotations

import atexit
import os
import socket
import threading
import time

import zmq

from disttorch_launcher import settings

from .errors import DistError, DistStoreError
from . import security
from .security import Credentials, ZapAuthenticator

_lock = threading.RLock()
_context: zmq.Context | None = None
_auth: ZapAuthenticator | None = None
_owner_pid: int | None = None
_key_files: list[tuple[str, bytes]] = []


def context(credentials: Credentials | None = None) -> zmq.Context:
    """The process's context (created on first use, with its ZAP handler)."""
    global _context, _auth, _owner_pid
    with _lock:
        if _context is None or _owner_pid != os.getpid():
            _context = zmq.Context(io_threads=max(1, settings.get("DISTTORCH_IO_THREADS")))
            _context.setsockopt(zmq.LINGER, 0)
            _auth = ZapAuthenticator(_context, credentials)
            _owner_pid = os.getpid()
        elif credentials is not None and _auth.credentials is not credentials:
            if _auth.credentials is None or _auth.credentials.secret != credentials.secret \
                    or _auth.credentials.curve != credentials.curve:
                _auth.set_credentials(credentials)
        return _context


def authenticator() -> ZapAuthenticator | None:
    return _auth


def curve_wanted(master_addr: str) -> bool:
    """Whether this job's sockets use CURVE: ``DISTTORCH_CURVE`` when set (``0`` opts out on a
    trusted fabric), else on exactly when MASTER_ADDR is not a loopback address, i.e. when the
    job may span hosts. Every rank sees the same MASTER_ADDR, so every rank decides alike."""
    wanted = settings.get("DISTTORCH_CURVE")  # None: unset
    if wanted is not None:
        return wanted
    return not security.is_loopback_address(master_addr)


def job_credentials(master_addr: str, master_port: int, is_master: bool, timeout: float):
    """(credentials, provider) for a job whose store is at ``master_addr:master_port``.

    ``DISTTORCH_SECRET`` wins. Otherwise a single-host job shares a key file that rank 0 writes
    (``publish_key_file``) and the others read; ``provider`` re-reads it, for a client that read a
    stale file from an earlier job on the same port. A multi-host job without a secret is refused.
    """
    curve = curve_wanted(master_addr)
    secret = settings.get("DISTTORCH_SECRET")
    if secret:
        return Credentials(secret.encode(), curve), None
    if not security.is_local_address(master_addr):
        raise DistError(
            f"MASTER_ADDR={master_addr} is another host: a multi-host job needs a shared secret. Set "
            f"DISTTORCH_SECRET to the same random string on every rank (disttorch-run does this for you)")
    path = security.key_file(master_addr, master_port)
    if is_master:
        creds = Credentials(security.new_secret(), curve)
        creds.key_file = path
        return creds, None
    data = security.wait_for_key_file(path, time.monotonic() + timeout)
    if data is None:
        raise DistStoreError(
            f"no job key appeared at {path} within {timeout:.0f} s: rank 0 of the job at "
            f"{master_addr}:{master_port} has not started (or runs as another user; set DISTTORCH_SECRET)")

    def provider():
        fresh = security.read_key_file(path)
        return Credentials(fresh, curve) if fresh else None

    return Credentials(data, curve), provider


store_credentials = job_credentials


def publish_key_file(master_addr: str, master_port: int, credentials: Credentials) -> None:
    """Rank 0, after binding the store: writes the derived secret for the other local ranks."""
    path = getattr(credentials, "key_file", None)
    if path is None:
        return
    path = security.key_file(master_addr, master_port)  # the port may have been 0 until bound
    security.write_key_file(path, credentials.secret)
    with _lock:
        _key_files.append((path, credentials.secret))


def remove_key_files() -> None:
    with _lock:
        files, _key_files[:] = list(_key_files), []
    for path, secret in files:
        try:
            if security.read_key_file(path) == secret:  # never delete a newer job's key
                os.unlink(path)
        except OSError:
            pass


def host_id() -> str:
    """Identifies this machine: ranks with equal ids share memory. ``DISTTORCH_HOST_ID`` overrides
    (tests use it to pretend one machine is several).

    The id is what decides whether two ranks can share memory, so it names the kernel (boot id)
    and the very ``/dev/shm`` mount (its device number), not just the host name: containers or
    namespaces with one kernel and a private ``/dev/shm`` each are different hosts even when
    their host names are equal."""
    override = settings.get("DISTTORCH_HOST_ID")
    if override:
        return override
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = "noboot"
    try:
        shm = f"shm{os.stat('/dev/shm').st_dev:x}"
    except OSError:
        shm = "noshm"
    return f"{socket.gethostname()}/{boot}/{shm}"


def routable_address(master_addr: str) -> str:
    """The local IP address this host uses to reach ``master_addr`` (no packet is sent)."""
    override = settings.get("DISTTORCH_BIND_ADDR")
    if override:
        return override
    try:
        infos = socket.getaddrinfo(master_addr, 1, proto=socket.IPPROTO_UDP)
        family, _, _, _, addr = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            return s.getsockname()[0]
    except OSError:
        return socket.gethostbyname(socket.gethostname())


def _shutdown() -> None:
    global _context, _auth
    if _owner_pid != os.getpid():
        return  # a forked child must not tear down its parent's context
    remove_key_files()
    if _auth is not None:
        _auth.close()
    if _context is not None:
        from .transport.zmq import CLOSE_LINGER_MS

        _context.destroy(CLOSE_LINGER_MS)  # deliver what the last collective left queued
    _context = _auth = None


atexit.register(_shutdown)
