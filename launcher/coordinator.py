"""Node 0's coordinator: the rendezvous of the node launchers, and their common decisions.

It runs as threads inside node 0's launcher and serves the control channel (see control.py).
Every node's launcher, node 0's own included, connects as a client. The coordinator

* waits for the nodes (all `--nnodes N`, or MIN..MAX with a last call for latecomers), assigns
  node ranks and rank offsets, and sends every node `start` for attempt k;
* when a node reports a failed worker, or a node is lost (connection closed, heartbeats stop,
  its launcher was signalled), sends `stop` to the others and waits until all have stopped;
* then restarts every node together (`--max-restarts`, node 0's value) or sends `finish` with
  the one failure report, which node 0 prints.

All state lives in one loop thread; connection threads only post events to it.
"""
from __future__ import annotations

import queue
import socket
import threading
import time
from dataclasses import dataclass

from . import output
from .config import report_period
from .net import is_loopback
from .control import Connection, ControlError, server_handshake
from .report import NodeLoss, WorkerFailure, first_event, format_report

__all__ = ["Coordinator", "CoordinatorError"]

_PING_PERIOD = 1.0
_HANDSHAKE_TIMEOUT = 10.0
_STOP_SLACK = 15.0  # beyond the grace period, how long a node may take to report it stopped


class CoordinatorError(RuntimeError):
    """The control port could not be served (e.g. already in use)."""


@dataclass(eq=False)
class _Member:
    seq: int
    conn: Connection
    requested_rank: int | None
    host: str
    pid: int
    nproc: int
    last_seen: float
    node_rank: int = -1
    done: dict | None = None
    lost: bool = False
    leaving: bool = False


