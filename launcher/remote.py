"""Host lists of multi-node jobs started from one machine: `--hosts h1:4,h2:4` or
`--hostfile FILE`, and whether a host is this machine.

Starting the other nodes through ssh is the ssh engine's job (`disttorch_launcher.engines.ssh`); its public
names stay importable from here for older callers.
"""
from __future__ import annotations

import re
import socket

from .net import is_loopback

__all__ = ["parse_hosts", "parse_hostfile", "is_local_host"]

# Moved to disttorch_launcher.engines.ssh; resolved on first use so that parsing a host list does not load
# the ssh engine (and the local-worker code it needs).
_MOVED_TO_SSH_ENGINE = ("remote_command", "NodeSpec", "plan_nodes", "run_hosts",
                        "FORWARDED_ENV_PREFIXES", "_forwarded_env")


def __getattr__(name: str):
    if name in _MOVED_TO_SSH_ENGINE:
        from .engines import ssh

        return getattr(ssh, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_HOST_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _check_host(name: str, where: str) -> str:
    if not _HOST_RE.match(name):
        raise ValueError(f"{where}: bad host name {name!r}")
    return name


def parse_hosts(text: str) -> list[tuple[str, int | None]]:
    """`--hosts h1:4,h2:4,h3` -> [('h1', 4), ('h2', 4), ('h3', None)] (None: --nproc-per-node)."""
    hosts: list[tuple[str, int | None]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"--hosts: empty host in {text!r}")
        name, sep, slots = item.partition(":")
        _check_host(name, "--hosts")
        if sep:
            if not slots.isdigit() or int(slots) < 1:
                raise ValueError(f"--hosts: slots of {name!r} must be a positive integer, got "
                                 f"{slots!r}")
            hosts.append((name, int(slots)))
        else:
            hosts.append((name, None))
    return hosts


def parse_hostfile(path: str) -> list[tuple[str, int | None]]:
    """DeepSpeed's hostfile: one 'hostname slots=N' per line; '#' starts a comment."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as exc:
        raise ValueError(f"--hostfile: cannot read {path!r}: {exc.strerror or exc}") from None
    hosts: list[tuple[str, int | None]] = []
    seen = set()
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        name = _check_host(fields[0], f"--hostfile {path}:{number}")
        slots: int | None = None
        for extra in fields[1:]:
            key, sep, value = extra.partition("=")
            if key != "slots" or not sep or not value.isdigit() or int(value) < 1:
                raise ValueError(f"--hostfile {path}:{number}: expected 'slots=N' (N >= 1), "
                                 f"got {extra!r}")
            slots = int(value)
        if name in seen:
            raise ValueError(f"--hostfile {path}:{number}: host {name!r} listed twice")
        seen.add(name)
        hosts.append((name, slots))
    if not hosts:
        raise ValueError(f"--hostfile {path!r} lists no host")
    return hosts


def is_local_host(name: str) -> bool:
    """Whether `name` is this machine (loopback, our host name, or one of our addresses)."""
    if is_loopback(name):
        return True
    own = socket.gethostname()
    if name in (own, own.split(".")[0]):
        return True
    try:
        address = socket.gethostbyname(name)
    except OSError:
        return False
    if is_loopback(address):
        return True
    try:
        import psutil
    except ImportError:
        return False
    return any(a.address == address for addrs in psutil.net_if_addrs().values() for a in addrs)
