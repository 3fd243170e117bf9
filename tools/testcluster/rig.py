"""Making the test hosts: namespaces, the bridge and shaped links, and an sshd per host."""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import subprocess
from dataclasses import asdict, dataclass

from . import ssh, sweep, system
from .system import ClusterError

# The holder of a host's namespaces: it names the host, gives it a private /dev/shm and the
# rig's /etc/hosts and ssh client settings, then sleeps until the rig is removed. Mount
# propagation is private (unshare's default), so none of this is seen outside the host.
_HOLDER_SCRIPT = r"""
set -e
hostname "$1"
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount --bind "$2/hosts" /etc/hosts
mount --bind "$2/ssh_config" /etc/ssh/ssh_config
ip link set lo up
echo ready
exec sleep infinity
"""
_SUBNET_CANDIDATES = [f"198.18.{x}.0/24" for x in range(7, 255)] + \
                     [f"198.19.{x}.0/24" for x in range(255)]
_FIRST_HOST_OCTET = 11


def cannot_make_namespaces() -> str | None:
    """Why this machine cannot host a rig (None when it can): the reason tests skip with."""
    if os.geteuid() != 0:
        return "the test cluster needs root (network, UTS and mount namespaces)"
    for tool in ("ip", "tc", "nsenter", "unshare"):
        try:
            system.sbin(tool)
        except ClusterError:
            return f"the test cluster needs {tool!r} (iproute2 / util-linux), not installed"
    probe = subprocess.run(check=False, args=["unshare", "--net", "--uts", "--mount", "true"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make namespaces here: {probe.stderr.strip()}"
    return None


def parse_rate(text: str) -> str:
    """Check a tc rate ('1gbit', '100mbit', '500kbit'); returns it as tc spells it."""
    value = text.strip().lower()
    for unit in ("gbit", "mbit", "kbit", "bit"):
        if value.endswith(unit):
            number = value[:-len(unit)]
            try:
                if float(number) > 0:
                    return value
            except ValueError:
                pass
            break
    raise ValueError(f"--rate: expected a rate such as 1gbit, 100mbit or 500kbit, got {text!r}")


#: Ethernet's common default; every figure of issue 13 is measured at it
DEFAULT_MTU = 1500
#: what Linux accepts on a veth link and a bridge (IPv4 needs 68; 65535 is veth's largest)
MTU_RANGE = (68, 65535)


def parse_mtu(value) -> int:
    """Check an MTU in bytes (``--mtu``): an integer in ``MTU_RANGE``."""
    try:
        mtu = int(value)
    except (TypeError, ValueError):
        mtu = None
    if mtu is None or not MTU_RANGE[0] <= mtu <= MTU_RANGE[1] or str(value).strip() != str(mtu):
        raise ValueError(f"--mtu: expected an integer from {MTU_RANGE[0]} to {MTU_RANGE[1]} bytes "
                         f"(1500: Ethernet's default, 9000: jumbo frames), got {value!r}")
    return mtu


def rate_bits(rate: str) -> float:
    scale = {"gbit": 1e9, "mbit": 1e6, "kbit": 1e3, "bit": 1.0}
    for unit, factor in scale.items():
        if rate.endswith(unit):
            return float(rate[:-len(unit)]) * factor
    raise ValueError(f"bad rate {rate!r}")


@dataclass
class Host:
    """One test host: its name, address, namespace holder and the root-side end of its link."""
    name: str
    address: str
    holder_pid: int
    root_link: str
    sshd_pid: int | None = None


class Cluster:
    """A rig of N test hosts; make one with :meth:`up`, remove it with :meth:`down`."""

    def __init__(self, run_id: str, subnet: str, rate: str | None, hosts: list[Host],
                 owner_pid: int | None, mtu: int = DEFAULT_MTU) -> None:
        self.run_id, self.subnet, self.rate, self.mtu = run_id, subnet, rate, mtu
        self.hosts, self.owner_pid = hosts, owner_pid
        self.state_dir = os.path.join(system.STATE_ROOT, run_id)
        self.bridge = f"{sweep.link_prefix(run_id)}br"

    # -- making and removing ----------------------------------------------------------------
    @classmethod
    def up(cls, n: int, *, rate: str | None = "1gbit", owner_pid: int | None = None,
           sweep_stale: bool = True, mtu: int = DEFAULT_MTU) -> Cluster:
        """Make `n` test hosts testhost1..testhostN, links shaped to `rate` (None: unshaped), every
        link and the bridge with MTU `mtu` (1500, Ethernet's default; 9000 for jumbo frames).

        `owner_pid`: the rig belongs to that process; a later rig removes it once that process
        is gone (tests pass their own pid, so a killed test run leaves nothing for long)."""
        if not 1 <= n <= 200:
            raise ValueError(f"number of hosts must be in 1..200, got {n}")
        rate = parse_rate(rate) if rate else None
        mtu = parse_mtu(mtu)
        reason = cannot_make_namespaces()
        if reason:
            raise ClusterError(reason)
        system.ensure_debian_packages({"sshd": "openssh-server", "ssh": "openssh-client",
                                       "ssh-keygen": "openssh-client"})
        if sweep_stale:
            sweep.remove_leftovers()
        os.makedirs(system.STATE_ROOT, exist_ok=True)
        run_id, state_dir = _claim_run_dir()
        # recorded first, so a concurrent sweep never takes a rig being made for a crashed one
        _write_json(os.path.join(state_dir, "state.json"), {"owner_pid": owner_pid})
        try:
            subnet = _free_subnet(run_id)
            _write_json(os.path.join(state_dir, "state.json"),
                        {"owner_pid": owner_pid, "subnet": subnet})
            net = ipaddress.ip_network(subnet)
            hosts = [Host(f"testhost{i + 1}", str(net.network_address + _FIRST_HOST_OCTET + i),
                          0, f"{sweep.link_prefix(run_id)}h{i + 1}") for i in range(n)]
            rig = cls(run_id, subnet, rate, hosts, owner_pid, mtu)
            rig._make()
            return rig
        except BaseException:
            sweep.remove(run_id)
            raise

    def _make(self) -> None:
        ssh.write_client_files(self.state_dir, self.hosts)
        with open(os.path.join(self.state_dir, "hosts"), "w") as f:
            f.write("127.0.0.1\tlocalhost\n")
            f.writelines(f"{h.address}\t{h.name}\n" for h in self.hosts)
        system.run(["ip", "link", "add", self.bridge, "mtu", str(self.mtu), "type", "bridge"])
        system.run(["ip", "link", "set", self.bridge, "up"])
        for index, host in enumerate(self.hosts, 1):
            host.holder_pid = self._start_holder(host)
            self._save()
            self._wire(index, host)
        for host in self.hosts:
            host.sshd_pid = ssh.start_sshd(self.state_dir, host)
            self._save()
        ssh.wait_reachable(self, self.hosts)

    def _start_holder(self, host: Host) -> int:
        env = dict(os.environ, **{system.MARKER_VAR: self.run_id})
        proc = subprocess.Popen(
            ["unshare", "--net", "--uts", "--mount", "--propagation", "private", "--",
             "sh", "-c", _HOLDER_SCRIPT, "holder", host.name, self.state_dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, start_new_session=True)
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            err = proc.stderr.read().decode(errors="replace").strip() if proc.poll() is not None \
                else "(still running)"
            raise ClusterError(f"cannot make the namespaces of {host.name}: {err}")
        proc.stdout.close()
        proc.stderr.close()
        return proc.pid

    def _wire(self, index: int, host: Host) -> None:
        inner = f"{sweep.link_prefix(self.run_id)}n{index}"
        prefixlen = ipaddress.ip_network(self.subnet).prefixlen
        system.run(["ip", "link", "add", host.root_link, "mtu", str(self.mtu), "type", "veth",
                    "peer", "name", inner, "mtu", str(self.mtu)])
        system.run(["ip", "link", "set", inner, "netns", str(host.holder_pid)])
        system.run(["ip", "link", "set", host.root_link, "master", self.bridge])
        system.run(["ip", "link", "set", host.root_link, "up"])
        def inside(*argv):
            return system.run(system.in_namespaces(host.holder_pid, list(argv)))

        inside("ip", "link", "set", inner, "name", "eth0")
        inside("ip", "addr", "add", f"{host.address}/{prefixlen}", "dev", "eth0")
        inside("ip", "link", "set", "eth0", "up")
        if self.rate:
            # both directions: eth0's egress is what the host sends, the root end's egress
            # is what it receives
            for argv in (["tc", "qdisc", "replace", "dev", "eth0"],
                         ["tc", "qdisc", "replace", "dev", host.root_link]):
                shaped = argv + ["root", "tbf", *_tbf_arguments(self.rate)]
                if argv[-1] == "eth0":
                    inside(*shaped)
                else:
                    system.run(shaped)

    def down(self) -> list[str]:
        """Remove every namespace, link, bridge, sshd and process of this rig."""
        return sweep.remove(self.run_id)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def _save(self) -> None:
        _write_json(os.path.join(self.state_dir, "state.json"), {
            "owner_pid": self.owner_pid, "subnet": self.subnet, "rate": self.rate, "mtu": self.mtu,
            "hosts": [asdict(h) for h in self.hosts]})

    @classmethod
    def attach(cls, run_id: str) -> Cluster:
        """The rig `run_id` made earlier (by `up` on the command line)."""
        path = os.path.join(system.STATE_ROOT, run_id, "state.json")
        try:
            with open(path) as f:
                state = json.load(f)
        except OSError:
            raise ClusterError(f"no test cluster with run id {run_id!r} ({path} is missing)") \
                from None
        return cls(run_id, state["subnet"], state.get("rate"),
                   [Host(**h) for h in state["hosts"]], state.get("owner_pid"),
                   state.get("mtu", DEFAULT_MTU))

    # -- driving ------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no test host {name!r} (hosts: {', '.join(h.name for h in self.hosts)})")

    def command(self, host: str, argv: list[str], cwd: str | None = None) -> list[str]:
        """argv as run on `host` (its network, hostname and /dev/shm) in `cwd` (default: here)."""
        return system.in_namespaces(self.host(host).holder_pid, list(argv), cwd)

    def popen(self, host: str, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start argv on `host`; keyword arguments go to subprocess.Popen."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.command(host, argv, kwargs.pop("cwd", None)), **kwargs)

    def run(self, host: str, argv: list[str], *, timeout: float = 60.0,
            **kwargs) -> subprocess.CompletedProcess:
        """Run argv on `host` to its end; output captured as text."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(host, argv, kwargs.pop("cwd", None)), check=False,
                              timeout=timeout, **kwargs)

    def set_link(self, host: str, up: bool) -> None:
        """Cut (up=False) or restore `host`'s link, at the bridge's end."""
        system.run(["ip", "link", "set", self.host(host).root_link, "up" if up else "down"])

    def stop_sshd(self, host: str) -> None:
        """Stop `host`'s sshd (sessions already open keep running, as with a real sshd)."""
        pid = self.host(host).sshd_pid
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.host(host).sshd_pid = None
            self._save()

    def start_sshd(self, host: str) -> None:
        h = self.host(host)
        if h.sshd_pid is None:
            h.sshd_pid = ssh.start_sshd(self.state_dir, h)
            self._save()

    def processes(self, host: str) -> list[tuple[int, str]]:
        """Processes running on `host` besides the rig's own (holder, sshd): (pid, command)."""
        h = self.host(host)
        ns = system.net_namespace(h.holder_pid)
        if ns is None:
            return []
        infra = {h.holder_pid, h.sshd_pid}
        return [(pid, system.command_line(pid)) for pid in sweep.processes_in(ns)
                if pid not in infra]

    def leftovers(self) -> list[str]:
        """What of this rig still exists (empty after :meth:`down`)."""
        left = [f"process {pid}" for pid in sweep.holders(self.run_id)]
        left += [f"link {n}" for n in system.link_names()
                 if n.startswith(sweep.link_prefix(self.run_id))]
        if os.path.exists(self.state_dir):
            left.append(f"directory {self.state_dir}")
        return left


def _tbf_arguments(rate: str) -> list[str]:
    # The bucket holds 1 ms of traffic, at least 128 KiB (one GSO segment of 64 KiB must fit, or
    # tbf drops it); a queue of up to 100 ms absorbs the bursts TCP sends. A larger bucket lets a
    # link that idled (a DDP step's compute) send its first bytes at memory speed: with 4 ms
    # (500 KB at 1 Gbit) a 2-host DDP step ran up to 4 ms faster than any 1 Gbit NIC could.
    burst = max(int(rate_bits(rate) / 8 * 0.001), 128 * 1024)
    return ["rate", rate, "burst", str(burst), "latency", "100ms"]


def _claim_run_dir() -> tuple[str, str]:
    for _ in range(100):
        run_id = secrets.token_hex(2)
        path = os.path.join(system.STATE_ROOT, run_id)
        if any(n.startswith(sweep.link_prefix(run_id)) for n in system.link_names()):
            continue
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return run_id, path
    raise ClusterError("no free run id")


def _free_subnet(run_id: str) -> str:
    """A /24 that no address, route or other rig on this machine uses."""
    used = system.used_networks()
    for other in os.listdir(system.STATE_ROOT):
        if other == run_id:
            continue
        try:
            with open(os.path.join(system.STATE_ROOT, other, "state.json")) as f:
                subnet = json.load(f).get("subnet")
        except (OSError, ValueError):
            continue
        if subnet:
            used.append(ipaddress.ip_network(subnet))
    for text in _SUBNET_CANDIDATES:
        candidate = ipaddress.ip_network(text)
        if not any(candidate.overlaps(u) for u in used):
            return text
    raise ClusterError("no free /24 inside 198.18.0.0/15")


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)

