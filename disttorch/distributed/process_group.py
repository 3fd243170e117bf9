"""ProcessGroup: a set of ranks that run collectives together, and everything that keeps them safe.

A group owns one ZeroMQ transport (its own sockets), a mailbox, and, for ranks that share a host,
a shared-memory segment (set up by ``shm_setup.py``). It implements ``backend.CollectiveBackend``
and decides per collective which engine runs it:

- every member on this host (and ``DISTTORCH_TRANSPORT=auto``): shared memory;
- members on several hosts: all-reduce is hierarchical (shared-memory reduce to each host's
  leader, ring / doubling among leaders over tcp, shared-memory broadcast back); the other
  collectives run over the transport;
- otherwise (``ipc`` / ``tcp``): the transport.

Collectives run in the order they were called (``executor.py``: sequence numbers, deadlines, the
worker thread for ``async_op=True``). Point-to-point operations run in the caller's thread and do
not wait for the queue (as in gloo).

Safety: every collective gets a sequence number and a deadline (the group's timeout). Its
fingerprint (op, dtype, shape, root, reduce op) is checked against the peers' (``fingerprints.py``:
in shared memory by every rank at the first barrier; over the transport in each message header, or
by an explicit all-to-all exchange with ``DISTTORCH_DEBUG=detail``). While waiting, the watchdog
here reports a peer whose process is gone (same host: /proc) or whose connection lost its
heartbeat (any host), and every reporting period names the ranks still awaited. The first failure
aborts the group: the executor refuses every later call at once, and this module tells the peers
(an ABORT message and a shared-memory flag, with the reason).
"""
from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from typing import Callable

import numpy as np

from . import algorithms as alg
from . import collectives_shm as cs
from . import collectives_zmq as cz
from . import hierarchical
from .backend import CollectiveBackend
from .config import Config, report_period_s
from .shm_setup import setup_shared_memory
from .stacks import request_stack_dump
from .errors import (CollectiveMismatchError, DistBackendError, DistError, DistTimeoutError, PeerFailureError,
                     ProcessGroupAbortedError)
from .executor import Executor
from .fingerprints import FingerprintCheck
from .liveness import process_state
from .mailbox import Fingerprint, Mailbox, Watchdog
from .reduce_op import ReduceOp
from .transport import shm as shm_mod
from .transport.base import Transport
from .wire import Kind, Op, dtype_code, message
from .work import Work

log = logging.getLogger("disttorch.distributed")

#: a dead same-host peer is reported once it has been dead this long (its last messages may be in flight)
DEAD_GRACE_S = 0.15

_transport_wrapper: Callable[[Transport], Transport] | None = None


def set_transport_wrapper(wrapper: Callable[[Transport], Transport] | None) -> None:
    """Installs ``wrapper(transport) -> transport`` for groups created afterwards (link shaping,
    fault injection). Use with ``DISTTORCH_TRANSPORT=tcp`` or ``ipc`` so that no collective takes
    the shared-memory path around the transport."""
    global _transport_wrapper
    _transport_wrapper = wrapper


def wrap_transport(t: Transport) -> Transport:
    return _transport_wrapper(t) if _transport_wrapper is not None else t


_collective_hook: Callable | None = None


def set_collective_hook(hook: Callable | None) -> None:
    """Installs ``hook(group, label, body) -> body``, called as each collective is submitted: it may
    return a replacement for ``body(seq, deadline)`` (the simulation numbers collectives, injects
    faults and records trace spans this way; ``simulation/__init__.py``)."""
    global _collective_hook
    _collective_hook = hook


