"""The hierarchical all-reduce of a group whose ranks span hosts, with shared memory on each host.

Sliced (every host runs the same number of ranks, ``L``): the buffer is cut into rounds of at most
one shared-memory slot. For each round,

1. the ranks of a host reduce-scatter it in shared memory: local rank ``k`` ends with segment
   ``k`` of the round reduced over its host (``collectives_shm.reduce_scatter_round``);
2. local rank ``k`` all-reduces that segment with local rank ``k`` of every other host, over its
   own connections (ring, or recursive doubling when small: ``collectives_zmq.all_reduce_part``);
3. the ranks of a host all-gather the segments in shared memory (``all_gather_round``).

So every rank of a host drives a share of the host's link and none waits idle for a leader, and
the rounds pipeline: a network thread runs step 2 of round ``i`` while this thread runs step 1 of
the rounds after it, and step 3 of a round follows as soon as its network part is done. The
network is the bottleneck across hosts; the shared-memory steps hide behind it, except the first
round's step 1 and the last round's step 3, which is why those two rounds are small
(``hier_rounds.py``: a ramp of 1/8, 1/8, 1/4, 1/2 of a round at either end).

Staged (``StagedAllReduce``, what DDP uses with overlap across hosts): the same rounds, started
while the buffer is still being written. The caller marks how much of the buffer is final; the
rounds it covers are reduce-scattered and handed to the network thread at once, in the caller's
own thread, so the network carries the first buckets while backward computes the last.

Every segment is reduced by one rank in a fixed order (its own values, then the other local ranks'
in rank order; across hosts the ring's order) and then copied to all: the result is bit-identical
on every rank and the same from run to run.

Hosts with unequal rank counts take the leader form: reduce to each host's first rank in shared
memory, all-reduce among those leaders, broadcast back (``leader_all_reduce``).
"""
from __future__ import annotations

import threading

import numpy as np

from . import algorithms as alg
from . import collectives_shm as cs
from . import collectives_zmq as cz
from .hier_rounds import round_ranges
from .mailbox import Fingerprint
from ..profiler import trace as _trace
from .reduce_op import ReduceOp, finalize

#: default round size (at most the shared-memory slot). Measured on 2 test hosts x 2 ranks at 1 Gbit
#: (benchmarks/crosshost.py, medians of 2 jobs, loaded machine): 16 MiB took 141.6 / 140.9 ms with
#: 1 / 2 MiB rounds, 2.6 MiB (DDP's MLP) 22.4 / 21.3 / 22.1 ms with 0.5 / 1 / 2 MiB: all within noise
DEFAULT_ROUND_BYTES = 2 << 20
#: how often a wait for the network thread looks at the shared-memory abort flag
POLL_S = 0.05


def sliced_possible(pg) -> bool:
    """Whether ``pg`` can run the sliced form: shared memory here and equal rank counts on all hosts."""
    return pg.shm is not None and len({len(h) for h in pg.hosts}) == 1


def round_bytes(pg) -> int:
    chosen = pg.config.hier_chunk_bytes or DEFAULT_ROUND_BYTES
    return max(1, min(chosen, pg.config.shm_slot_bytes))


def shm_op(pg, seq: int, fp: Fingerprint, deadline: float) -> cs.ShmOp:
    pg.shm.publish_fingerprint(seq, pg.fingerprints.words(seq, fp, 0))
    return cs.ShmOp(pg.shm, seq, deadline, lambda rows: pg._check_shm_fingerprints(seq, rows),  # noqa: SLF001
                    pg._shm_cap())  # noqa: SLF001


def sliced_all_reduce(pg, seq: int, fp: Fingerprint, deadline: float, flat: np.ndarray, op: ReduceOp) -> None:
    """The sliced, pipelined form (see the module docstring); ``flat`` is reduced in place."""
    run_to_end(sliced_all_reduce_steps(pg, seq, fp, deadline, flat, op), flat.size)


def run_to_end(steps, size: int) -> None:
    """Runs a ``sliced_all_reduce_steps`` generator whose input is all final (``size`` elements)."""
    try:
        next(steps)
        while True:
            steps.send(size)
    except StopIteration:
        pass


