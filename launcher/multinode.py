"""One node of a multi-node job: join node 0's coordinator, run the attempts it orders.

Every node (node 0 included) connects to the coordinator's control port, then loops: on `start`
it spawns its workers with the rank offset it was given and supervises them; it stops them when
a worker fails, when node 0 says `stop`, when the launcher is signalled, or when node 0 is lost;
it reports the attempt with `done` and waits for the next `start` or the `finish`.
"""
from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
from typing import Callable

from . import output
from .config import LaunchConfig
from .control import Connection, ControlError, client_handshake
from .coordinator import Coordinator, CoordinatorError
from .local import LaunchError, RunFiles, WorkerGroup, plan_workers, write_report
from .net import DEFAULT_MASTER_PORT
from .process import signal_name
from .report import WorkerFailure
from .signals import SignalState, dump_local_workers

__all__ = ["ControlClient", "run_node", "make_coordinator", "control_port_of",
           "read_secret_from_stdin", "stop_when_stdin_closes",
           "MISSING_SECRET"]

_CONNECT_RETRY = 0.2
_HANDSHAKE_TIMEOUT = 10.0
_PING_PERIOD = 1.0
_FINISH_WAIT_SLACK = 20.0

MISSING_SECRET = (
    "a multi-node job needs DISTTORCH_SECRET: export the same secret on every node (make one "
    "with `disttorch-run --new-secret`), or start all nodes from one machine with --hosts, "
    "which sends it over ssh's stdin")


def control_port_of(cfg: LaunchConfig, master_port: int) -> int:
    """The control channel's port: --control-port, else MASTER_PORT + 1."""
    return cfg.control_port or master_port + 1