class ProcessGroup(Watchdog, CollectiveBackend):
    """torch.distributed.ProcessGroup: ``rank()``, ``size()``, plus the collectives on flat arrays."""

    def __init__(self, *, name: str, group_id: int, global_ranks: list[int], group_rank: int, peers: list[dict],
                 job_id: int, transport, store, timeout_s: float, config: Config, host_id: str, backend: str):
        self.name, self.group_id, self._backend = name, group_id, backend
        self.global_ranks = list(global_ranks)
        self._rank, self._size = group_rank, len(global_ranks)
        self.peers, self.job_id, self.store = peers, job_id, store
        self.transport = transport
        self.executor = Executor(name, timeout_s, begin=self._begin_run, end=self._end_run,
                                 tell_peers=self._tell_peers)
        if hasattr(transport, "send_timeout_s"):
            transport.send_timeout_s = timeout_s
        self.config = config
        self.host_id = host_id
        self.mailbox = Mailbox(transport, self, config.max_unexpected_bytes, name)
        self.local_members = [g for g, p in enumerate(peers) if p["host_id"] == host_id]
        self.hosts, self.leaders = alg.host_layout([p["host_id"] for p in peers])
        self.shm: shm_mod.ShmComm | None = None
        self.shm_all = False
        self.fingerprints = FingerprintCheck(name, global_ranks)
        self._p2p_lock = threading.Lock()
        self._p2p_send: dict = collections.defaultdict(int)
        self._p2p_recv: dict = collections.defaultdict(int)
        self._dead_seen: dict[int, float] = {}
        self._stopped_seen: dict[int, float] = {}
        self._tls = threading.local()
        self.report_period = report_period_s()

    @property
    def timeout(self) -> float:
        """Seconds each collective may take (its deadline is set when it starts)."""
        return self.executor.timeout_s

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self.executor.timeout_s = seconds

    @property
    def last_finished(self) -> int:
        """The last collective this rank finished (for peers' reports)."""
        return self.executor.last_finished

    # -- torch.distributed.ProcessGroup --------------------------------------------------------
    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    @property
    def backend(self) -> str:
        return self._backend

    def host(self) -> "ProcessGroup":
        return self

    def __repr__(self):
        return f"<ProcessGroup {self.name}: rank {self._rank} of {self._size}, ranks {self.global_ranks}>"

    # -- shared memory -------------------------------------------------------------------------
    def setup_shm(self, prefix: str, deadline: float) -> None:
        """Creates / attaches the segment and the doorbells of this host's members (a collective
        among them, coordinated through the store; ``shm_setup.py``). Any failure leaves the group
        on sockets, and every local member agrees on that."""
        self.shm = setup_shared_memory(group_name=self.name, group_id=self.group_id, job_id=self.job_id,
                                       global_ranks=self.global_ranks, rank=self._rank,
                                       local_members=self.local_members, store=self.store, config=self.config,
                                       prefix=prefix, deadline=deadline)
        if self.shm is not None:
            self.shm.stall_hook = self._shm_stalled
            self.shm_all = len(self.local_members) == self._size

    def _shm_cap(self) -> int:
        # Measured (benchmarks/allreduce.py, medians of 3 runs): with a core per rank, 1 MiB rounds
        # keep the data in cache between copy-in, reduction and copy-out (2 ranks, 16 MiB: 5.6x gloo,
        # against 3.9x with 4 MiB rounds). When ranks outnumber cores every barrier costs a wake-up
        # and fewer rounds win (4 ranks on 2 cores, 16 MiB: 9 ms with 4 MiB rounds, 16 ms with 1 MiB).
        c = self.config
        if c.shm_chunk_bytes:
            return min(c.shm_chunk_bytes, c.shm_slot_bytes)
        return c.shm_slot_bytes if self.shm.oversubscribed else min(1 << 20, c.shm_slot_bytes)

    # -- naming / watchdog ---------------------------------------------------------------------
    def describe_rank(self, g: int) -> str:
        gr = self.global_ranks[g]
        return f"rank {gr}" if self.group_id == 0 else f"rank {gr} (rank {g} of group {self.name})"

    def _what(self) -> str:
        return getattr(self._tls, "what", None) or f"an operation on group {self.name}"

    def _peer_status(self, g: int, final: bool = False, departed: dict[int, int] | None = None) -> str | None:
        left = (self.mailbox.departed if departed is None else departed).get(g)
        if left is not None:
            return self._departure_problem(g, left, departed)
        p = self.peers[g]
        local = p.get("host_id") == self.host_id and p.get("pid")
        state = process_state(p["pid"]) if local else "unknown"
        if state == "dead":
            # report it from the second look on: what the peer sent before it exited may
            # still be on its way through the sockets, and may complete the collective
            first = self._dead_seen.setdefault(g, time.monotonic())
            if final or time.monotonic() - first >= DEAD_GRACE_S:
                if self._said_goodbye_meanwhile(g):
                    return None  # judged at the next look, against what arrived with it
                # it may have ended cleanly (a script returning early): the launcher's
                # report gives the exit status; this rank only knows it is gone
                return (f"exited before the job ended (pid {p['pid']} on {p.get('hostname')}; "
                        f"disttorch-run's report gives its exit status)")
        if state == "stopped":
            # what heartbeats told before same-host links dropped them: a peer stopped this long
            # will not answer in time (a stop shorter than that, a debugger's step, is tolerated)
            first = self._stopped_seen.setdefault(g, time.monotonic())
            stopped_s = time.monotonic() - first
            if final or stopped_s >= self.config.heartbeat_timeout_s + 1.0:
                return f"is stopped (pid {p['pid']}: SIGSTOP or a debugger, for {stopped_s:.1f} s)"
        else:
            self._stopped_seen.pop(g, None)
        problem = self.transport.peer_problem(g)
        if problem is None:
            return None
        if state == "running" and problem.startswith("lost its connection"):
            # On one host /proc is the liveness oracle: the process runs, so the silence is a
            # heartbeat starved on a loaded machine (or a socket being re-made), not a failure;
            # the collective's deadline still bounds the wait.
            return None
        if self._said_goodbye_meanwhile(g):
            return None
        return problem

    def _said_goodbye_meanwhile(self, g: int) -> bool:
        """Before a peer is declared gone: receive what is still in flight, and say whether its
        GOODBYE was among it (a clean exit closes the sockets right after the goodbye)."""
        self.mailbox.settle()
        return g in self.mailbox.departed

    def _departure_problem(self, g: int, left: int, departed: dict[int, int] | None) -> str | None:
        """Whether peer ``g``, which left the group after finishing collective ``left``, is missed.

        Its GOODBYE came after everything it sent us, so a peer that finished the collective this
        thread waits in has delivered its part; one that did not finish it never will."""
        seq = getattr(self._tls, "seq", None)  # None: point to point
        if seq is not None and left >= seq:
            return None
        if seq is None and getattr(self._tls, "scope", None) is None:
            # receive from any source: only when every peer has left can nothing arrive
            gone = self.mailbox.departed if departed is None else departed
            if any(h not in gone for h in range(self._size) if h != self._rank):
                return None
        where = f"before joining collective #{seq}" if seq is not None else "before sending what this rank waits for"
        return (f"exited before the job ended or left the group: its goodbye says it finished collective "
                f"#{left}, {where} (destroy_process_group or the end of its script)")

    def check(self, waiting_for: int | None, departed: dict[int, int] | None = None) -> None:
        scope = getattr(self._tls, "scope", None)
        members = scope if scope is not None else [g for g in range(self._size) if g != self._rank]
        for g in members:
            status = self._peer_status(g, departed=departed)
            if status:
                raise PeerFailureError(f"{self._what()} failed: {self.describe_rank(g)} {status}",
                                       rank=self.global_ranks[g])
        self._report_wait([waiting_for] if waiting_for is not None else members)

    # -- reports of long waits -------------------------------------------------------------
    def _begin_wait(self, label: str, seq: int | None) -> None:
        """Marks the start of an operation whose waits ``_report_wait`` describes."""
        now = time.monotonic()
        self._tls.label, self._tls.seq = label, seq
        self._tls.started, self._tls.next_report = now, now + self.report_period

    def _end_wait(self) -> None:
        self._tls.started = None

    def _report_wait(self, awaited: list[int]) -> None:
        """Every reporting period of a wait: say on stderr whom this rank waits for, and since when."""
        started = getattr(self._tls, "started", None)
        now = time.monotonic()
        if started is None or now < self._tls.next_report or not awaited:
            return
        self._tls.next_report = now + self.report_period
        seq = self._tls.seq
        what = self._tls.label + (f" #{seq}" if seq is not None else "")
        whom = ", ".join(f"{self.describe_rank(g)} ({self.peers[g].get('hostname', '?')}, "
                         f"{self._progress_of(g, seq)})" for g in awaited)
        sys.stderr.write(f"disttorch: {what} on {self.describe_rank(self._rank)}: waiting "
                         f"{now - started:.0f} s for {whom}\n")
        sys.stderr.flush()

    def _progress_of(self, g: int, seq: int | None) -> str:
        """What this rank knows of peer ``g``'s progress: the last collective it finished.

        A peer's messages (sockets) and its published fingerprints (shared memory) say which
        collective it last began; a peer that began the one we are in finished the one before.
        """
        began = self.mailbox.seen_seq.get(g)
        if self.shm is not None and g in self.local_members and self.shm.fingerprints is not None:
            k = self.local_members.index(g)
            published = int(self.shm.fingerprints[k, :, 0].max())
            if published > 0:
                began = max(began or 0, published)
        if began is None:
            return "no collective of it seen yet"
        if seq is not None and began >= seq:
            return f"last finished collective #{seq - 1}"
        return f"last finished collective #{began}"

    def _health(self) -> list[str]:
        out = []
        for g in range(self._size):
            if g != self._rank:
                status = self._peer_status(g, final=True)
                if status:
                    out.append(f"{self.describe_rank(g)} {status}")
        return out

    def timeout_error(self, waiting_for: int | None) -> Exception:
        msg = f"{self._what()} timed out after {self.timeout:.1f} s on {self.describe_rank(self._rank)}"
        if waiting_for is not None:
            msg += f", waiting for {self.describe_rank(waiting_for)}"
        health = self._health()
        if health:
            msg += "; " + "; ".join(health)
        return DistTimeoutError(msg + request_stack_dump())

    def _shm_stalled(self, laggards: list[int], deadline_passed: bool) -> None:
        aborted = self.shm.aborted_by()
        if aborted is not None:
            k, reason = aborted
            raise ProcessGroupAbortedError(f"{self.describe_rank(self.local_members[k])} aborted the process "
                                           f"group: {reason}")
        if self.mailbox.abort is not None or (not self.shm_all and self.mailbox.poll([])):
            self.mailbox._raise_if_failed()  # noqa: SLF001 - an ABORT from another host
        for k in laggards:
            g = self.local_members[k]
            status = self._peer_status(g)
            if status:
                raise PeerFailureError(f"{self._what()} failed: {self.describe_rank(g)} {status}",
                                       rank=self.global_ranks[g])
        self._report_wait([self.local_members[k] for k in laggards if self.local_members[k] != self._rank])
        if deadline_passed:
            names = ", ".join(self.describe_rank(self.local_members[k]) for k in laggards)
            msg = (f"{self._what()} timed out after {self.timeout:.1f} s on {self.describe_rank(self._rank)}: "
                   f"{names} did not arrive")
            health = self._health()
            if health:
                msg += "; " + "; ".join(health)
            raise DistTimeoutError(msg + request_stack_dump())

    # -- failure -------------------------------------------------------------------------------
    def _ensure_usable(self, label: str) -> None:
        self.executor.ensure_usable(label)

    def _fail(self, exc: BaseException) -> None:
        self.executor.fail(exc)

    def _tell_peers(self, exc: BaseException) -> None:
        """The abort broadcast: the shared-memory flag and an ABORT message to every peer, with the reason."""
        reason = f"{type(exc).__name__}\0{exc}"
        if self.shm is not None:
            self.shm.set_abort(str(exc))
        payload = np.frombuffer(reason.encode("utf-8", "replace")[:4096], np.uint8)
        for g in range(self._size):
            if g != self._rank:
                try:
                    hdr = message(Kind.ABORT, job_id=self.job_id, group=self.group_id, src=self._rank,
                                  nbytes=payload.nbytes)
                    self.transport.send(g, hdr, payload, copy=True)
                except Exception:  # a closed or broken socket: nothing more to tell
                    pass

    # -- execution (executor.py runs the queue) ---------------------------------------------------
    def _submit(self, label: str, body: Callable[[int, float], None], async_op: bool,
                after: Callable[[], None] | None = None, result=None) -> Work | None:
        """Runs ``body(seq, deadline)`` in call order, inline or on the worker thread."""
        self._ensure_usable(label)
        if _collective_hook is not None:
            body = _collective_hook(self, label, body)
        return self.executor.submit(label, body, async_op, after, result)

    def _begin_run(self, seq: int, label: str) -> None:
        self._tls.what = f"{label} #{seq} on group {self.name}"
        self._tls.scope = None
        self._begin_wait(label, seq)
        if self.config.debug != "off":
            log.debug("disttorch: %s starts %s", self.describe_rank(self._rank), self._tls.what)

    def _end_run(self) -> None:
        self._tls.what = None
        self._end_wait()

    # -- the two engines -----------------------------------------------------------------------
    def _check_shm_fingerprints(self, seq: int, rows: np.ndarray) -> None:
        self.fingerprints.compare_rows(rows, self.shm.me, self.local_members)

    def _detail_check(self, seq: int, fp: Fingerprint, deadline: float, members: list[int]) -> None:
        """DETAIL mode: every member sends its fingerprint to every other before the collective."""
        self.fingerprints.exchange(seq, fp, deadline, members, me=self._rank, job_id=self.job_id,
                                   group_id=self.group_id, send=lambda g, hdr: self.transport.send(g, hdr, None),
                                   take=self.mailbox.take)

    def _exchange(self, seq: int, fp: Fingerprint, deadline: float, itemsize: int,
                  members: list[int] | None = None) -> cz.Exchange:
        return cz.Exchange(self.transport, self.mailbox, job_id=self.job_id, group_id=self.group_id, seq=seq,
                           fp=fp, deadline=deadline, chunk_bytes=self.config.chunk_bytes, itemsize=itemsize,
                           members=members, describe_rank=self.describe_rank)

    def _collective(self, label: str, fp: Fingerprint, itemsize: int, shm_fn, zmq_fn, async_op: bool,
                    after=None, aux: int = 0, pre=None, result=None):
        """Submits a collective that runs ``shm_fn(ShmOp)`` or ``zmq_fn(Exchange)``."""
        def body(seq: int, deadline: float) -> None:
            if pre is not None:
                pre()
            if self.shm_all and shm_fn is not None:
                self.shm.publish_fingerprint(seq, self.fingerprints.words(seq, fp, aux))
                op = cs.ShmOp(self.shm, seq, deadline, lambda rows: self._check_shm_fingerprints(seq, rows),
                              self._shm_cap())
                shm_fn(op)
                return
            self._zmq_call(seq, fp, deadline, itemsize, zmq_fn)
        return self._submit(label, body, async_op, after, result)

    def run_shm_collective(self, label: str, fp: Fingerprint, shm_fn) -> None:
        """Runs ``shm_fn(ShmOp)`` as a synchronous collective of this group, which must live entirely
        in one host's shared memory: sequence number, deadline, the fingerprint check at its first
        barrier and the abort on failure come with it (``direct_reduce.py`` builds on this)."""
        if not self.shm_all:
            raise DistError(f"{label}: group {self.name} does not run on shared memory alone")
        self._collective(label, fp, 0, shm_fn, None, async_op=False)

    def _zmq_call(self, seq, fp, deadline, itemsize, zmq_fn, members=None) -> None:
        self.mailbox.begin(seq, fp, self._rank)
        try:
            if self.config.debug == "detail":
                self._detail_check(seq, fp, deadline, members if members is not None else list(range(self._size)))
            zmq_fn(self._exchange(seq, fp, deadline, itemsize, members))
        finally:
            self.mailbox.end()

    def _nan_check(self, label: str, arr: np.ndarray) -> Callable[[], None] | None:
        if not self.config.nan_check or arr.dtype.kind not in "fc":
            return None

        def pre():
            if np.isnan(arr).any():
                raise DistBackendError(f"{label} on {self.describe_rank(self._rank)}: input contains NaN "
                                       f"(DISTTORCH_NAN_CHECK=1)")
        return pre

    # -- collectives on flat arrays ------------------------------------------------------------
    def all_reduce(self, buf: np.ndarray, op: ReduceOp, async_op: bool = False, after=None):
        fp = Fingerprint(Op.ALL_REDUCE, int(op), dtype_code(buf.dtype), -1, tuple(buf.shape))
        flat = buf.reshape(-1)
        switch = self.config.allreduce_switch_bytes
        pre = self._nan_check("all_reduce", flat)
        if self._hierarchical():
            def body(seq, deadline):
                if pre:
                    pre()
                self._hier_all_reduce(seq, fp, deadline, flat, op)
            return self._submit("all_reduce", body, async_op, after)
        return self._collective("all_reduce", fp, buf.itemsize, lambda o: cs.all_reduce(o, flat, op),
                                lambda x: cz.all_reduce(x, flat, op, switch), async_op, after, pre=pre)

    def all_reduce_staged(self, buf: np.ndarray, op: ReduceOp, cuts: list[int]):
        """An all-reduce of ``buf`` whose input is still being written: returns a
        ``hierarchical.StagedAllReduce``; ``mark(stop)`` on it says ``buf[:stop]`` is final, and the
        all-reduce sends those rounds at once (its rounds end at ``cuts``); the ``mark`` of the
        whole buffer finishes it. DDP marks bucket after bucket, so the first buckets cross the
        network while backward computes the last. None where this group has no such form (it
        needs the sliced hierarchical all-reduce: ranks on several hosts, shared memory on each,
        and no simulation hook); the caller then reduces otherwise. Every rank must pass the same
        ``cuts``."""
        if not (self._hierarchical() and hierarchical.sliced_possible(self)) or _collective_hook is not None:
            return None
        self._ensure_usable("all_reduce")
        fp = Fingerprint(Op.ALL_REDUCE, int(op), dtype_code(buf.dtype), -1, tuple(buf.shape))
        return hierarchical.StagedAllReduce(self, fp, buf.reshape(-1), op, cuts)

    def _hierarchical(self) -> bool:
        """All-reduce across hosts with several ranks on some: shared memory inside each host, tcp
        between them. Every rank decides alike (a host of one rank has no shared memory but takes
        part as its own leader; ``DISTTORCH_TRANSPORT=tcp|ipc``, a job-wide setting, turns it off)."""
        return (self.config.transport == "auto" and not self.shm_all and len(self.hosts) > 1
                and any(len(h) > 1 for h in self.hosts)
                and (self.shm is not None or len(self.local_members) == 1))

    def _hier_all_reduce(self, seq: int, fp: Fingerprint, deadline: float, flat: np.ndarray, op: ReduceOp) -> None:
        """Shared memory inside each host, tcp across hosts (``hierarchical.py``)."""
        if hierarchical.sliced_possible(self):
            hierarchical.sliced_all_reduce(self, seq, fp, deadline, flat, op)
        else:
            hierarchical.leader_all_reduce(self, seq, fp, deadline, flat, op)

    def broadcast(self, buf: np.ndarray, root: int, async_op: bool = False, after=None):
        fp = Fingerprint(Op.BROADCAST, 0, dtype_code(buf.dtype), root, tuple(buf.shape))
        flat = buf.reshape(-1)
        return self._collective("broadcast", fp, buf.itemsize, lambda o: cs.broadcast(o, flat, root),
                                lambda x: cz.broadcast(x, flat, root), async_op, after)

    def reduce(self, buf: np.ndarray, op: ReduceOp, root: int, async_op: bool = False, after=None):
        fp = Fingerprint(Op.REDUCE, int(op), dtype_code(buf.dtype), root, tuple(buf.shape))
        flat = buf.reshape(-1)
        return self._collective("reduce", fp, buf.itemsize, lambda o: cs.reduce(o, flat, op, root),
                                lambda x: cz.reduce(x, flat, op, root), async_op, after,
                                pre=self._nan_check("reduce", flat))

    def all_gather(self, inp: np.ndarray, outs: list[np.ndarray], async_op: bool = False, after=None):
        fp = Fingerprint(Op.ALL_GATHER, 0, dtype_code(inp.dtype), -1, tuple(inp.shape))
        flat, fouts = inp.reshape(-1), [o.reshape(-1) for o in outs]
        switch = self.config.allreduce_switch_bytes
        return self._collective("all_gather", fp, inp.itemsize, lambda o: cs.all_gather(o, flat, fouts),
                                lambda x: cz.all_gather(x, flat, fouts, switch), async_op, after)

    def gather(self, inp: np.ndarray, outs: list[np.ndarray] | None, root: int, async_op: bool = False, after=None):
        fp = Fingerprint(Op.GATHER, 0, dtype_code(inp.dtype), root, tuple(inp.shape))
        flat = inp.reshape(-1)
        fouts = [o.reshape(-1) for o in outs] if outs is not None else None
        return self._collective("gather", fp, inp.itemsize, lambda o: cs.all_gather(o, flat, fouts, root),
                                lambda x: cz.gather(x, flat, fouts, root), async_op, after)

    def scatter(self, ins: list[np.ndarray] | None, out: np.ndarray, root: int, async_op: bool = False, after=None):
        fp = Fingerprint(Op.SCATTER, 0, dtype_code(out.dtype), root, tuple(out.shape))
        fout = out.reshape(-1)
        fins = [i.reshape(-1) for i in ins] if ins is not None else None
        return self._collective("scatter", fp, out.itemsize, lambda o: cs.scatter(o, fins, fout, root),
                                lambda x: cz.scatter(x, fins, fout, root), async_op, after)

    def reduce_scatter(self, ins: list[np.ndarray], out: np.ndarray, op: ReduceOp, async_op: bool = False,
                       after=None):
        fp = Fingerprint(Op.REDUCE_SCATTER, int(op), dtype_code(out.dtype), -1, tuple(out.shape))
        fout, fins = out.reshape(-1), [i.reshape(-1) for i in ins]
        switch = self.config.allreduce_switch_bytes
        checks = [self._nan_check("reduce_scatter", i) for i in fins] if self.config.nan_check else []
        pre = (lambda: [c() for c in checks if c is not None]) if any(checks) else None
        return self._collective("reduce_scatter", fp, out.itemsize, lambda o: cs.reduce_scatter(o, fins, fout, op),
                                lambda x: cz.reduce_scatter(x, fins, fout, op, switch), async_op, after, pre=pre)

    def all_to_all(self, ins: list[np.ndarray], outs: list[np.ndarray], async_op: bool = False, after=None):
        fp = Fingerprint(Op.ALL_TO_ALL, 0, dtype_code(outs[0].dtype), -1, None)
        fins, fouts = [i.reshape(-1) for i in ins], [o.reshape(-1) for o in outs]
        aux = max([a.size for a in fins] + [a.size for a in fouts] + [0])
        return self._collective("all_to_all", fp, outs[0].itemsize, lambda o: cs.all_to_all(o, fins, fouts),
                                lambda x: cz.all_to_all(x, fins, fouts), async_op, after, aux=aux)

    def barrier(self, async_op: bool = False):
        fp = Fingerprint(Op.BARRIER, 0, dtype_code(np.dtype(np.uint8)), -1, ())
        return self._collective("barrier", fp, 1, cs.barrier, cz.barrier, async_op)

    # -- point to point ------------------------------------------------------------------------
    def send(self, buf: np.ndarray, dst: int, tag: int, wait: bool = True) -> Work:
        label = f"send to {self.describe_rank(dst)} (tag {tag})"
        self._ensure_usable(label)
        flat = buf.reshape(-1)
        with self._p2p_lock:
            self._p2p_send[(dst, tag)] += 1
            n = self._p2p_send[(dst, tag)]
            code = dtype_code(buf.dtype)
            chunk = max(1, self.config.chunk_bytes // max(1, buf.itemsize))
            for i, (a, b) in enumerate(alg.chunk_ranges(0, flat.size, chunk)):
                hdr = message(Kind.P2P, job_id=self.job_id, group=self.group_id, src=self._rank, dtype=code,
                              seq=n, op=Op.SEND, step=i, tag=tag, offset=a, numel=flat.size,
                              nbytes=(b - a) * buf.itemsize, shape=tuple(buf.shape))
                self.transport.send(dst, hdr, flat[a:b])

        def flushed(limit=None) -> None:
            deadline = time.monotonic() + (self.timeout if limit is None else limit)
            self._tls.what, self._tls.scope = label, [dst]
            self._begin_wait(label, None)
            nap = 20e-6
            try:
                while not self.transport.sends_done():
                    if time.monotonic() >= deadline:
                        raise self.timeout_error(dst)
                    self.check(dst)
                    time.sleep(nap)
                    nap = min(nap * 2, 0.005)
            finally:
                self._tls.what = self._tls.scope = None
                self._end_wait()
            work._finish(None, None)  # noqa: SLF001

        def poll() -> None:
            if self.transport.sends_done():
                work._finish(None, None)  # noqa: SLF001

        work = Work(label, lazy=flushed, poll=poll)
        if wait:
            work.wait()
        return work

    def recv(self, buf: np.ndarray, src: int | None, tag: int, after=None) -> Work:
        """A Work that receives into ``buf`` when waited on; ``src=None`` takes any source."""
        label = f"recv from {'any rank' if src is None else self.describe_rank(src)} (tag {tag})"
        self._ensure_usable(label)
        flat = buf.reshape(-1)
        chunk = max(1, self.config.chunk_bytes // max(1, buf.itemsize))
        ranges = alg.chunk_ranges(0, flat.size, chunk)
        code = dtype_code(buf.dtype)
        n = None
        if src is not None:
            with self._p2p_lock:
                self._p2p_recv[(src, tag)] += 1
                n = self._p2p_recv[(src, tag)]

        def complete(limit=None) -> None:
            nonlocal src, n
            deadline = time.monotonic() + (self.timeout if limit is None else limit)
            self._tls.what, self._tls.scope = label, ([src] if src is not None else None)
            self._begin_wait(label, None)
            try:
                first = 0
                if src is None:
                    with self._p2p_lock:
                        keys = [(Kind.P2P, g, tag, self._p2p_recv[(g, tag)] + 1, 0)
                                for g in range(self._size) if g != self._rank]
                    msg = self.mailbox.take_first(keys, deadline)
                    src, n = msg.header.src, msg.header.seq
                    with self._p2p_lock:
                        self._p2p_recv[(src, tag)] = n
                    self._check_p2p(msg.header, code, flat, src)
                    a, b = ranges[0]
                    if msg.payload is not None and b > a:
                        flat[a:b].view(np.uint8)[:] = np.frombuffer(msg.payload, np.uint8)
                    first = 1
                for i in range(first, len(ranges)):
                    a, b = ranges[i]
                    msg = self.mailbox.take((Kind.P2P, src, tag, n, i), deadline, flat[a:b])
                    self._check_p2p(msg.header, code, flat, src)
            finally:
                self._tls.what = self._tls.scope = None
                self._end_wait()
            if after is not None:
                after()
            work._source_rank = self.global_ranks[src]  # noqa: SLF001
            work._finish(None, None)  # noqa: SLF001

        def poll() -> None:
            if src is not None and self.mailbox.poll([(Kind.P2P, src, tag, n, i) for i in range(len(ranges))]):
                complete()

        work = Work(label, lazy=complete, poll=poll)
        return work

    def _check_p2p(self, h, code: int, flat: np.ndarray, src: int) -> None:
        if h.dtype != code or h.numel != flat.size:
            from .wire import dtype_of
            raise CollectiveMismatchError(
                f"recv on {self.describe_rank(self._rank)}: {self.describe_rank(src)} sent shape {tuple(h.shape)} "
                f"dtype {dtype_of(h.dtype)} but the receiving tensor has {flat.size} elements of {flat.dtype}")

    # -- teardown ------------------------------------------------------------------------------
    def say_goodbye(self) -> None:
        """Tells every peer that this rank leaves the group, and after which collective (once).

        Peers still waiting inside the last collective then know that everything this rank sent
        for it is already in their mailbox (the GOODBYE follows it on the same connection), so
        the sockets closing next is not a failure; a peer waiting in a later collective learns at
        once that this rank will not join. Not sent after a failure: the ABORT said it all."""
        if getattr(self, "_goodbye_sent", False) or self.executor.failed is not None:
            return
        self._goodbye_sent = True
        hdr = message(Kind.GOODBYE, job_id=self.job_id, group=self.group_id, src=self._rank,
                      seq=self.executor.last_finished)
        t = self.transport
        patience = getattr(t, "send_timeout_s", None)
        if patience is not None:
            t.send_timeout_s = 0  # a peer that refused our handshake must not hold up the exit
        try:
            for g in range(self._size):
                if g != self._rank:
                    try:
                        t.send(g, hdr, None)
                    except Exception:  # a closed or broken socket: that peer learns it from /proc
                        pass
        finally:
            if patience is not None:
                t.send_timeout_s = patience

    def close(self) -> None:
        self.executor.close()
        self.say_goodbye()
        self.transport.close()
        if self.shm is not None:
            self.shm.close()
            self.shm = None