def sliced_all_reduce_steps(pg, seq: int, fp: Fingerprint, deadline: float, flat: np.ndarray, op: ReduceOp,
                            cuts=(), staged: bool = False):
    """The sliced form as a generator, for input that is still being written: before the
    reduce-scatter of each round it yields until it is sent how many leading elements are final
    (``ready = yield``) and that covers the round. So the first rounds cross the network while the
    caller computes the rest (``StagedAllReduce``). ``cuts``: element offsets where rounds end."""
    partial = ReduceOp.SUM if op is ReduceOp.AVG else op
    o = shm_op(pg, seq, fp, deadline)
    k = pg.shm.me
    peers = [host[k] for host in pg.hosts]  # local rank k of every host, in host order
    rounds = round_ranges(flat.size, max(1, round_bytes(pg) // max(1, flat.itemsize)), flat.itemsize, cuts,
                          ramp=pg.config.hier_ramp, ramp_up=not staged)
    segments = []
    for a, b in rounds:
        lo, hi = alg.partition(b - a, pg.shm.n)[k]
        segments.append((a + lo, a + hi))
    net = None
    ready = 0
    pg.mailbox.begin(seq, fp, pg._rank)  # noqa: SLF001
    try:
        if pg.config.debug == "detail":
            pg._detail_check(seq, fp, deadline, peers)  # noqa: SLF001
        x = pg._exchange(seq, fp, deadline, flat.itemsize, peers)  # noqa: SLF001
        net = _NetworkThread(pg, seq, x, flat, segments, partial)
        for i, (a, b) in enumerate(rounds):
            while ready < b:
                ready = yield
            with _trace.span("hier reduce-scatter", "comm", round=i, bytes=(b - a) * flat.itemsize):
                cs.reduce_scatter_round(o, flat[a:b], partial)
            net.ready(i)
        for i, (a, b) in enumerate(rounds):
            with _trace.span("hier wait network", "wait", round=i):
                net.wait(i)
            with _trace.span("hier all-gather", "comm", round=i):
                cs.all_gather_round(o, flat[a:b])
        with _trace.span("hier wait flush", "wait"):
            net.wait(len(rounds))  # its flush: no send reads ``flat`` any more
    finally:
        if net is not None:
            net.cancel()
        pg.mailbox.end()
    finalize(op, flat, pg.size())


class StagedAllReduce:
    """An all-reduce of ``flat`` started while ``flat`` is still being written
    (``ProcessGroup.all_reduce_staged``): ``mark(stop)`` says that ``flat[:stop]`` is final; the
    rounds that became complete are reduce-scattered and handed to the network thread at once, in
    the caller's thread (no hand-off to another thread), and the ``mark`` of the whole buffer
    finishes the collective. When the group was busy at the start, nothing runs before that last
    ``mark``, which then runs the whole (the same rounds, so ranks of either kind match)."""

    def __init__(self, pg, fp: Fingerprint, flat: np.ndarray, op: ReduceOp, cuts) -> None:
        self.pg, self.flat, self.size = pg, flat, flat.size
        self._steps = lambda seq, deadline: sliced_all_reduce_steps(pg, seq, fp, deadline, flat, op, cuts,
                                                                    staged=True)
        self._run = pg.executor.open_staged("all_reduce", self._steps)
        self.done = self._run is not None and self._run.done

    def mark(self, stop: int) -> None:
        if self.done:
            return
        if self._run is not None:
            self.done = self._run.feed(stop)
        elif stop >= self.size:
            def whole(seq, deadline):
                run_to_end(self._steps(seq, deadline), self.size)
            self.pg._submit("all_reduce", whole, False)  # noqa: SLF001
            self.done = True

    def cancel(self, reason: str) -> None:
        """Abandons an all-reduce whose input will not be completed (the group becomes unusable:
        the peers are inside this collective)."""
        if not self.done and self._run is not None:
            self._run.abort(reason)
        self.done = True


def leader_all_reduce(pg, seq: int, fp: Fingerprint, deadline: float, flat: np.ndarray, op: ReduceOp) -> None:
    """Reduce inside each host (shared memory), all-reduce among host leaders, broadcast back."""
    partial = ReduceOp.SUM if op is ReduceOp.AVG else op
    o = None
    if pg.shm is not None:
        o = shm_op(pg, seq, fp, deadline)
        cs.reduce(o, flat, partial, 0)
    if pg.rank() in pg.leaders and len(pg.leaders) > 1:
        pg._zmq_call(seq, fp, deadline, flat.itemsize,  # noqa: SLF001
                     lambda x: cz.all_reduce(x, flat, partial, pg.config.allreduce_switch_bytes),
                     members=pg.leaders)
    if o is not None:
        cs.broadcast(o, flat, 0)
    finalize(op, flat, pg.size())


class _NetworkThread:
    """Runs the cross-host all-reduce of each round's segment, in round order, as rounds become ready.

    ``wait(i)`` returns once round ``i`` is done (``wait(len(rounds))``: all done and flushed) and
    raises what the thread raised. The thread is a daemon: if this rank fails in shared memory, it
    stops at the collective's deadline or at the peers' abort, whichever comes first."""

    def __init__(self, pg, seq: int, x: cz.Exchange, flat: np.ndarray, segments: list[tuple[int, int]],
                 op: ReduceOp):
        self.pg, self.seq, self.x, self.flat, self.segments, self.op = pg, seq, x, flat, segments, op
        self._cv = threading.Condition()
        self._ready = 0
        self._done = 0
        self._error: BaseException | None = None
        self._cancelled = False
        self._what = pg._what()  # noqa: SLF001 - the collective's name, for this thread's errors
        # round i's messages are tagged from i * stride: no round has more pieces than its
        # segment has chunks (ring blocks and doubling pieces are at most one chunk each)
        longest = max((hi - lo for lo, hi in segments), default=0)
        self._stride = -(-longest // x.chunk) + 1
        self._thread = threading.Thread(target=self._run, name=f"disttorch-hier-{pg.name}", daemon=True)
        self._thread.start()

    def ready(self, i: int) -> None:
        with self._cv:
            self._ready = i + 1
            self._cv.notify_all()

    def wait(self, i: int) -> None:
        while True:
            with self._cv:
                if self._error is not None:
                    raise self._error
                if self._done > i:
                    return
                self._cv.wait(POLL_S)
                if self._done > i or self._error is not None:
                    continue
            # a local rank's abort or another host's ABORT ends the wait at once (the thread
            # itself raises at the deadline, naming the rank it waits for)
            self.pg._shm_stalled([], False)  # noqa: SLF001

    def cancel(self) -> None:
        """Lets the thread end if it still waits for a round this rank will never hand over."""
        with self._cv:
            self._cancelled = True
            self._cv.notify_all()

    def _await(self, i: int) -> bool:
        """Waits until round ``i`` is ready; False when cancelled instead."""
        with _trace.span("hier network waits for its round", "wait", round=i), self._cv:
            while self._ready <= i and not self._cancelled:
                self._cv.wait()
            return not self._cancelled

    def _run(self) -> None:
        pg = self.pg
        pg._tls.what = self._what  # noqa: SLF001
        pg._begin_wait("all_reduce (across hosts)", self.seq)  # noqa: SLF001 - long waits are reported
        switch = pg.config.allreduce_switch_bytes
        try:
            for i, (lo, hi) in enumerate(self.segments):
                if not self._await(i):
                    return
                with _trace.span("hier network", "comm", round=i, bytes=(hi - lo) * self.flat.itemsize):
                    cz.all_reduce_part(self.x, self.flat[lo:hi], self.op, switch, i * self._stride)
                with self._cv:
                    self._done = i + 1
                    self._cv.notify_all()
            self.x.flush()
            with self._cv:
                self._done = len(self.segments) + 1
                self._cv.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the collective's thread
            with self._cv:
                self._error = exc
                self._cv.notify_all()
        finally:
            pg._end_wait()  # noqa: SLF001
