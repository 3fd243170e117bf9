"""ProcessGroup: a set of ranks that run collectives together, and everything that keeps them safe.

A group owns one ZeroMQ transport (its own sockets), a mailbox, and, for ranks that share a host,
a shared-memory segment. It decides per collective which engine runs it:

- every member on this host (and ``DISTTORCH_TRANSPORT=auto``): shared memory;
- members on several hosts: all-reduce is hierarchical (shared-memory reduce to each host's
  leader, ring / doubling among leaders over tcp, shared-memory broadcast back); the other
  collectives run over the transport;
- otherwise (``ipc`` / ``tcp``): the transport.

Collectives run in the order they were called. A synchronous call runs in the caller's thread when
nothing is queued; ``async_op=True`` queues it for the group's worker thread and returns a Work.
Point-to-point operations run in the caller's thread and do not wait for the queue (as in gloo).

Safety: every collective gets a sequence number and a deadline (the group's timeout). Its
fingerprint (op, dtype, shape, root, reduce op) is checked against the peers' (in shared memory
by every rank at the first barrier; over the transport in each message header, or by an explicit
all-to-all exchange with ``DISTTORCH_DEBUG=detail``). While waiting, the watchdog reports a peer
whose process is gone (same host: /proc) or whose connection lost its heartbeat (any host). The
first failure aborts the group: peers are told (an ABORT message and a shared-memory flag, with
the reason), and every later call raises at once instead of hanging.
"""
from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
import zlib
from typing import Callable

import numpy as np

from . import algorithms as alg
from . import collectives_shm as cs
from . import collectives_zmq as cz
from .config import Config, report_period_s
from .stacks import request_stack_dump
from .errors import (CollectiveMismatchError, DistBackendError, DistError, DistTimeoutError, PeerFailureError,
                     ProcessGroupAbortedError)
from .liveness import process_state
from .mailbox import Fingerprint, Mailbox, Watchdog
from .reduce_op import ReduceOp, finalize
from .transport import shm as shm_mod
from .transport.base import Transport
from .wire import Kind, Op, dtype_code, pack
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


