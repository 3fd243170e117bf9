"""Collectives over a message transport (ZeroMQ), executing the schedules of ``algorithms.py``.

Every function works on flat, contiguous NumPy arrays and one ``Exchange`` (the collective's
sequence number, fingerprint, deadline and participants). Data moves in chunks of at most
``chunk_bytes``: libzmq is slow on huge single frames, and chunks pipeline, a rank forwards chunk
``i`` while chunk ``i + 1`` is still on the wire.

Zero-copy sends read the caller's memory after ``send`` returns, so each function either never
writes memory it has sent before the receiver has it (the ring's data dependencies guarantee
that), or sends a copy (recursive doubling overwrites its buffer at once), and ``flush`` waits
until libzmq has let go of every buffer before the collective returns.
"""
from __future__ import annotations

import time

import numpy as np

from . import algorithms as alg
from .errors import CollectiveMismatchError, DistTimeoutError
from .mailbox import Fingerprint, Mailbox
from .reduce_op import ReduceOp, combine, finalize
from .transport.base import Transport
from .wire import Kind, pack

# phase numbers label the parts of an algorithm in message headers
RING_RS, RING_AG, DOUBLING, TREE, DIRECT, BARRIER = 1, 2, 3, 4, 5, 6
#: a ring step is cut into this many pieces at least (measured: one piece per step serializes the
#: ring, 4 ranks x 16 MiB took 1.6x as long) ...
PIPELINE_DEPTH = 4
#: ... unless pieces would get smaller than this (per-message costs take over)
MIN_PIPELINE_BYTES = 256 * 1024


