"""The ssh engine: the other nodes of a `--hosts h1:4,h2:4` / `--hostfile FILE` job, each one
launcher started through ssh, behind the engine interface (start, poll, signal, stop).

Node 0 is the first host. When it is this machine its launcher runs in this process (and serves
the coordinator); every other node's launcher is started through ssh (`--ssh-command` replaces
`ssh`, e.g. with a wrapper), as

    ssh HOST 'cd CWD && exec env VARS PYTHON -m disttorch_launcher --node-rank I ... --secret-stdin ...'

The job secret travels on ssh's stdin, never on a command line or in a log; the remote launcher
keeps reading that stdin, and its end (the driver or the ssh client died) stops the node. Each
remote launcher's output, already rank-prefixed, is relayed line by line.

`SshEngine`'s units are node launchers, not ranks: the ranks' own supervision (first failure
stops all, restarts) is node 0's coordinator's job (coordinator.py / multinode.py); the engine
starts the node launchers, tells which ended, and stops them. Host lists are parsed in
`disttorch_launcher.remote`.
"""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import replace

from .. import output
from ..config import THREAD_VARS, LaunchConfig, python_executable
from ..coordinator import CoordinatorError
from ..local import BOOTSTRAP
from ..net import DEFAULT_MASTER_PORT, free_port, is_loopback
from ..process import describe_status, signal_group
from ..remote import is_local_host
from ..signals import SignalState
from . import RankExit

__all__ = ["NodeSpec", "plan_nodes", "remote_command", "SshEngine", "SshStartError", "run_hosts",
           "FORWARDED_ENV_PREFIXES"]