class ProcessGroup(Watchdog):
    """torch.distributed.ProcessGroup: ``rank()``, ``size()``, plus the collectives on flat arrays."""

    def __init__(self, *, name: str, group_id: int, global_ranks: list[int], group_rank: int, peers: list[dict],
                 job_id: int, transport, store, timeout_s: float, config: Config, host_id: str, backend: str):
        self.name, self.group_id, self.backend = name, group_id, backend
        self.global_ranks = list(global_ranks)
        self._rank, self._size = group_rank, len(global_ranks)
        self.peers, self.job_id, self.store = peers, job_id, store
        self.transport = transport
        self.timeout = timeout_s
        if hasattr(transport, "send_timeout_s"):
            transport.send_timeout_s = timeout_s
        self.config = config
        self.host_id = host_id
        self.mailbox = Mailbox(transport, self, config.max_unexpected_bytes, name)
        self.local_members = [g for g, p in enumerate(peers) if p["host_id"] == host_id]
        self.hosts, self.leaders = alg.host_layout([p["host_id"] for p in peers])
        self.shm: shm_mod.ShmComm | None = None
        self.shm_all = False
        self._seq = 0
        self._fp_cache: dict = {}
        self._p2p_lock = threading.Lock()
        self._p2p_send: dict = collections.defaultdict(int)
        self._p2p_recv: dict = collections.defaultdict(int)
        self._failed: BaseException | None = None
        self._dead_seen: dict[int, float] = {}
        self._tls = threading.local()
        self._cv = threading.Condition()
        self._queue: collections.deque = collections.deque()
        self._busy = False
        self._closed = False
        self._worker: threading.Thread | None = None
        self.report_period = report_period_s()
        self.last_finished = 0  # the last collective this rank finished (for peers' reports)

    # -- torch.distributed.ProcessGroup --------------------------------------------------------
    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def __repr__(self):
        return f"<ProcessGroup {self.name}: rank {self._rank} of {self._size}, ranks {self.global_ranks}>"

    # -- shared memory -------------------------------------------------------------------------
    def setup_shm(self, prefix: str, deadline: float) -> None:
        """Creates / attaches the segment and the doorbells of this host's members (a collective
        among them, coordinated through the store). Any failure leaves the group on sockets, and
        every local member agrees on that."""
        local = self.local_members
        if len(local) < 2 or self.config.transport != "auto" or not shm_mod.supported():
            return
        me = local.index(self._rank)
        leader = self.global_ranks[local[0]]
        key = f"{prefix}/shm/{leader}"
        slot = self.config.shm_slot_bytes
        store = self.store
        seg = bell = None
        remaining = lambda: max(1.0, deadline - time.monotonic())  # noqa: E731
        if me == 0:
            name = f"dt{self.job_id & 0xffffffff:08x}g{self.group_id}r{leader}p{os.getpid()}"
            try:
                seg = shm_mod.ShmSegment(name, shm_mod.segment_size(len(local), slot), create=True)
                bell = _doorbell(name, 0)
            except OSError as e:
                log.warning("disttorch: no shared memory for group %s (%s); using sockets", self.name, e)
                name = ""
            store.set(key, name)
            if seg is not None:
                keys = [f"{key}/attached/{self.global_ranks[g]}" for g in local[1:]]
                store.wait(keys, remaining())
                ok = all(store.get(k) == b"ok" for k in keys)
                seg.unlink()  # everyone has it mapped: nothing can leak from here on
                # the leader decides whether ranks outnumber cores: the round size depends on it,
                # and every rank must cut the same rounds
                store.set(f"{key}/ready", (b"1o" if len(local) > _cores() else b"1") if ok else b"0")
        else:
            name = store.get(key).decode()
            if name:
                try:
                    seg = shm_mod.ShmSegment(name)
                    bell = _doorbell(name, me)
                    status = b"ok"
                except OSError as e:
                    log.warning("disttorch: could not attach shared memory %s (%s)", name, e)
                    status = b"fail"
                store.set(f"{key}/attached/{self.global_ranks[self._rank]}", status)
        verdict = store.get(f"{key}/ready") if name else b"0"
        ready = verdict.startswith(b"1")
        if ready:
            # every doorbell exists now; open the others', then unlink our path once all have ours
            bell.open_peers({k: _doorbell_path(name, k) for k in range(len(local)) if k != me})
            store.set(f"{key}/bells/{self.global_ranks[self._rank]}", b"1")
            store.wait([f"{key}/bells/{self.global_ranks[g]}" for g in local], remaining())
            bell.unlink()
        else:
            for res in (bell, seg):
                if res is not None:
                    res.close()
            return
        self.shm = shm_mod.ShmComm(seg, len(local), me, slot, oversubscribed=verdict == b"1o", doorbell=bell)
        self.shm.stall_hook = self._shm_stalled
        self.shm_all = len(local) == self._size

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

    def _peer_status(self, g: int, final: bool = False) -> str | None:
        p = self.peers[g]
        if p.get("host_id") == self.host_id and p.get("pid"):
            state = process_state(p["pid"])
            if state == "dead":
                # report it from the second look on: what the peer sent before it exited may
                # still be on its way through the sockets, and may complete the collective
                first = self._dead_seen.setdefault(g, time.monotonic())
                if final or time.monotonic() - first >= DEAD_GRACE_S:
                    # it may have ended cleanly (a script returning early): the launcher's
                    # report gives the exit status; this rank only knows it is gone
                    return (f"exited before the job ended (pid {p['pid']} on {p.get('hostname')}; "
                            f"disttorch-run's report gives its exit status)")
            if state == "stopped" and final:
                return f"is stopped (pid {p['pid']}: SIGSTOP or a debugger)"
        return self.transport.peer_problem(g)

    def check(self, waiting_for: int | None) -> None:
        scope = getattr(self._tls, "scope", None)
        members = scope if scope is not None else [g for g in range(self._size) if g != self._rank]
        for g in members:
            status = self._peer_status(g)
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
        if self._closed:
            raise DistError(f"{label}: process group {self.name} was destroyed")
        if self._failed is not None:
            raise ProcessGroupAbortedError(f"{label}: process group {self.name} is unusable after an earlier "
                                           f"failure: {self._failed}")

    def _fail(self, exc: BaseException) -> None:
        if self._failed is not None:
            return
        self._failed = exc
        if isinstance(exc, ProcessGroupAbortedError):
            return  # somebody else aborted; telling everyone again helps nobody
        reason = f"{type(exc).__name__}\0{exc}"
        if self.shm is not None:
            self.shm.set_abort(str(exc))
        payload = np.frombuffer(reason.encode("utf-8", "replace")[:4096], np.uint8)
        for g in range(self._size):
            if g != self._rank:
                try:
                    hdr = pack(Kind.ABORT, 2, self.job_id, self.group_id, self._rank, 0, 0, 0, 0, -1, 0, 0, 0,
                               0, payload.nbytes, ())
                    self.transport.send(g, hdr, payload, copy=True)
                except Exception:  # a closed or broken socket: nothing more to tell
                    pass

    # -- execution -----------------------------------------------------------------------------
    def _submit(self, label: str, body: Callable[[int, float], None], async_op: bool,
                after: Callable[[], None] | None = None, result=None) -> Work | None:
        """Runs ``body(seq, deadline)`` in call order, inline or on the worker thread."""
        self._ensure_usable(label)
        if _collective_hook is not None:
            body = _collective_hook(self, label, body)
        with self._cv:
            self._seq += 1
            seq = self._seq
            inline = not async_op and not self._busy and not self._queue
            if inline:
                self._busy = True
            else:
                work = Work(f"{label} #{seq} on group {self.name}", result=result)
                self._queue.append((seq, label, body, after, work))
                self._start_worker()
                self._cv.notify_all()
        if inline:
            try:
                self._run(seq, label, body, after)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
            return None
        if async_op:
            return work
        work.wait()
        return None

    def _run(self, seq: int, label: str, body, after) -> None:
        self._tls.what = f"{label} #{seq} on group {self.name}"
        self._tls.scope = None
        self._begin_wait(label, seq)
        if self.config.debug != "off":
            log.debug("disttorch: %s starts %s", self.describe_rank(self._rank), self._tls.what)
        try:
            self._ensure_usable(label)
            body(seq, time.monotonic() + self.timeout)
            self.last_finished = seq
            if after is not None:
                after()
        except BaseException as e:
            # the peers are somewhere inside this collective: tell them, and refuse further calls
            self._fail(e)
            raise
        finally:
            self._tls.what = None
            self._end_wait()

    def _start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work_loop, name=f"disttorch-pg-{self.name}", daemon=True)
            self._worker.start()

    def _work_loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and (self._busy or not self._queue):
                    self._cv.wait()
                if self._closed and not self._queue:
                    return
                seq, label, body, after, work = self._queue.popleft()
                self._busy = True
            try:
                self._run(seq, label, body, after)
                work._finish(None, None)  # noqa: SLF001
            except BaseException as e:  # noqa: BLE001 - handed to the waiter
                work._finish(None, e)  # noqa: SLF001
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    # -- the two engines -----------------------------------------------------------------------
    def _fp_words(self, seq: int, fp: Fingerprint, aux: int) -> list[int]:
        rest = self._fp_cache.get(fp)
        if rest is None:
            shape = fp.shape
            if shape is None:
                ndim, numel, h = -1, 0, 0
            else:
                ndim, numel = len(shape), int(np.prod(shape, dtype=np.int64)) if shape else 1
                h = zlib.crc32(repr(tuple(shape)).encode())
            dims = list(shape or ())[: shm_mod.FP_WORDS - cs.FP_DIMS]
            rest = ([int(fp.op), int(fp.rop), int(fp.dtype), int(fp.root), ndim, numel, h], dims)
            if len(self._fp_cache) > 256:
                self._fp_cache.clear()
            self._fp_cache[fp] = rest
        return [seq] + rest[0] + [aux] + rest[1]

    def _check_shm_fingerprints(self, seq: int, rows: np.ndarray) -> None:
        compared = rows[:, : cs.FP_COMPARED].tolist()
        mine = compared[self.shm.me]
        if all(r == mine for r in compared):
            return
        entries = {self.local_members[k]: _decode_fp(rows[k]) for k in range(len(rows))}
        raise CollectiveMismatchError(self._mismatch_message(entries))

    def _mismatch_message(self, entries: dict) -> str:
        """``entries``: group rank -> (seq, Fingerprint). Groups ranks that agree."""
        by: dict = {}
        for g in sorted(entries):
            by.setdefault(entries[g], []).append(g)
        parts = []
        for (seq, fp), ranks in by.items():
            who = ", ".join(str(self.global_ranks[g]) for g in ranks)
            parts.append(f"{'rank' if len(ranks) == 1 else 'ranks'} {who} called {fp.describe()} as "
                         f"collective #{seq}")
        return f"collective mismatch on group {self.name}: " + "; ".join(parts)

    def _detail_check(self, seq: int, fp: Fingerprint, deadline: float, members: list[int]) -> None:
        """DETAIL mode: every member sends its fingerprint to every other before the collective."""
        shape = fp.shape if fp.shape is not None else ()
        for g in members:
            if g != self._rank:
                hdr = pack(Kind.FINGERPRINT, fp.dtype, self.job_id, self.group_id, self._rank, seq, fp.op, fp.rop,
                           0, fp.root, 0, 0, 0, 0, 0, shape)
                self.transport.send(g, hdr, None)
        entries = {self._rank: (seq, fp)}
        for g in members:
            if g != self._rank:
                h = self.mailbox.take((Kind.FINGERPRINT, g, seq), deadline).header
                other = Fingerprint(h.op, h.rop, h.dtype, h.root, None if fp.shape is None else tuple(h.shape))
                entries[g] = (h.seq, other)
        if len(set(entries.values())) > 1:
            raise CollectiveMismatchError(self._mismatch_message(entries))

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
                self.shm.publish_fingerprint(seq, self._fp_words(seq, fp, aux))
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
        if not self.shm_all and self.shm is not None and len(self.hosts) > 1:
            def body(seq, deadline):
                if pre:
                    pre()
                self._hier_all_reduce(seq, fp, deadline, flat, op)
            return self._submit("all_reduce", body, async_op, after)
        return self._collective("all_reduce", fp, buf.itemsize, lambda o: cs.all_reduce(o, flat, op),
                                lambda x: cz.all_reduce(x, flat, op, switch), async_op, after, pre=pre)

    def _hier_all_reduce(self, seq: int, fp: Fingerprint, deadline: float, flat: np.ndarray, op: ReduceOp) -> None:
        """Reduce inside each host (shared memory), all-reduce among host leaders, broadcast back."""
        partial = ReduceOp.SUM if op is ReduceOp.AVG else op
        o = None
        if self.shm is not None:
            self.shm.publish_fingerprint(seq, self._fp_words(seq, fp, 0))
            o = cs.ShmOp(self.shm, seq, deadline, lambda rows: self._check_shm_fingerprints(seq, rows),
                         self._shm_cap())
            cs.reduce(o, flat, partial, 0)
        if self._rank in self.leaders and len(self.leaders) > 1:
            self._zmq_call(seq, fp, deadline, flat.itemsize,
                           lambda x: cz.all_reduce(x, flat, partial, self.config.allreduce_switch_bytes),
                           members=self.leaders)
        if o is not None:
            cs.broadcast(o, flat, 0)
        finalize(op, flat, self._size)

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
                hdr = pack(Kind.P2P, code, self.job_id, self.group_id, self._rank, n, Op.SEND, 0, 0, -1, i, tag,
                           a, flat.size, (b - a) * buf.itemsize, tuple(buf.shape))
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
    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(5)
        self.transport.close()
        if self.shm is not None:
            self.shm.close()
            self.shm = None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _doorbell_path(segment_name: str, local_rank: int) -> str:
    from .security import runtime_dir

    return os.path.join(runtime_dir(), f"{segment_name}-{local_rank}.bell")


def _doorbell(segment_name: str, local_rank: int) -> shm_mod.Doorbell:
    return shm_mod.Doorbell(_doorbell_path(segment_name, local_rank))


def _decode_fp(row) -> tuple:
    seq, op, rop, dtype, root, ndim, numel, _h, _aux = (int(v) for v in row[: cs.FP_DIMS])
    if ndim < 0:
        shape = None
    else:
        dims = [int(v) for v in row[cs.FP_DIMS: cs.FP_DIMS + min(ndim, len(row) - cs.FP_DIMS)]]
        shape = tuple(dims) if len(dims) == ndim else tuple(dims) + (...,)
    try:
        return seq, Fingerprint(Op(op), rop, dtype, root, shape)
    except ValueError:
        return seq, Fingerprint(Op.BARRIER, rop, dtype, root, shape)