class Exchange:
    """The messages of one collective among ``members`` (transport ranks; default: all)."""

    def __init__(self, transport: Transport, mailbox: Mailbox, *, job_id: int, group_id: int, seq: int,
                 fp: Fingerprint, deadline: float, chunk_bytes: int, itemsize: int,
                 members: list[int] | None = None, describe_rank=str):
        self.t, self.mb = transport, mailbox
        self.job_id, self.group_id, self.seq, self.fp = job_id, group_id, seq, fp
        self.deadline = deadline
        self.me = transport.rank
        self.members = members if members is not None else list(range(transport.world_size))
        self.rank = self.members.index(self.me)
        self.size = len(self.members)
        self.itemsize = max(1, itemsize)
        self.chunk = max(1, chunk_bytes // self.itemsize)
        self.shape = fp.shape if fp.shape is not None else ()
        self.dtype = None
        self.describe_rank = describe_rank

    def chunks(self, start: int, stop: int, pipeline: bool = False) -> list[tuple[int, int]]:
        """Element ranges of at most ``chunk_bytes``; with ``pipeline``, a ring block is cut into at
        least ``PIPELINE_DEPTH`` pieces (not below ``MIN_PIPELINE_BYTES``), so a rank forwards the
        first piece while the next ones are still arriving. Both ends compute the same pieces."""
        chunk = self.chunk  # never above the job's chunk size: receivers drop larger payloads
        if pipeline:
            floor = max(1, MIN_PIPELINE_BYTES // self.itemsize)
            chunk = min(chunk, max(floor, -(-(stop - start) // PIPELINE_DEPTH)))
        return alg.chunk_ranges(start, stop, chunk)

    def send(self, to: int, arr: np.ndarray, phase: int, step: int, tag: int, offset: int = 0,
             numel: int = 0, copy: bool = False) -> None:
        fp = self.fp
        hdr = pack(Kind.DATA, fp.dtype, self.job_id, self.group_id, self.me, self.seq, fp.op, fp.rop, phase,
                   fp.root, step, tag, offset, numel, arr.nbytes, self.shape)
        self.t.send(self.members[to], hdr, arr, copy)

    def _take(self, frm: int, phase: int, step: int, tag: int, dest: np.ndarray | None, nbytes: int):
        src = self.members[frm]
        msg = self.mb.take((Kind.DATA, src, self.seq, phase, step, tag), self.deadline, dest)
        if msg.header.nbytes != nbytes:
            raise CollectiveMismatchError(
                f"collective #{self.seq} {self.fp.describe()}: {self.describe_rank(src)} sent "
                f"{msg.header.nbytes} bytes for a piece of which {self.describe_rank(self.me)} expected "
                f"{nbytes} bytes (shapes or sizes differ between ranks)")
        return msg

    def recv_into(self, frm: int, dest: np.ndarray, phase: int, step: int, tag: int) -> None:
        self._take(frm, phase, step, tag, dest, dest.nbytes)

    def recv(self, frm: int, like: np.ndarray, phase: int, step: int, tag: int) -> np.ndarray:
        """The payload as an array shaped like ``like`` (a view of the received buffer)."""
        msg = self._take(frm, phase, step, tag, None, like.nbytes)
        return np.frombuffer(msg.payload, like.dtype) if like.nbytes else like[:0]

    def recv_reduce(self, frm: int, acc: np.ndarray, op: ReduceOp, phase: int, step: int, tag: int) -> None:
        incoming = self.recv(frm, acc, phase, step, tag)
        if acc.size:
            combine(op, acc, incoming)

    def flush(self) -> None:
        """Returns once no send of this collective reads caller memory any more."""
        t = self.t
        if t.sends_done():
            return
        nap, next_check = 20e-6, time.monotonic() + 0.2
        while not t.sends_done():
            now = time.monotonic()
            if now >= self.deadline:
                raise DistTimeoutError(f"collective #{self.seq} {self.fp.describe()}: data sent by "
                                       f"{self.describe_rank(self.me)} was not taken off its queue before "
                                       f"the deadline (is a peer alive?)")
            if now >= next_check:
                self.mb.watchdog.check(None)
                next_check = now + 0.2
            time.sleep(nap)
            nap = min(nap * 2, 0.005)


# -- all-reduce ------------------------------------------------------------------------------------
def all_reduce(x: Exchange, buf: np.ndarray, op: ReduceOp, switch_bytes: int) -> None:
    if x.size > 1:
        if alg.choose_all_reduce(buf.nbytes, x.size, switch_bytes) == "doubling":
            _doubling(x, buf, op)
        else:
            _ring(x, buf, op)
    finalize(op, buf, x.size)
    x.flush()


def all_reduce_part(x: Exchange, buf: np.ndarray, op: ReduceOp, switch_bytes: int, tag_base: int) -> None:
    """One of several all-reduces inside one collective (the hierarchical all-reduce runs one per
    round of its buffer): message tags start at ``tag_base``; no ``finalize``, no ``flush``."""
    if x.size > 1:
        if alg.choose_all_reduce(buf.nbytes, x.size, switch_bytes) == "doubling":
            _doubling(x, buf, op, tag_base)
        else:
            _ring(x, buf, op, tag_base)


def _doubling(x: Exchange, buf: np.ndarray, op: ReduceOp, tag_base: int = 0) -> None:
    chunks = x.chunks(0, buf.size)
    for st in alg.recursive_doubling(x.rank, x.size):
        if st.action in ("send", "exchange", "send_result"):
            for i, (a, b) in enumerate(chunks):
                # copy: this rank overwrites buf right after (exchange) or the caller may (send)
                x.send(st.peer, buf[a:b], DOUBLING, st.round, tag_base + i, a, buf.size, copy=True)
        if st.action in ("recv_reduce", "exchange"):
            for i, (a, b) in enumerate(chunks):
                x.recv_reduce(st.peer, buf[a:b], op, DOUBLING, st.round, tag_base + i)
        elif st.action == "recv_result":
            for i, (a, b) in enumerate(chunks):
                x.recv_into(st.peer, buf[a:b], DOUBLING, st.round, tag_base + i)


def _ring(x: Exchange, buf: np.ndarray, op: ReduceOp, tag_base: int = 0) -> None:
    n, r = x.size, x.rank
    blocks = alg.partition(buf.size, n)
    chunks = [x.chunks(a, b, pipeline=True) for a, b in blocks]
    rs, ag = alg.ring_reduce_scatter(r, n), alg.ring_all_gather(r, n)
    numel = buf.size
    for i, (a, b) in enumerate(chunks[rs[0].send_block]):
        x.send(rs[0].send_to, buf[a:b], RING_RS, 0, tag_base + i, a, numel)
    for s, st in enumerate(rs):
        for i, (a, b) in enumerate(chunks[st.recv_block]):
            x.recv_reduce(st.recv_from, buf[a:b], op, RING_RS, s, tag_base + i)
            # forward at once: the next step sends exactly the block just reduced (pipelining)
            if s + 1 < len(rs):
                x.send(st.send_to, buf[a:b], RING_RS, s + 1, tag_base + i, a, numel)
            else:
                x.send(st.send_to, buf[a:b], RING_AG, 0, tag_base + i, a, numel)  # this block is final: gather it
    for s, st in enumerate(ag):
        for i, (a, b) in enumerate(chunks[st.recv_block]):
            x.recv_into(st.recv_from, buf[a:b], RING_AG, s, tag_base + i)
            if s + 1 < len(ag):
                x.send(st.send_to, buf[a:b], RING_AG, s + 1, tag_base + i, a, numel)


# -- rooted collectives ----------------------------------------------------------------------------
def broadcast(x: Exchange, buf: np.ndarray, root: int) -> None:
    tree = alg.binomial_tree(x.rank, x.size, root)
    for i, (a, b) in enumerate(x.chunks(0, buf.size)):
        if tree.parent is not None:
            x.recv_into(tree.parent, buf[a:b], TREE, 0, i)
        for child in tree.children:
            x.send(child, buf[a:b], TREE, 0, i, a, buf.size)
    x.flush()


def reduce(x: Exchange, buf: np.ndarray, op: ReduceOp, root: int) -> None:
    """Reduces into ``buf`` on ``root``; other ranks' ``buf`` is left unchanged."""
    tree = alg.binomial_tree(x.rank, x.size, root)
    acc = buf if (tree.parent is None or not tree.children) else buf.copy()
    for i, (a, b) in enumerate(x.chunks(0, buf.size)):
        for child in reversed(tree.children):
            x.recv_reduce(child, acc[a:b], op, TREE, 0, i)
        if tree.parent is not None:
            x.send(tree.parent, acc[a:b], TREE, 0, i, a, buf.size)
    if tree.parent is None:
        finalize(op, buf, x.size)
    x.flush()


def gather(x: Exchange, inp: np.ndarray, outs: list[np.ndarray] | None, root: int) -> None:
    if x.rank == root:
        for k in range(x.size):
            if k == root:
                np.copyto(outs[k], inp)
                continue
            for i, (a, b) in enumerate(x.chunks(0, inp.size)):
                x.recv_into(k, outs[k][a:b], DIRECT, 0, i)
    else:
        for i, (a, b) in enumerate(x.chunks(0, inp.size)):
            x.send(root, inp[a:b], DIRECT, 0, i, a, inp.size)
        x.flush()


def scatter(x: Exchange, ins: list[np.ndarray] | None, out: np.ndarray, root: int) -> None:
    if x.rank == root:
        for k in range(x.size):
            if k == root:
                continue
            for i, (a, b) in enumerate(x.chunks(0, out.size)):
                x.send(k, ins[k][a:b], DIRECT, 0, i, a, out.size)
        np.copyto(out, ins[root])
        x.flush()
    else:
        for i, (a, b) in enumerate(x.chunks(0, out.size)):
            x.recv_into(root, out[a:b], DIRECT, 0, i)


# -- all-gather / reduce-scatter / all-to-all -----------------------------------------------------
def all_gather(x: Exchange, inp: np.ndarray, outs: list[np.ndarray], switch_bytes: int) -> None:
    """``outs[k]`` (flat, all of ``inp``'s size) receives rank k's ``inp``."""
    n, r = x.size, x.rank
    np.copyto(outs[r], inp)
    chunks = x.chunks(0, inp.size)
    if inp.nbytes * n < switch_bytes:
        for k in _others(r, n):
            for i, (a, b) in enumerate(chunks):
                x.send(k, outs[r][a:b], DIRECT, 0, i, a, inp.size)
        for k in _others_rev(r, n):
            for i, (a, b) in enumerate(chunks):
                x.recv_into(k, outs[k][a:b], DIRECT, 0, i)
    else:
        steps = alg.ring_all_gather(r, n)
        chunks = x.chunks(0, inp.size, pipeline=True)
        for i, (a, b) in enumerate(chunks):
            x.send(steps[0].send_to, outs[r][a:b], RING_AG, 0, i, a, inp.size)
        for s, st in enumerate(steps):
            for i, (a, b) in enumerate(chunks):
                x.recv_into(st.recv_from, outs[st.recv_block][a:b], RING_AG, s, i)
                if s + 1 < len(steps):
                    x.send(st.send_to, outs[st.recv_block][a:b], RING_AG, s + 1, i, a, inp.size)
    x.flush()


def reduce_scatter(x: Exchange, ins: list[np.ndarray], out: np.ndarray, op: ReduceOp, switch_bytes: int) -> None:
    """``out`` = reduction over ranks of their ``ins[rank]``; ``ins`` is left unchanged."""
    n, r = x.size, x.rank
    chunks = x.chunks(0, out.size)
    if out.nbytes * n < switch_bytes or n == 1:
        for k in _others(r, n):
            for i, (a, b) in enumerate(chunks):
                x.send(k, ins[k][a:b], DIRECT, 0, i, a, out.size)
        np.copyto(out, ins[r])
        for k in range(n):  # fixed order: the same inputs give the same result every run
            if k != r:
                for i, (a, b) in enumerate(chunks):
                    x.recv_reduce(k, out[a:b], op, DIRECT, 0, i)
    else:
        work = [blk.copy() for blk in ins]  # the ring reduces in place
        rs = alg.ring_reduce_scatter(r, n)
        chunks = x.chunks(0, out.size, pipeline=True)
        for i, (a, b) in enumerate(chunks):
            x.send(rs[0].send_to, work[rs[0].send_block][a:b], RING_RS, 0, i, a, out.size)
        for s, st in enumerate(rs):
            for i, (a, b) in enumerate(chunks):
                x.recv_reduce(st.recv_from, work[st.recv_block][a:b], op, RING_RS, s, i)
                if s + 1 < len(rs):
                    x.send(st.send_to, work[st.recv_block][a:b], RING_RS, s + 1, i, a, out.size)
        np.copyto(out, work[r])
    finalize(op, out, n)
    x.flush()


def all_to_all(x: Exchange, ins: list[np.ndarray], outs: list[np.ndarray]) -> None:
    """``outs[k]`` on rank r receives rank k's ``ins[r]``; pieces may differ in size."""
    n, r = x.size, x.rank
    np.copyto(outs[r], ins[r])
    for k in _others(r, n):
        for i, (a, b) in enumerate(x.chunks(0, ins[k].size)):
            x.send(k, ins[k][a:b], DIRECT, 0, i, a, ins[k].size)
    for k in _others_rev(r, n):
        for i, (a, b) in enumerate(x.chunks(0, outs[k].size)):
            x.recv_into(k, outs[k][a:b], DIRECT, 0, i)
    x.flush()


def barrier(x: Exchange) -> None:
    empty = np.empty(0, np.uint8)
    for rnd, (to, frm) in enumerate(alg.dissemination_barrier(x.rank, x.size)):
        x.send(to, empty, BARRIER, rnd, 0)
        x.recv_into(frm, empty, BARRIER, rnd, 0)


def _others(r: int, n: int) -> list[int]:
    return [(r + i) % n for i in range(1, n)]


def _others_rev(r: int, n: int) -> list[int]:
    return [(r - i) % n for i in range(1, n)]
