"""Multi-node jobs started from one machine: `--hosts h1:4,h2:4` or `--hostfile FILE`.

Node 0 is the first host. When it is this machine its launcher runs in this process (and serves
the coordinator); every other node's launcher is started through ssh (`--ssh-command` replaces
`ssh`, e.g. with a wrapper), as

    ssh HOST 'cd CWD && exec env VARS PYTHON -m launcher --node-rank I ... --secret-stdin ...'

The job secret travels on ssh's stdin, never on a command line or in a log; the remote launcher
keeps reading that stdin, and its end (the driver or the ssh client died) stops the node. Each
remote launcher's output, already rank-prefixed, is relayed line by line.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import replace

from . import output
from .config import THREAD_VARS, LaunchConfig, python_executable
from .net import DEFAULT_MASTER_PORT, free_port, is_loopback
from .coordinator import CoordinatorError
from .local import BOOTSTRAP
from .process import describe_status, signal_group
from .signals import SignalState

__all__ = ["parse_hosts", "parse_hostfile", "is_local_host", "remote_command", "NodeSpec",
           "plan_nodes", "run_hosts", "FORWARDED_ENV_PREFIXES"]

# Variables the remote launchers get from the driver's environment (ssh forwards none).
FORWARDED_ENV_PREFIXES = ("DISTTORCH_", "NCCL_", "TORCH_", "CUDA_LAUNCH_BLOCKING")
_NOT_FORWARDED = {"DISTTORCH_SECRET", "DISTTORCH_LAUNCHER_PID", "DISTTORCH_ERROR_FILE"}
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


class NodeSpec:
    """One node of a `--hosts` job: its host, node rank, worker count, and how it starts."""

    def __init__(self, node_rank: int, host: str, nproc: int, local: bool) -> None:
        self.node_rank, self.host, self.nproc, self.local = node_rank, host, nproc, local


def plan_nodes(cfg: LaunchConfig) -> list[NodeSpec]:
    """Node 0 runs here when its host is this machine; every other node goes through ssh."""
    assert cfg.hosts
    nodes = []
    for node_rank, (host, slots) in enumerate(cfg.hosts):
        local = node_rank == 0 and is_local_host(host)
        nodes.append(NodeSpec(node_rank, host, slots or cfg.nproc_per_node, local))
    return nodes


def _forwarded_env(env: dict[str, str]) -> dict[str, str]:
    forwarded = {k: v for k, v in env.items()
                 if k.startswith(FORWARDED_ENV_PREFIXES) and k not in _NOT_FORWARDED}
    for var in (*THREAD_VARS, "PYTHONUNBUFFERED"):
        if var in env:
            forwarded[var] = env[var]
    # The remote interpreter must find this launcher even from a plain source checkout.
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = [package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    forwarded["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    return forwarded


def remote_command(cfg: LaunchConfig, node: NodeSpec, *, nnodes: int, master_addr: str,
                   master_port: int, control_port: int, run_id: str,
                   env: dict[str, str] | None = None, cwd: str | None = None) -> str:
    """The shell command line that starts `node`'s launcher on its host (no secret in it)."""
    env = dict(os.environ if env is None else env)
    args = [python_executable(), "-m", "launcher",
            "--nnodes", str(nnodes), "--node-rank", str(node.node_rank),
            "--nproc-per-node", str(node.nproc), "--master-addr", master_addr,
            "--master-port", str(master_port), "--control-port", str(control_port),
            "--run-id", run_id, "--max-restarts", str(cfg.max_restarts),
            "--monitor-interval", f"{cfg.monitor_interval:g}",
            "--grace-period", f"{cfg.grace_period:g}",
            "--join-timeout", f"{cfg.join_timeout:g}",
            "--node-timeout", f"{cfg.node_timeout:g}",
            "--role", cfg.role, "--scheduler", "none", "--secret-stdin"]
    if cfg.log_dir:
        args += ["--log-dir", os.path.abspath(cfg.log_dir)]
    for option, spec in (("--redirects", cfg.redirects), ("--tee", cfg.tee)):
        if spec.any():
            args += [option, _spec_text(spec)]
    if cfg.local_ranks_filter is not None:
        args += ["--local-ranks-filter", ",".join(map(str, sorted(cfg.local_ranks_filter)))]
    if cfg.isolate_gpus:
        args.append("--isolate-gpus")
    if cfg.run_module:
        args.append("--module")
    if cfg.no_python:
        args.append("--no-python")
    args += [cfg.entrypoint, *cfg.entrypoint_args]
    assignments = [f"{k}={v}" for k, v in sorted(_forwarded_env(env).items())]
    return (f"cd {shlex.quote(cwd or os.getcwd())} && exec env "
            + " ".join(shlex.quote(a) for a in assignments + args))


def _spec_text(spec) -> str:
    if spec.per_rank:
        return ",".join(f"{r}:{v}" for r, v in sorted(spec.per_rank.items()))
    return str(spec.default)


def _choose_master(cfg: LaunchConfig, nodes: list[NodeSpec], master_given: bool) -> str:
    if master_given:
        return cfg.master_addr
    first = nodes[0].host
    if nodes[0].local and is_loopback(first) and any(not is_loopback(n.host) for n in nodes[1:]):
        return socket.gethostname()  # 'localhost' would point every remote node at itself
    return first


