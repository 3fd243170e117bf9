"""The rig's OpenSSH: one key pair for root and one host key per host, made per run, so
`ssh testhostN` works between test hosts in batch mode with strict host-key checking."""
from __future__ import annotations

import os
import time

from . import system
from .system import ClusterError

_SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {state}/host_key_{name}
PidFile {state}/sshd_{name}.pid
AuthorizedKeysFile {state}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
# A session whose client vanished (a cut link) ends after 15 s, as on cluster nodes set up so
ClientAliveInterval 5
ClientAliveCountMax 3
"""

# Bind-mounted over /etc/ssh/ssh_config inside every test host.
_CLIENT_CONFIG = """\
Host *
    IdentityFile {state}/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile {state}/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 5
    ServerAliveInterval 5
    ServerAliveCountMax 3
    LogLevel ERROR
"""


def _keygen(path: str, comment: str) -> str:
    system.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
    with open(path + ".pub") as f:
        return f.read().strip()


def write_client_files(state_dir: str, hosts) -> None:
    """Root's key pair and authorized_keys, each host's key, known_hosts, the client config."""
    user_key = _keygen(os.path.join(state_dir, "id_ed25519"), "disttorch-testcluster")
    with open(os.path.join(state_dir, "authorized_keys"), "w") as f:
        f.write(user_key + "\n")
    lines = []
    for host in hosts:
        public = _keygen(os.path.join(state_dir, f"host_key_{host.name}"), host.name)
        key_type, key = public.split()[:2]
        lines.append(f"{host.name},{host.address} {key_type} {key}\n")
    with open(os.path.join(state_dir, "known_hosts"), "w") as f:
        f.writelines(lines)
    with open(os.path.join(state_dir, "ssh_config"), "w") as f:
        f.write(_CLIENT_CONFIG.format(state=state_dir))
    for host in hosts:
        with open(os.path.join(state_dir, f"sshd_{host.name}.conf"), "w") as f:
            f.write(_SSHD_CONFIG.format(address=host.address, state=state_dir, name=host.name))


def start_sshd(state_dir: str, host) -> int:
    """Start `host`'s sshd inside its namespaces; returns its pid once it listens."""
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # Debian's privilege-separation dir
    pid_file = os.path.join(state_dir, f"sshd_{host.name}.pid")
    try:
        os.unlink(pid_file)
    except FileNotFoundError:
        pass
    conf = os.path.join(state_dir, f"sshd_{host.name}.conf")
    log = os.path.join(state_dir, f"sshd_{host.name}.log")
    system.run(system.in_namespaces(host.holder_pid,
                                    [system.sbin("sshd"), "-f", conf, "-E", log]))
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            with open(pid_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            time.sleep(0.02)
    raise ClusterError(f"sshd of {host.name} did not start: {_tail(log)}")


def wait_reachable(rig, hosts) -> None:
    """Check `ssh HOST true` from the first host to every host (itself included)."""
    first = hosts[0].name
    for host in hosts:
        deadline = time.monotonic() + 15.0
        while True:
            done = rig.run(first, ["ssh", host.name, "true"], timeout=20.0)
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"ssh {host.name} from {first} fails: {done.stderr.strip()}; sshd log: "
                    f"{_tail(os.path.join(rig.state_dir, f'sshd_{host.name}.log'))}")
            time.sleep(0.2)


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-800:].strip() or "(empty)"
    except OSError:
        return "(no log)"
