"""Small network helpers shared by the launcher and ``disttorch.distributed`` (standard library
only, so the launcher may import it): loopback checks, a free port, torchrun's default port."""
from __future__ import annotations

import socket

#: MASTER_PORT when none is given and a free one cannot be picked (several nodes): torchrun's.
DEFAULT_MASTER_PORT = 29500


def is_loopback(host: str, resolve: bool = False) -> bool:
    """Whether ``host`` names this machine's loopback interface. Without ``resolve`` only literal
    addresses and the loopback names count (no resolver call); with it a name counts when every
    address it resolves to is a loopback one."""
    if host in ("localhost", "::1", "ip6-localhost") or host.startswith("127."):
        return True
    if not resolve:
        return False
    try:
        return all(a[4][0].startswith("127.") or a[4][0] == "::1" for a in socket.getaddrinfo(host, None))
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (bind port 0, read it, release it)."""
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve master address {host!r}: {exc}") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(addr[:2] if family == socket.AF_INET else addr)
        except OSError:
            # The name resolves to an address of another machine, or one we cannot bind to:
            # any free port of this machine is then as good a guess as any.
            sock.bind(("", 0))
        return sock.getsockname()[1]
