"""Thin wrappers over the system tools the rig drives (ip, tc, nsenter, apt-get) and /proc."""
from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess

STATE_ROOT = "/run/disttorch-testcluster"
MARKER_VAR = "DISTTORCH_TESTCLUSTER"  # in each namespace holder's environment: the run id


class ClusterError(RuntimeError):
    """The rig could not be made, driven or removed; the message says which step and why."""


def run(argv: list[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run a system command; a failure raises ClusterError with its output."""
    try:
        done = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except FileNotFoundError:
        raise ClusterError(f"{argv[0]!r} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{' '.join(argv)} did not finish within {timeout:g} s") from None
    if check and done.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()}")
    return done


def in_namespaces(pid: int, argv: list[str], cwd: str | None = None) -> list[str]:
    """argv run inside the network, UTS and mount namespaces of process `pid`, in directory
    `cwd` (default: the current one; entering a mount namespace would otherwise start in /)."""
    return ["nsenter", "-t", str(pid), "-n", "-u", "-m", f"--wd={cwd or os.getcwd()}", "--",
            *argv]


def ensure_debian_packages(commands: dict[str, str]) -> None:
    """Install the Debian package of each missing command ({command: package}); needs root."""
    missing = sorted({pkg for cmd, pkg in commands.items() if not _which(cmd)})
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    done = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True, env=env)
    if done.returncode != 0:  # a fresh image has no package lists yet
        subprocess.run(check=False, args=["apt-get", "update", "-q"], stdin=subprocess.DEVNULL,
                       capture_output=True, env=env)
        done = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True, env=env)
    if done.returncode != 0:
        raise ClusterError(f"cannot install {', '.join(missing)}: "
                           f"{done.stderr.decode(errors='replace').strip()[-500:]}")


def _which(command: str) -> str | None:
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")


def sbin(command: str) -> str:
    path = _which(command)
    if path is None:
        raise ClusterError(f"{command!r} is not installed")
    return path


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the machine has an address in or a route to."""
    nets = []
    for line in run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            nets.append(ipaddress.ip_network(fields[fields.index("inet") + 1], strict=False))
    for line in run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest in ("default", "broadcast", "local", "unreachable", "multicast"):
            dest = line.split()[1] if len(line.split()) > 1 else ""
        try:
            net = ipaddress.ip_network(dest, strict=False)
        except ValueError:
            continue
        if net.prefixlen > 0:  # the default route overlaps everything; it is no claim
            nets.append(net)
    return nets


def link_names() -> list[str]:
    names = []
    for line in run(["ip", "-o", "link", "show"]).stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def net_namespace(pid: int) -> str | None:
    """The network namespace of `pid` ('net:[4026...]'), None when it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def environ_marker(pid: int) -> str | None:
    """The value of MARKER_VAR in `pid`'s initial environment (None if absent or unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return None
    key = MARKER_VAR.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(key):
            return item[len(key):].decode(errors="replace")
    return None


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True