class ControlClient:
    """A node's connection to the coordinator: an inbox of messages and stop requests."""

    def __init__(self, *, host: str, port: int, secret: str, info: dict,
                 node_timeout: float) -> None:
        self.host, self.port = host, port
        self.secret = secret
        self.info = info
        self.node_timeout = node_timeout
        self.inbox: queue.Queue = queue.Queue()
        self.lost_reason: str | None = None
        self._stops: dict[int, str] = {}
        self._finished = False
        self._last_seen = time.monotonic()
        self._conn: Connection | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self, timeout: float, abort: Callable[[], bool]) -> dict | None:
        """Join the coordinator, retrying until it listens; returns its welcome.

        None when `abort()` became true first. Raises ControlError on rejection or timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            if abort():
                return None
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2.0)
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise ControlError(f"node 0's control channel at {self.address} did not "
                                       f"answer within {timeout:g} s: {exc}") from None
                time.sleep(_CONNECT_RETRY)
        conn = Connection(sock, self.address)
        conn.settimeout(_HANDSHAKE_TIMEOUT)
        try:
            welcome = client_handshake(conn, self.secret, self.info)
        except (ControlError, OSError) as exc:
            conn.close()
            raise ControlError(str(exc)) from None
        conn.settimeout(None)
        self._conn = conn
        self._last_seen = time.monotonic()
        threading.Thread(target=self._read, name="disttorch-control-read", daemon=True).start()
        threading.Thread(target=self._heartbeat, name="disttorch-control-ping",
                         daemon=True).start()
        return welcome

    def _lose(self, reason: str) -> None:
        if self.lost_reason is None and not self._finished:
            self.lost_reason = reason
            self.inbox.put({"type": "lost", "reason": reason})

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except ControlError as exc:
                return self._lose(str(exc))
            if message is None:
                return self._lose("the control connection closed (node 0's launcher exited "
                                  "or was killed)")
            self._last_seen = time.monotonic()
            kind = message["type"]
            if kind == "ping":
                continue
            if kind == "dump":  # some node asked for every worker's stack
                dump_local_workers()
                continue
            if kind == "stop" and isinstance(message.get("attempt"), int):
                self._stops[message["attempt"]] = str(message.get("reason", "stop requested"))
            if kind == "finish":
                self._finished = True
            self.inbox.put(message)
            if self._finished:
                return

    def _heartbeat(self) -> None:
        while not self._finished and self.lost_reason is None:
            time.sleep(_PING_PERIOD)
            if time.monotonic() - self._last_seen > self.node_timeout:
                return self._lose(f"node 0 sent nothing for {self.node_timeout:g} s (host down "
                                  f"or network lost)")
            try:
                self._conn.send({"type": "ping"})
            except ControlError as exc:
                return self._lose(str(exc))

    def stop_for(self, attempt: int) -> str | None:
        """Why this node must stop `attempt` now (node 0 said so, or node 0 is lost)."""
        if self.lost_reason is not None:
            return f"lost node 0 ({self.address}): {self.lost_reason}"
        return self._stops.get(attempt)

    def send(self, message: dict) -> None:
        try:
            self._conn.send(message)
        except ControlError as exc:
            self._lose(str(exc))

    def close(self) -> None:
        self._finished = True
        if self._conn is not None:
            self._conn.close()


def read_secret_from_stdin() -> str:
    """The first stdin line is the job secret (sent by the ssh engine, engines/ssh.py).

    Read with os.read, byte by byte up to the newline: a buffered reader would swallow input
    past the line, and a daemon thread blocked inside one aborts interpreter shutdown.
    """
    data = b""
    while not data.endswith(b"\n") and len(data) < 4096:
        chunk = os.read(0, 1)
        if not chunk:
            break
        data += chunk
    secret = data.strip().decode("ascii", "replace")
    if not secret:
        raise ValueError("--secret-stdin: no secret on stdin")
    return secret


def _watch_stdin(event: threading.Event) -> None:
    # The driver keeps our stdin open for as long as it runs; its end means it is gone.
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    event.set()


def stop_when_stdin_closes() -> Callable[[], str | None]:
    """An `external_stop` for `run_node`: once the ssh driver's end of our stdin closes, it
    returns why, and the node stops its workers."""
    hung_up = threading.Event()
    threading.Thread(target=_watch_stdin, args=(hung_up,), daemon=True,
                     name="disttorch-stdin-watch").start()

    def driver_gone() -> str | None:
        return "the driver's connection (ssh stdin) closed" if hung_up.is_set() else None

    return driver_gone


def make_coordinator(cfg: LaunchConfig, *, master_port: int, secret: str, run_id: str,
                     job_secret: str | None = None) -> Coordinator:
    """Node 0's coordinator for `cfg`, bound and serving; raises CoordinatorError.

    `secret` is the job secret every node holds; `job_secret`, when given, must be the same
    (nothing else is ever handed out)."""
    if job_secret is not None and job_secret != secret:
        raise CoordinatorError("the job secret must be the secret the nodes share")
    coordinator = Coordinator(
        port=control_port_of(cfg, master_port), master_addr=cfg.master_addr, secret=secret,
        run_id=run_id, entrypoint=cfg.entrypoint,
        min_nodes=cfg.min_nodes, max_nodes=cfg.max_nodes, max_restarts=cfg.max_restarts,
        join_timeout=cfg.join_timeout, last_call=cfg.last_call, node_timeout=cfg.node_timeout,
        grace_period=cfg.grace_period)
    coordinator.start()
    return coordinator


def run_node(cfg: LaunchConfig, *, secret: str | None, run_id: str | None,
             coordinator: Coordinator | None = None,
             external_stop: Callable[[], str | None] | None = None) -> int:
    """Run this node's part of a multi-node job; returns the launcher's exit status.

    `secret` is the secret shared by all nodes (DISTTORCH_SECRET, or sent by the ssh driver);
    without one the node refuses to start: nothing secret is ever handed to a joiner.
    Node 0 (`cfg.node_rank == 0`) serves the coordinator unless one is passed in.
    `external_stop()` names a reason to stop this node (e.g. the ssh driver went away).
    """
    signals = SignalState().install()
    output.set_node_tag(cfg.node_rank)
    master_port = cfg.master_port or DEFAULT_MASTER_PORT
    own_coordinator = False
    client: ControlClient | None = None
    files: RunFiles | None = None
    try:
        if not secret:
            output.say(MISSING_SECRET)
            return 2
        if coordinator is None and cfg.node_rank == 0:
            run_id = run_id or _new_run_id()
            try:
                coordinator = make_coordinator(cfg, master_port=master_port, secret=secret,
                                               run_id=run_id)
            except CoordinatorError as exc:
                output.say(str(exc))
                return 1
            own_coordinator = True
        client = ControlClient(
            host=cfg.master_addr, port=control_port_of(cfg, master_port), secret=secret,
            node_timeout=cfg.node_timeout,
            info={"node_rank": cfg.node_rank, "host": socket.gethostname(), "pid": os.getpid(),
                  "nproc": cfg.nproc_per_node, "run_id": run_id, "min_nodes": cfg.min_nodes,
                  "max_nodes": cfg.max_nodes})
        try:
            welcome = client.connect(cfg.join_timeout, abort=lambda: signals.received is not None
                                     or bool(external_stop and external_stop()))
        except ControlError as exc:
            output.say(f"cannot join node 0: {exc}")
            return 1
        if welcome is None:
            output.say("stopped while joining node 0: "
                       + (f"received {signal_name(signals.received)}" if signals.received
                          else str(external_stop and external_stop())))
            return signals.exit_code if signals.received else 1
        job_secret = secret
        run_id = str(welcome.get("run_id"))
        signals.relay_dumps = True  # SIGUSR1 reaches every node's workers through node 0
        threading.Thread(target=_relay_dumps, args=(signals, client), daemon=True,
                         name="disttorch-dump-relay").start()
        files = RunFiles(cfg.log_dir, run_id, need_logs=cfg.redirects.any() or cfg.tee.any())
        agent = _NodeAgent(cfg, client, signals, files, master_port=master_port,
                           secret=job_secret, run_id=run_id, is_node0=coordinator is not None,
                           external_stop=external_stop)
        return agent.loop()
    finally:
        if client is not None:
            client.close()
        if own_coordinator and coordinator is not None:
            coordinator.close()
        if files is not None:
            files.cleanup()
        signals.restore()
        output.set_node_tag(None)


class _NodeAgent:
    """The main-thread loop of one node (spawning must happen on the main thread)."""

    def __init__(self, cfg: LaunchConfig, client: ControlClient, signals: SignalState,
                 files: RunFiles, *, master_port: int, secret: str, run_id: str, is_node0: bool,
                 external_stop: Callable[[], str | None] | None) -> None:
        self.cfg, self.client, self.signals, self.files = cfg, client, signals, files
        self.master_port, self.secret, self.run_id = master_port, secret, run_id
        self.is_node0 = is_node0
        self.external_stop = external_stop
        self.host = socket.gethostname()
        self.leaving_since: float | None = None

    def loop(self) -> int:
        while True:
            try:
                message = self.client.inbox.get(timeout=self.cfg.monitor_interval)
            except queue.Empty:
                message = None
            if message is None:
                code = self._idle_checks()
                if code is not None:
                    return code
                continue
            kind = message["type"]
            if kind == "start":
                code = self._run_attempt(message)
                if code is not None:
                    return code
            elif kind == "finish":
                return self._on_finish(message)
            elif kind == "lost":
                output.say(f"lost node 0 ({self.client.address}): {message['reason']}")
                return 1
            elif kind == "reject":
                output.say(f"node 0 rejected this node: {message.get('reason')}")
                return 1

    def _idle_checks(self) -> int | None:
        if self.leaving_since is not None:
            # Node 0 signalled: wait (bounded) for the coordinator's finish and its report.
            if time.monotonic() - self.leaving_since > self.cfg.grace_period + _FINISH_WAIT_SLACK:
                return self.signals.exit_code
            return None
        if self.signals.received is not None:
            output.say(f"received {signal_name(self.signals.received)} with no workers running")
            return self.signals.exit_code
        reason = self.external_stop() if self.external_stop else None
        if reason:
            output.say(f"stopping: {reason}")
            return 1
        return None

    def _stop_check(self, attempt: int):
        request = self.signals.stop_request()
        if request is not None:
            return request
        reason = self.client.stop_for(attempt)
        if reason is None and self.external_stop is not None:
            reason = self.external_stop()
        return (reason, signal.SIGTERM) if reason else None

    def _run_attempt(self, start: dict) -> int | None:
        attempt = int(start["attempt"])
        node_rank = int(start["node_rank"])
        output.set_node_tag(node_rank)
        plans = plan_workers(
            self.cfg, files=self.files, attempt=attempt,
            restart_count=int(start["restart_count"]), rank_offset=int(start["rank_offset"]),
            world_size=int(start["world_size"]), node_rank=node_rank,
            nnodes=int(start["nnodes"]), master_port=self.master_port, secret=self.secret,
            run_id=self.run_id)
        cfg = self.cfg
        cfg_max = int(start.get("max_restarts", cfg.max_restarts))
        for plan in plans:  # node 0 decides restarts; workers see its budget
            plan.env["TORCHELASTIC_MAX_RESTARTS"] = str(cfg_max)
        group = WorkerGroup(plans, node_rank=node_rank, host=self.host,
                            grace_period=cfg.grace_period, monitor_interval=cfg.monitor_interval,
                            start_method=cfg.start_method)
        try:
            group.start()
        except LaunchError as exc:
            failure = WorkerFailure(rank=plans[0].rank, local_rank=0, node_rank=node_rank,
                                    host=self.host, pid=0, returncode=127, time=time.time(),
                                    exc_type="LaunchError", message=str(exc))
            self.client.send({"type": "done", "attempt": attempt, "status": "failed",
                              "failures": [failure.to_json()], "stopped": []})
            return None
        result = group.supervise(lambda: self._stop_check(attempt), self.signals.hurry)
        leaving = self.signals.received is not None
        self.client.send({
            "type": "done", "attempt": attempt, "status": result.status,
            "failures": [f.to_json() for f in result.failures], "stopped": result.stopped,
            "early_exits": result.early_exits, "stacks": result.stacks,
            "reason": result.stop_reason, "leaving": leaving,
            "signal": signal_name(self.signals.received) if leaving else None})
        if self.client.lost_reason is not None:
            output.say(f"lost node 0 ({self.client.address}): {self.client.lost_reason}; "
                       f"stopped {len(plans)} workers")
            return 1
        if leaving:
            output.say(f"{result.stop_reason}: stopped {len(plans)} workers")
            if not self.is_node0:
                return self.signals.exit_code
            self.leaving_since = time.monotonic()
        elif result.status == "stopped" and self.external_stop and self.external_stop():
            output.say(f"{result.stop_reason}: stopped {len(plans)} workers")
            return 1
        return None

    def _on_finish(self, message: dict) -> int:
        code = int(message.get("exit_code", 1))
        if self.is_node0 and message.get("report"):
            write_report(str(message["report"]))
        elif code != 0:
            output.say(f"{message.get('summary')} (node 0 prints the full report)")
        if self.leaving_since is not None:
            return self.signals.exit_code
        return code


def _relay_dumps(signals: SignalState, client: ControlClient) -> None:
    """Pass each SIGUSR1 this launcher got to node 0, which asks every node for its stacks."""
    seen = 0
    while not client._finished and client.lost_reason is None:
        if signals.dump_requests > seen:
            seen = signals.dump_requests
            client.send({"type": "dump"})
        time.sleep(0.05)
    signals.relay_dumps = False


def _new_run_id() -> str:
    import secrets

    return secrets.token_hex(4)