class Coordinator:
    """Serves the control channel on `bind_host:port` and drives the nodes' attempts."""

    def __init__(self, *, port: int, master_addr: str, secret: str,
                 run_id: str, entrypoint: str, min_nodes: int, max_nodes: int,
                 max_restarts: int, join_timeout: float, last_call: float, node_timeout: float,
                 grace_period: float) -> None:
        self.port = port
        self.bind_host = "127.0.0.1" if is_loopback(master_addr) else ""
        if not secret:
            raise CoordinatorError("a multi-node job needs DISTTORCH_SECRET (the key every node "
                                   "proves it holds)")
        self.secret = secret
        self.run_id = run_id
        self.entrypoint = entrypoint
        self.min_nodes, self.max_nodes = min_nodes, max_nodes
        self.max_restarts = max_restarts
        self.join_timeout = join_timeout
        self.last_call = last_call
        self.node_timeout = node_timeout
        self.grace_period = grace_period
        self.finished = threading.Event()
        self.exit_code: int | None = None
        self._events: queue.Queue = queue.Queue()
        self._listener: socket.socket | None = None
        self._handlers: list[threading.Thread] = []
        # Held while `finish` goes out: node 0's own agent gets it first and may close the
        # coordinator while the other nodes' copies are still being sent.
        self._finish_lock = threading.Lock()
        self._seq = 0
        self._members: list[_Member] = []  # every connected, accepted node
        self._round: list[_Member] = []
        self._pending: list[_Member] = []
        self._phase = "rendezvous"
        self._attempt = -1
        self._restart_count = 0
        self._failures: list[WorkerFailure] = []
        self._losses: list[NodeLoss] = []
        self._stopped: list[str] = []
        self._early_exits: list[str] = []
        self._stacks: list[str] = []
        self._membership_change = False
        self._created = time.monotonic()
        self.report_period = report_period()
        self._next_join_report = self._created + self.report_period
        self._last_call_deadline: float | None = None
        self._stop_deadline: float | None = None
        self._started_at = time.time()

    # ----------------------------------------------------------------- public API
    def start(self) -> None:
        """Bind the control port and start serving; raises CoordinatorError when it is taken."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.bind_host, self.port))
        except OSError as exc:
            sock.close()
            raise CoordinatorError(
                f"cannot serve the control channel on {self.bind_host or '*'}:{self.port}: "
                f"{exc.strerror or exc} (choose another with --control-port)") from None
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept_loop, name="disttorch-control-accept",
                         daemon=True).start()
        threading.Thread(target=self._loop, name="disttorch-coordinator", daemon=True).start()

    def report_external_loss(self, requested_rank: int, host: str, reason: str) -> None:
        """A node known lost from outside the channel (e.g. its ssh exited); thread-safe."""
        self._events.put(("external", requested_rank, host, reason))

    def close(self, linger: float = 3.0) -> None:
        """Stop serving. Waits up to `linger` s for the nodes to hang up first: closing a socket
        with unread pings in it sends a reset that can destroy the `finish` still in flight."""
        with self._finish_lock:
            self.finished.set()
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        for m in list(self._members):
            if not m.conn.closed:
                try:
                    m.conn.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        deadline = time.monotonic() + linger
        for thread in list(self._handlers):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for m in list(self._members):
            m.conn.close()

    # ----------------------------------------------------------------- connection threads
    def _accept_loop(self) -> None:
        while not self.finished.is_set():
            try:
                sock, addr = self._listener.accept()
            except OSError:
                return
            handler = threading.Thread(target=self._serve, args=(sock, f"{addr[0]}:{addr[1]}"),
                                       name="disttorch-control-conn", daemon=True)
            self._handlers.append(handler)
            handler.start()

    def _serve(self, sock: socket.socket, peer: str) -> None:
        conn = Connection(sock, peer)
        conn.settimeout(_HANDSHAKE_TIMEOUT)  # a silent peer must not hold a thread forever
        try:
            join = server_handshake(conn, self.secret, run_id=self.run_id)
        except (ControlError, OSError) as exc:
            output.say(f"control channel: {exc}")
            conn.close()
            return
        conn.settimeout(None)
        self._events.put(("join", conn, join))
        while True:
            try:
                message = conn.recv()
            except ControlError as exc:
                self._events.put(("closed", conn, str(exc)))
                return
            if message is None:
                self._events.put(("closed", conn, "its launcher closed the control connection "
                                                  "(launcher exited or was killed)"))
                return
            self._events.put(("message", conn, message))

    # ----------------------------------------------------------------- the loop
    def _loop(self) -> None:
        next_ping = time.monotonic() + _PING_PERIOD
        while not self.finished.is_set():
            try:
                event = self._events.get(timeout=0.1)
            except queue.Empty:
                event = None
            if event is not None:
                self._handle(event)
            now = time.monotonic()
            if now >= next_ping:
                next_ping = now + _PING_PERIOD
                self._ping_and_check(now)
            self._check_deadlines(now)

    def _member_of(self, conn: Connection) -> _Member | None:
        return next((m for m in self._members if m.conn is conn), None)

    def _handle(self, event: tuple) -> None:
        kind = event[0]
        if kind == "join":
            self._on_join(event[1], event[2])
        elif kind == "message":
            m = self._member_of(event[1])
            if m is not None:
                m.last_seen = time.monotonic()
                self._on_message(m, event[2])
        elif kind == "closed":
            m = self._member_of(event[1])
            if m is not None:
                self._on_lost(m, event[2])
        elif kind == "external":
            _, requested, host, reason = event
            m = next((m for m in self._members if m.requested_rank == requested), None)
            if m is not None:
                self._on_lost(m, reason)
            elif self._phase == "rendezvous":
                self._finish(1, f"node {requested} (host {host}) could not join: {reason}",
                             summary=f"node {requested} (host {host}) could not join")

    def _send(self, m: _Member, message: dict) -> None:
        try:
            m.conn.send(message)
        except ControlError as exc:
            self._events.put(("closed", m.conn, str(exc)))

    def _reject(self, conn: Connection, reason: str) -> None:
        output.say(f"control channel: rejected {conn.peer}: {reason}")
        try:
            conn.send({"type": "reject", "reason": reason})
        except ControlError:
            pass
        conn.close()

    def _on_join(self, conn: Connection, join: dict) -> None:
        host = str(join.get("host", "?"))
        requested = join.get("node_rank")
        requested = requested if isinstance(requested, int) else None
        run_id = join.get("run_id")
        if run_id and run_id != self.run_id:
            return self._reject(conn, f"run id {run_id!r} differs from node 0's {self.run_id!r}")
        nnodes = (join.get("min_nodes"), join.get("max_nodes"))
        if nnodes != (self.min_nodes, self.max_nodes):
            return self._reject(conn, f"--nnodes {_nnodes(*nnodes)} differs from node 0's "
                                      f"{_nnodes(self.min_nodes, self.max_nodes)}")
        if self._phase == "finished":
            return self._reject(conn, "the job has already finished")
        active = [m for m in self._members if not m.lost]
        if not self.elastic:
            if requested is None or not 0 <= requested < self.max_nodes:
                return self._reject(conn, f"node rank {requested} is out of range for "
                                          f"--nnodes {self.max_nodes}")
            taken = next((m for m in active if m.requested_rank == requested), None)
            if taken is not None:
                return self._reject(conn, f"node rank {requested} already joined from host "
                                          f"{taken.host} (pid {taken.pid})")
            if self._phase != "rendezvous":
                return self._reject(conn, "the job is already running")
        elif len(active) >= self.max_nodes:
            return self._reject(conn, f"the job already has the maximum of {self.max_nodes} nodes")
        nproc = join.get("nproc")
        if not isinstance(nproc, int) or nproc < 1:
            return self._reject(conn, f"bad worker count {nproc!r}")
        self._seq += 1
        m = _Member(self._seq, conn, requested, host, int(join.get("pid", 0)), nproc,
                    time.monotonic())
        self._members.append(m)
        self._pending.append(m)
        if self._phase == "running" and self.elastic:
            self._membership_change = True
            output.say(f"node {host} joined: re-forming the group with "
                       f"{len(self._round) + len(self._pending)} nodes")
            self._begin_stop(f"node {host} joined: re-forming the group")
        self._maybe_start_round()

    @property
    def elastic(self) -> bool:
        return self.min_nodes != self.max_nodes

    def _maybe_start_round(self) -> None:
        if self._phase != "rendezvous":
            return
        joined = len(self._pending)
        if joined >= self.max_nodes:
            self._new_round(self._pending)
        elif joined >= self.min_nodes and self._last_call_deadline is None:
            self._last_call_deadline = time.monotonic() + self.last_call

    def _new_round(self, members: list[_Member]) -> None:
        members = sorted(members, key=lambda m: (m.requested_rank is None,
                                                 m.requested_rank or 0, m.seq))
        self._attempt += 1
        if self._attempt == 0:
            self._started_at = time.time()
        self._round = members
        self._pending = []
        self._failures, self._losses, self._stopped = [], [], []
        self._early_exits, self._stacks = [], []
        self._membership_change = False
        self._stop_deadline = None
        self._last_call_deadline = None
        self._phase = "running"
        world_size = sum(m.nproc for m in members)
        offset = 0
        for node_rank, m in enumerate(members):
            m.node_rank, m.done = node_rank, None
            self._send(m, {"type": "start", "attempt": self._attempt,
                           "restart_count": self._restart_count,
                           "max_restarts": self.max_restarts, "node_rank": node_rank,
                           "nnodes": len(members), "rank_offset": offset,
                           "world_size": world_size, "run_id": self.run_id})
            offset += m.nproc

    def _on_message(self, m: _Member, message: dict) -> None:
        kind = message["type"]
        if kind == "dump":  # SIGUSR1 on one node's launcher, or a rank's collective timed out
            for other in self._members:
                if not other.lost:
                    self._send(other, {"type": "dump"})
            return
        if kind != "done" or m not in self._round or message.get("attempt") != self._attempt:
            return  # pings only refresh last_seen
        m.done = message
        m.leaving = bool(message.get("leaving"))
        for item in message.get("failures") or []:
            try:
                self._failures.append(WorkerFailure.from_json(item))
            except TypeError:
                pass
        self._stopped += [str(s) for s in message.get("stopped") or []]
        self._early_exits += [str(s) for s in message.get("early_exits") or []]
        self._stacks += [str(s) for s in message.get("stacks") or []]
        status = message.get("status")
        if m.leaving:
            sig = message.get("signal")
            self._losses.append(NodeLoss(m.node_rank, m.host, f"its launcher received {sig}"
                                         if sig else str(message.get("reason")), time.time()))
        elif status == "stopped" and self._phase == "running":
            self._losses.append(NodeLoss(m.node_rank, m.host,
                                         str(message.get("reason") or "stopped"), time.time()))
        if status != "succeeded" and self._phase == "running":
            self._begin_stop(self._stop_reason())
        self._maybe_end_attempt()

    def _on_lost(self, m: _Member, reason: str) -> None:
        if m.lost:
            return
        m.lost = True
        m.conn.close()
        if m in self._pending:
            self._pending.remove(m)
        if m in self._round and m.done is None:
            m.done = {"status": "lost"}
            self._losses.append(NodeLoss(m.node_rank, m.host, reason, time.time()))
            if self._phase == "running":
                self._begin_stop(self._stop_reason())
            self._maybe_end_attempt()

    def _stop_reason(self) -> str:
        first = first_event(self._failures, self._losses)
        return f"the job failed: {first.summary()}" if first else "the job is stopping"

    def _begin_stop(self, reason: str) -> None:
        self._phase = "stopping"
        self._stop_deadline = time.monotonic() + self.grace_period + _STOP_SLACK
        for m in self._round:
            if m.done is None and not m.lost:
                self._send(m, {"type": "stop", "attempt": self._attempt, "reason": reason})

    def _maybe_end_attempt(self) -> None:
        if self._phase not in ("running", "stopping"):
            return
        if any(m.done is None for m in self._round):
            return
        if not self._failures and not self._losses:
            if self._membership_change:
                live = [m for m in self._round if not m.lost] + self._pending
                self._new_round(live)
            else:
                self._finish(0, None, summary="all workers succeeded")
            return
        live = [m for m in self._round if not m.lost and not m.leaving]
        live += [m for m in self._pending if not m.lost]
        enough = len(live) >= self.min_nodes and (self.elastic or len(live) == self.max_nodes)
        first = first_event(self._failures, self._losses)
        if self._restart_count < self.max_restarts and enough:
            self._restart_count += 1
            output.say(f"attempt {self._attempt} failed: {first.summary()}; restarting "
                       f"{len(live)} nodes (restart {self._restart_count} of "
                       f"{self.max_restarts})")
            self._new_round(live)
            return
        report = format_report(
            entrypoint=self.entrypoint, run_id=self.run_id, restart_count=self._restart_count,
            max_restarts=self.max_restarts, started_at=self._started_at,
            failures=self._failures, losses=self._losses,
            stopped=sorted(self._stopped, key=_rank_of),
            early_exits=sorted(self._early_exits, key=_rank_of),
            stacks=sorted(self._stacks, key=_rank_of))
        self._finish(1, report, summary=f"the job failed: {first.summary()}")

    def _finish(self, code: int, report: str | None, *, summary: str) -> None:
        with self._finish_lock:
            self._phase = "finished"
            self.exit_code = code
            for m in self._members:
                if not m.lost:
                    self._send(m, {"type": "finish", "exit_code": code, "report": report,
                                   "summary": summary})
            self.finished.set()

    def _ping_and_check(self, now: float) -> None:
        for m in list(self._members):
            if m.lost:
                continue
            if now - m.last_seen > self.node_timeout:
                self._on_lost(m, f"no message for {self.node_timeout:g} s (host down or "
                                 f"network lost)")
            else:
                self._send(m, {"type": "ping"})

    def _report_joining(self, now: float) -> None:
        """Every reporting period of the rendezvous: how many nodes joined, and which."""
        if now < self._next_join_report:
            return
        self._next_join_report = now + self.report_period
        joined = ", ".join(f"node {m.requested_rank} ({m.host})" if m.requested_rank is not None
                           else m.host for m in self._pending)
        need = self.max_nodes if not self.elastic else self.min_nodes
        output.say(f"rendezvous: {len(self._pending)} of {need} nodes joined after "
                   f"{now - self._created:.0f} s" + (f" ({joined})" if joined else "")
                   + f"; waiting up to --join-timeout {self.join_timeout:g} s")

    def _check_deadlines(self, now: float) -> None:
        if self._phase == "rendezvous":
            self._report_joining(now)
            if self._last_call_deadline is not None and now >= self._last_call_deadline:
                if len(self._pending) >= self.min_nodes:
                    self._new_round(self._pending)
                else:
                    self._last_call_deadline = None
            elif now - self._created > self.join_timeout:
                joined = ", ".join(f"node {m.requested_rank} ({m.host})" for m in self._pending)
                self._finish(1, f"rendezvous timed out after {self.join_timeout:g} s: "
                                f"{len(self._pending)} of {self.min_nodes} nodes joined"
                                + (f" ({joined})" if joined else ""),
                             summary="rendezvous timed out")
        elif self._phase == "stopping" and self._stop_deadline and now >= self._stop_deadline:
            for m in self._round:
                if m.done is None:
                    self._on_lost(m, f"did not stop its workers within "
                                     f"{self.grace_period + _STOP_SLACK:g} s")


def _nnodes(low, high) -> str:
    return str(low) if low == high else f"{low}:{high}"


def _rank_of(description: str) -> int:
    """The rank of a 'rank 3 (SIGTERM)' description, for sorting."""
    parts = description.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 1 << 30
