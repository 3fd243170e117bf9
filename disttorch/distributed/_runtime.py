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
from disttorch_launcher.process import raise_open_file_limit

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
            _context = new_context()
            _auth = ZapAuthenticator(_context, credentials)
            _owner_pid = os.getpid()
        elif credentials is not None and _auth.credentials is not credentials:
            if _auth.credentials is None or _auth.credentials.secret != credentials.secret \
                    or _auth.credentials.curve != credentials.curve:
                _auth.set_credentials(credentials)
        return _context


#: per peer and group, at most: the PUSH socket, its monitor and libzmq's end of that monitor
#: (a same-host peer on ipc has no monitor: one socket)
SOCKETS_PER_PEER = 3
#: per peer, at most: measured with monitors on every link (8 and 16 local ranks: 73 and 129
#: descriptors): PUSH and PULL connections, the sockets' wake-up eventfds, the shared-memory
#: doorbell; same-host peers without monitors take 5
FDS_PER_PEER = 7
#: what a process holds besides its peers: interpreter, libraries, store, ZAP handler, I/O threads
FDS_BASE = 128
#: room for this many groups as large as the world (``new_group``) before a limit is reached
GROUPS_ROOM = 3


def sockets_needed(world_size: int) -> int:
    """ZeroMQ sockets a rank of a ``world_size`` job may open (at least libzmq's default 1023)."""
    return max(1023, SOCKETS_PER_PEER * GROUPS_ROOM * world_size + 64)


def fds_needed(world_size: int) -> int:
    return FDS_PER_PEER * GROUPS_ROOM * world_size + FDS_BASE


def _world_size_hint() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def ensure_fd_limit(world_size: int) -> None:
    """Raises this process's soft RLIMIT_NOFILE towards what a ``world_size`` job needs.

    The soft limit is often 1024 while the hard limit is far higher; a rank of a 128-rank job on
    one host holds about 900 descriptors in its first group alone. Only the hard limit (set by the
    administrator: ``ulimit -Hn``, limits.conf, systemd's LimitNOFILE) caps this; when it is too
    low the job still starts, with a warning naming the limit, and fails with a clear error only
    if it actually runs out."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    need = fds_needed(world_size)
    soft = raise_open_file_limit(need)  # the launcher's: the soft limit up to the hard one
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    import logging

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    logging.getLogger("disttorch.distributed").warning(
        "disttorch: a rank of this %d-rank job may need %d file descriptors, but RLIMIT_NOFILE allows "
        "%d (hard limit %s); raise it (ulimit -n / -Hn, limits.conf, systemd LimitNOFILE) if sockets "
        "fail with 'Too many open files'", world_size, need, soft, hard)


def limits_report() -> str:
    """The limits a 'Too many open files' depends on, for error messages."""
    parts = []
    try:
        parts.append(f"{len(os.listdir('/proc/self/fd'))} file descriptors open")
    except OSError:
        pass
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        parts.append(f"RLIMIT_NOFILE soft {soft} / hard {hard} (ulimit -n / -Hn)")
    except ImportError:  # pragma: no cover
        pass
    if _context is not None:
        parts.append(f"ZeroMQ's MAX_SOCKETS {_context.get(zmq.MAX_SOCKETS)} per process")
    return "; ".join(parts)


def new_context() -> zmq.Context:
    """A ZeroMQ context sized for this job (``WORLD_SIZE``), before any socket exists."""
    ctx = zmq.Context(io_threads=max(1, settings.get("DISTTORCH_IO_THREADS")))
    ctx.setsockopt(zmq.LINGER, 0)
    # takes effect only before the first socket; libzmq's default of 1023 is too few from about
    # 340 ranks on, or fewer with groups of their own (three sockets per peer and group)
    ctx.set(zmq.MAX_SOCKETS, min(ctx.get(zmq.SOCKET_LIMIT), sockets_needed(_world_size_hint())))
    return ctx


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


_before_shutdown: list = []


def before_shutdown(fn) -> None:
    """Runs ``fn()`` at interpreter exit, before the context closes the sockets (the process
    groups say goodbye to their peers there)."""
    _before_shutdown.append(fn)


def _shutdown() -> None:
    global _context, _auth
    if _owner_pid != os.getpid():
        return  # a forked child must not tear down its parent's context
    for fn in _before_shutdown:
        try:
            fn()
        except Exception:  # noqa: BLE001 - exit goes on; the peers learn from /proc or heartbeats
            pass
    remove_key_files()
    if _auth is not None:
        _auth.close()
    if _context is not None:
        from .transport.zmq import CLOSE_LINGER_MS

        _context.destroy(CLOSE_LINGER_MS)  # deliver what the last collective left queued
    _context = _auth = None


atexit.register(_shutdown)
