"""Collectives among the ranks of one host, through a shared-memory segment (``transport/shm.py``).

Each collective runs in *rounds*. In a round every rank writes into its own slot, all meet at the
barrier, and every rank reads what it needs from the others' slots. Rounds alternate between the
two slots of each rank, so a round's writes never race the previous round's reads (between them
lies the next round's barrier). The first barrier of every collective also compares the
fingerprints all ranks published before it, so a mismatch is caught by every rank at once, with
the full picture.

All-reduce per round of ``m`` elements split into ``n`` segments: rank r copies the segments the
others reduce into its slot, barrier, reduces segment r from its own array plus the others' slots
and publishes it, barrier, copies the others' reduced segments out. Every rank moves about
``3 (n-1)/n`` of the data: memory bandwidth, not a network, is the limit.
"""
from __future__ import annotations

import numpy as np

from . import algorithms as alg
from .reduce_op import ReduceOp, combine, finalize
from .transport.shm import ShmComm

# fingerprint words: seq, op, rop, dtype, root, ndim, numel, shape hash, aux, first dims
FP_COMPARED = 8
FP_AUX = 8
FP_DIMS = 9


class ShmOp:
    """One collective on a ShmComm: deadline, and the fingerprint check at its first barrier."""

    def __init__(self, comm: ShmComm, seq: int, deadline: float, check_fingerprints, cap_bytes: int):
        self.c, self.seq, self.deadline, self.cap_bytes = comm, seq, deadline, cap_bytes
        self._check = check_fingerprints
        self.fingerprints = None

    def barrier(self) -> None:
        self.c.barrier(self.deadline)
        if self.fingerprints is None:
            self.fingerprints = self.c.fingerprints_of(self.seq)
            self._check(self.fingerprints)

    def cap(self, itemsize: int, parts: int = 1) -> int:
        """Elements per piece per round when a rank writes ``parts`` pieces into its slot."""
        return max(1, self.cap_bytes // (max(1, itemsize) * parts))

    def slot(self, k: int, parity: int, dtype, count: int, start: int = 0) -> np.ndarray:
        s = self.c.slot(k, parity)
        isz = np.dtype(dtype).itemsize
        return s[start * isz:(start + count) * isz].view(dtype)


def all_reduce(o: ShmOp, buf: np.ndarray, op: ReduceOp) -> None:
    """Each slot-sized round is ``reduce_scatter_round`` then ``all_gather_round`` (defined below,
    shared with ``hierarchical.py``, which puts its cross-host step between the two)."""
    for a, b in alg.chunk_ranges(0, buf.size, o.cap(buf.itemsize)):
        x = buf[a:b]
        all_gather_round(o, x, reduce_scatter_round(o, x, op))
    finalize(op, buf, o.c.n)


def reduce(o: ShmOp, buf: np.ndarray, op: ReduceOp, root: int) -> None:
    """Like all_reduce, but only ``root`` copies the result out; the others' ``buf`` stays unchanged."""
    c, n, me = o.c, o.c.n, o.c.me
    for a, b in alg.chunk_ranges(0, buf.size, o.cap(buf.itemsize)):
        m = b - a
        x = buf[a:b]
        segs = alg.partition(m, n)
        p = c.next_parity()
        mine = o.slot(me, p, buf.dtype, m)
        np.copyto(mine, x)
        o.barrier()
        lo, hi = segs[me]
        for k in range(n):
            if k != me and hi > lo:
                combine(op, mine[lo:hi], o.slot(k, p, buf.dtype, hi - lo, lo))
        c.barrier(o.deadline)
        if me == root:
            for k, (lo, hi) in enumerate(segs):
                if hi > lo:
                    np.copyto(x[lo:hi], o.slot(k, p, buf.dtype, hi - lo, lo))
    if me == root:
        finalize(op, buf, n)


def broadcast(o: ShmOp, buf: np.ndarray, root: int) -> None:
    c, me = o.c, o.c.me
    for a, b in alg.chunk_ranges(0, buf.size, o.cap(buf.itemsize)):
        p = c.next_parity()
        if me == root:
            np.copyto(o.slot(me, p, buf.dtype, b - a), buf[a:b])
        o.barrier()
        if me != root:
            np.copyto(buf[a:b], o.slot(root, p, buf.dtype, b - a))


def all_gather(o: ShmOp, inp: np.ndarray, outs: list[np.ndarray] | None, root: int = -1) -> None:
    """``outs[k]`` receives rank k's ``inp``; with ``root >= 0`` only the root reads (gather)."""
    c, n, me = o.c, o.c.n, o.c.me
    for a, b in alg.chunk_ranges(0, inp.size, o.cap(inp.itemsize)):
        p = c.next_parity()
        np.copyto(o.slot(me, p, inp.dtype, b - a), inp[a:b])
        o.barrier()
        if root < 0 or me == root:
            for k in range(n):
                src = inp[a:b] if k == me else o.slot(k, p, inp.dtype, b - a)
                np.copyto(outs[k][a:b], src)


def scatter(o: ShmOp, ins: list[np.ndarray] | None, out: np.ndarray, root: int) -> None:
    c, n, me = o.c, o.c.n, o.c.me
    cap = o.cap(out.itemsize, n)
    for a, b in alg.chunk_ranges(0, out.size, cap):
        m = b - a
        p = c.next_parity()
        if me == root:
            for k in range(n):
                np.copyto(o.slot(me, p, out.dtype, m, k * m), ins[k][a:b])
        o.barrier()
        np.copyto(out[a:b], o.slot(root, p, out.dtype, m, me * m))


def reduce_scatter(o: ShmOp, ins: list[np.ndarray], out: np.ndarray, op: ReduceOp) -> None:
    c, n, me = o.c, o.c.n, o.c.me
    cap = o.cap(out.itemsize, n)
    for a, b in alg.chunk_ranges(0, out.size, cap):
        m = b - a
        p = c.next_parity()
        for k in range(n):
            if k != me:
                np.copyto(o.slot(me, p, out.dtype, m, k * m), ins[k][a:b])
        o.barrier()
        acc = out[a:b]
        np.copyto(acc, ins[me][a:b])
        for k in range(n):
            if k != me:
                combine(op, acc, o.slot(k, p, out.dtype, m, me * m))
    finalize(op, out, n)


def all_to_all(o: ShmOp, ins: list[np.ndarray], outs: list[np.ndarray]) -> None:
    """Pieces may differ in size: a first barrier shares each rank's largest piece (published in the
    fingerprint's ``FP_AUX`` word), and the largest of all fixes the number of rounds."""
    c, n, me = o.c, o.c.n, o.c.me
    o.barrier()
    max_piece = int(o.fingerprints[:, FP_AUX].max())
    dtype = outs[0].dtype
    cap = o.cap(dtype.itemsize, n)
    for a, b in alg.chunk_ranges(0, max_piece, cap):
        m = b - a
        p = c.next_parity()
        for k in range(n):
            if k != me:
                lo, hi = min(a, ins[k].size), min(b, ins[k].size)
                np.copyto(o.slot(me, p, dtype, hi - lo, k * m), ins[k][lo:hi])
        o.barrier()
        for k in range(n):
            lo, hi = min(a, outs[k].size), min(b, outs[k].size)
            if k == me:
                np.copyto(outs[k][lo:hi], ins[k][lo:hi])
            else:
                np.copyto(outs[k][lo:hi], o.slot(k, p, dtype, hi - lo, me * m))


def barrier(o: ShmOp) -> None:
    o.barrier()


# -- the shared-memory halves of the sliced hierarchical all-reduce (``hierarchical.py``) ---------
def reduce_scatter_round(o: ShmOp, x: np.ndarray, op: ReduceOp) -> tuple:
    """One round of ``all_reduce``'s first half: afterwards segment ``me`` of ``x`` (of
    ``partition(x.size, n)``) holds the reduction over this host's ranks; the other segments of
    ``x`` are left as they were. ``x`` must fit one slot. The summation order is all_reduce's.
    Returns the round (slot parity, segments, this rank's slot) for ``all_gather_round``."""
    c, n, me = o.c, o.c.n, o.c.me
    segs = alg.partition(x.size, n)
    p = c.next_parity()
    mine = o.slot(me, p, x.dtype, x.size)
    for k, (lo, hi) in enumerate(segs):
        if k != me and hi > lo:
            np.copyto(mine[lo:hi], x[lo:hi])
    o.barrier()
    lo, hi = segs[me]
    if hi > lo:
        acc = x[lo:hi]
        for k in range(n):
            if k != me:
                combine(op, acc, o.slot(k, p, x.dtype, hi - lo, lo))
    return p, segs, mine


def all_gather_round(o: ShmOp, x: np.ndarray, after: tuple | None = None) -> None:
    """The matching second half: every rank's segment ``me`` of ``x`` is copied into the others' ``x``.

    ``after``: what ``reduce_scatter_round`` returned for this ``x``. The segment is then published
    in the slot that round used (no rank read the place of a rank's own segment there, so nothing
    races) and its partition is reused: all_reduce's path, which does no more between its two
    barriers than it must. None takes the next parity."""
    c, n, me = o.c, o.c.n, o.c.me
    if after is None:
        p, segs = c.next_parity(), alg.partition(x.size, n)
        lo, hi = segs[me]
        own = o.slot(me, p, x.dtype, hi - lo, lo)
    else:
        p, segs, mine = after
        lo, hi = segs[me]
        own = mine[lo:hi]
    if hi > lo:
        np.copyto(own, x[lo:hi])
    o.barrier()
    for k, (lo, hi) in enumerate(segs):
        if k != me and hi > lo:
            np.copyto(x[lo:hi], o.slot(k, p, x.dtype, hi - lo, lo))