class _SshNode:
    """A running `ssh HOST launcher` with its output relay and exit watcher."""

    def __init__(self, node: NodeSpec, argv: list[str], secret: str) -> None:
        self.node = node
        env = dict(os.environ)
        env["DISTTORCH_LAUNCHER_PID"] = str(os.getpid())
        env.pop("DISTTORCH_SECRET", None)
        # Through the bootstrap's exec mode: ssh gets the parent-death signal, so a driver
        # killed with SIGKILL takes its ssh clients (and hence the remote launchers) along.
        self.proc = subprocess.Popen(
            [python_executable(), BOOTSTRAP, "--exec", *argv], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            self.proc.stdin.write(secret.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # ssh already ended (e.g. host unreachable); its exit status tells the story
        self.threads = [
            output.start_pump(self.proc.stdout, prefix=b"", console="stdout", log_path=None),
            output.start_pump(self.proc.stderr, prefix=b"", console="stderr", log_path=None),
        ]
        self.returncode: int | None = None
        self.exited = threading.Event()
        threading.Thread(target=self._wait, daemon=True, name="disttorch-ssh-wait").start()

    def _wait(self) -> None:
        self.returncode = self.proc.wait()
        self.exited.set()

    def hang_up(self) -> None:
        """Close the remote launcher's stdin: it stops its workers and exits."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def stop(self, grace: float) -> None:
        self.hang_up()
        if not self.exited.wait(grace):
            signal_group(self.proc.pid, signal.SIGTERM)
            if not self.exited.wait(2.0):
                signal_group(self.proc.pid, signal.SIGKILL)
                self.exited.wait(2.0)
        for t in self.threads:
            t.join(timeout=1.0)


def run_hosts(cfg: LaunchConfig, *, master_given: bool) -> int:
    """Start a `--hosts` / `--hostfile` job from this machine; returns the exit status."""
    from .multinode import make_coordinator, run_node

    nodes = plan_nodes(cfg)
    nnodes = len(nodes)
    master_addr = _choose_master(cfg, nodes, master_given)
    bind = "127.0.0.1" if is_loopback(master_addr) else ""
    if cfg.master_port:
        master_port = cfg.master_port
    else:
        master_port = free_port(bind or "0.0.0.0") if nodes[0].local else DEFAULT_MASTER_PORT
    if cfg.control_port:
        control_port = cfg.control_port
    elif nodes[0].local and not cfg.master_port:
        control_port = free_port(bind or "0.0.0.0")
    else:
        control_port = master_port + 1
    run_id = cfg.run_id or _token(4)
    secret = cfg.secret or _token(32)
    commands = {n.node_rank: remote_command(cfg, n, nnodes=nnodes, master_addr=master_addr,
                                            master_port=master_port, control_port=control_port,
                                            run_id=run_id)
                for n in nodes if not n.local}
    if cfg.dry_run:
        from .dryrun import describe_hosts

        output.print_text(describe_hosts(cfg, nodes, commands, master_addr=master_addr,
                                         master_port=master_port, control_port=control_port,
                                         run_id=run_id))
        return 0

    node_cfg = replace(cfg, hosts=None, master_addr=master_addr, master_port=master_port,
                       control_port=control_port, min_nodes=nnodes, max_nodes=nnodes,
                       run_id=run_id)
    coordinator = None
    if nodes[0].local:
        node_cfg = replace(node_cfg, node_rank=0, nproc_per_node=nodes[0].nproc)
        try:
            coordinator = make_coordinator(node_cfg, master_port=master_port, secret=secret,
                                           job_secret=secret, run_id=run_id)
        except CoordinatorError as exc:
            output.say(str(exc))
            return 1
    ssh_nodes: list[_SshNode] = []
    try:
        for n in nodes:
            if n.local:
                continue
            argv = [*cfg.ssh_command, n.host, commands[n.node_rank]]
            try:
                ssh_nodes.append(_SshNode(n, argv, secret))
            except OSError as exc:
                output.say(f"cannot start {cfg.ssh_command[0]!r} for node {n.node_rank} "
                           f"(host {n.host}): {exc}")
                return 1
            threading.Thread(target=_watch_ssh, args=(ssh_nodes[-1], coordinator),
                             daemon=True).start()
        if coordinator is not None:
            code = run_node(node_cfg, secret=secret, run_id=run_id, coordinator=coordinator)
        else:
            code = _wait_for_ssh(ssh_nodes, cfg.grace_period)
        for s in ssh_nodes:
            # Remote launchers exit right after the finish; wait for them, then hang up.
            s.exited.wait(cfg.grace_period + 5.0)
        return code
    finally:
        for s in ssh_nodes:
            s.stop(cfg.grace_period)
        if coordinator is not None:
            coordinator.close()


def _watch_ssh(node: _SshNode, coordinator) -> None:
    node.exited.wait()
    if node.returncode != 0 and coordinator is not None:
        coordinator.report_external_loss(
            node.node.node_rank, node.node.host,
            f"ssh to {node.node.host} ended with {describe_status(node.returncode)}")


def _wait_for_ssh(ssh_nodes: list[_SshNode], grace: float) -> int:
    """Node 0 is remote too: relay until every ssh ends; forward our signals as hang-ups."""
    signals = SignalState().install()
    try:
        while not all(s.exited.is_set() for s in ssh_nodes):
            time.sleep(0.1)
            if signals.received is not None:
                output.say(f"received signal {signals.received}: stopping every node")
                for s in ssh_nodes:
                    s.stop(grace)
                return signals.exit_code
        codes = [s.returncode for s in ssh_nodes]
        return next((c if c > 0 else 1 for c in codes if c != 0), 0)
    finally:
        signals.restore()


def _token(nbytes: int) -> str:
    import secrets

    return secrets.token_hex(nbytes)