# Variables the remote launchers get from the driver's environment (ssh forwards none).
FORWARDED_ENV_PREFIXES = ("DISTTORCH_", "NCCL_", "TORCH_", "CUDA_LAUNCH_BLOCKING")
_NOT_FORWARDED = {"DISTTORCH_SECRET", "DISTTORCH_LAUNCHER_PID", "DISTTORCH_ERROR_FILE"}


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
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = [package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    forwarded["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    return forwarded


def remote_command(cfg: LaunchConfig, node: NodeSpec, *, nnodes: int, master_addr: str,
                   master_port: int, control_port: int, run_id: str,
                   env: dict[str, str] | None = None, cwd: str | None = None) -> str:
    """The shell command line that starts `node`'s launcher on its host (no secret in it)."""
    env = dict(os.environ if env is None else env)
    args = [python_executable(), "-m", "disttorch_launcher",
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
        self.exit_time: float | None = None
        self.exited = threading.Event()
        threading.Thread(target=self._wait, daemon=True, name="disttorch-ssh-wait").start()

    def _wait(self) -> None:
        self.returncode = self.proc.wait()
        self.exit_time = time.time()
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


class SshStartError(RuntimeError):
    """The ssh command itself could not be started for a node (not found, not executable)."""


class SshEngine:
    """One launcher per remote node, each behind its own `ssh HOST ...` client.

    Unit `i` of the engine (`RankExit.rank`) is the i-th remote node; `RankExit.node_rank` is its
    node rank in the job. `commands` maps node rank to the remote shell command line
    (`remote_command`); the secret is written on each ssh's stdin, which then stays open: its
    end is how the remote launcher learns that the driver is gone or wants it to stop.
    """

    def __init__(self, nodes: list[NodeSpec], commands: dict[int, str], *,
                 ssh_command: list[str], secret: str) -> None:
        self.nodes = [n for n in nodes if not n.local]
        missing = [n.node_rank for n in self.nodes if n.node_rank not in commands]
        if missing:
            raise ValueError(f"SshEngine: no command for node rank(s) {missing}")
        if not ssh_command:
            raise ValueError("SshEngine: ssh_command is empty")
        self.commands = commands
        self.ssh_command = list(ssh_command)
        self.secret = secret
        self.world_size = len(self.nodes)
        self.running: list[_SshNode] = []
        self._reported: set[int] = set()
        self._lock = threading.Lock()

    def start(self, attempt: int) -> None:
        """Start every remote node's launcher (a fresh ssh per node and attempt).

        Raises SshStartError naming the node when the ssh command cannot be executed; the nodes
        started before it stay in `running`, for `stop` to end.
        """
        with self._lock:
            self.running, self._reported = [], set()
        for node in self.nodes:
            argv = [*self.ssh_command, node.host, self.commands[node.node_rank]]
            try:
                started = _SshNode(node, argv, self.secret)
            except OSError as exc:
                raise SshStartError(f"cannot start {self.ssh_command[0]!r} for node "
                                    f"{node.node_rank} (host {node.host}): {exc}") from None
            with self._lock:
                self.running.append(started)

    def poll(self) -> list[RankExit]:
        """The node launchers whose ssh ended since the last call."""
        with self._lock:
            ended = [(i, s) for i, s in enumerate(self.running)
                     if s.exited.is_set() and i not in self._reported]
            self._reported.update(i for i, _ in ended)
        return [self._exit(i, s) for i, s in ended]

    def signal(self, sig: int) -> None:
        """Ask every remote node to stop.

        A signal cannot cross ssh (the client has no tty to send it through), so any `sig` is
        forwarded as the agreed stop order: the remote launcher's stdin closes, and it stops its
        workers as if it had been signalled.
        """
        for s in list(self.running):
            s.hang_up()

    def stop(self, grace: float) -> list[RankExit]:
        """Hang up every node, SIGTERM its ssh after `grace` s, SIGKILL 2 s later."""
        for s in list(self.running):
            s.stop(grace)
        return self.poll()

    def wait(self, timeout: float) -> bool:
        """Whether every node launcher ended within `timeout` seconds (counted per node)."""
        return all(s.exited.wait(timeout) for s in list(self.running))

    def all_ended(self) -> bool:
        return all(s.exited.is_set() for s in list(self.running))

    def _exit(self, index: int, s: _SshNode) -> RankExit:
        code = s.returncode
        cause = None if code == 0 else f"ssh to {s.node.host} ended with {describe_status(code)}"
        return RankExit(index, 0, s.node.node_rank, s.node.host, s.proc.pid, code,
                        s.exit_time or time.time(), cause)


def run_hosts(cfg: LaunchConfig, *, master_given: bool) -> int:
    """Start a `--hosts` / `--hostfile` job from this machine; returns the exit status."""
    from ..multinode import make_coordinator, run_node

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
        from ..dryrun import describe_hosts

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
    engine = SshEngine(nodes, commands, ssh_command=cfg.ssh_command, secret=secret)
    done = threading.Event()
    try:
        try:
            engine.start(0)
        except SshStartError as exc:
            output.say(str(exc))
            return 1
        if coordinator is not None:
            threading.Thread(target=_report_lost_nodes, args=(engine, coordinator, done),
                             daemon=True, name="disttorch-ssh-watch").start()
            code = run_node(node_cfg, secret=secret, run_id=run_id, coordinator=coordinator)
        else:
            code = _wait_for_nodes(engine, cfg.grace_period)
        # Remote launchers exit right after the finish; wait for them, then hang up.
        engine.wait(cfg.grace_period + 5.0)
        return code
    finally:
        done.set()
        engine.stop(cfg.grace_period)
        if coordinator is not None:
            coordinator.close()


def _report_lost_nodes(engine: SshEngine, coordinator, done: threading.Event) -> None:
    """Node 0 is here: an ssh that ends badly is a lost node for the coordinator."""
    while not done.is_set():
        for exit_ in engine.poll():
            if exit_.failed:
                coordinator.report_external_loss(exit_.node_rank, exit_.host, exit_.cause)
        if engine.all_ended():
            return
        done.wait(0.1)


def _wait_for_nodes(engine: SshEngine, grace: float) -> int:
    """Node 0 is remote too: relay until every ssh ends; forward our signals as hang-ups."""
    signals = SignalState().install()
    try:
        while not engine.all_ended():
            time.sleep(0.1)
            if signals.received is not None:
                output.say(f"received signal {signals.received}: stopping every node")
                engine.signal(signals.received)
                engine.stop(grace)
                return signals.exit_code
        codes = [s.returncode for s in engine.running]
        return next((c if c > 0 else 1 for c in codes if c != 0), 0)
    finally:
        signals.restore()


def _token(nbytes: int) -> str:
    import secrets

    return secrets.token_hex(nbytes)
