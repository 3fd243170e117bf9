"""A small pool of threads that splits large elementwise work over the intra-op threads.

NumPy runs every ufunc on one thread; PyTorch splits large elementwise ops and optimizer updates
over its intra-op pool. NumPy releases the GIL inside its loops, so Python threads that each run
the same ufunc on their own contiguous chunk do run in parallel. The pool has
``set_num_threads(n) - 1`` threads: the calling thread always does chunk 0 itself.

Rules that keep it safe and invisible:

- Nothing starts at import. The threads start on the first split that needs them, so the fork
  server's template (which must fork with one thread) and every process that never uses more
  than one thread stay single-threaded. After ``fork`` the child forgets the parent's threads
  (they do not exist there) and starts its own when it first needs them.
- With one intra-op thread, or below ``MIN_ELEMENTS``, the caller runs the work as one piece:
  the pool is not even looked at.
- Only elementwise work is split, and chunk boundaries fall on multiples of ``ALIGN`` elements
  from the array's start, so every element is computed by the same code as without the split:
  results are bit-identical to one thread. Reductions are never split here.
- One split at a time: a split requested while another runs (from a second user thread, or from
  inside a chunk) runs on its caller as one piece rather than wait.
- The caller never waits for a pool thread that has not started: chunks are claimed, and the
  caller claims what is left after its own (``_Split``). On a busy machine, where a woken thread
  may wait a whole time slice for a core, a split then costs about what one thread would.
"""
from __future__ import annotations

import collections
import itertools
import os
import threading

import numpy as np

from . import _threads

__all__ = ["MIN_ELEMENTS", "ALIGN", "parts_for", "run", "chunk_bounds", "ufunc", "iop", "split_flat",
           "add", "mul", "add_", "relu", "relu_into", "relu_backward",
           "started_threads"]

#: the smallest op (elements) worth splitting. A hand-off to a pool thread that is already
#: running costs about 7 us, but on a VM a pool thread whose core went idle takes 60-90 us to
#: wake (2-core Xeon VM, quiet: a float32 add over 2**17 elements took 32 us on one thread and
#: 104 us split in two). From 2**19 elements the split pays: the MLP step with 2 threads took
#: 4.86 ms against 5.54 ms with splits from 2**17 (same process, alternating).
MIN_ELEMENTS = 1 << 19
#: the calling thread's extra share of a split (``chunk_bounds``' lead), for elementwise splits and
#: split GEMMs: a pool thread starts its chunk 60-80 us after the caller (its wake-up, then the
#: GIL), and a caller that finishes first sleeps until the last chunk ends, then takes 60-90 us
#: to wake. Traced on the 2-core VM: a 256x784 @ 784x512 product split evenly took 745 us, the
#: caller idle from 635 us on; with 53% to the caller 679 us (56%: 684, 60%: 856). Alternating
#: in one process, the MLP step with 2 threads took 3% less at leads 0.02-0.045 than at 0
#: (the caller blocked at 6-8% of splits instead of 81-86%); ReLU and its backward over 2.36M
#: elements 2-4% less at 0.03-0.1, 1% more at 0.15.
CALLER_LEAD = 0.03
#: chunk boundaries are multiples of this many elements (256 bytes of float32): SIMD loops then
#: group the elements of every chunk exactly as they would group the whole array's
ALIGN = 64

_workers: list = []       # the started pool threads
_tickets = collections.deque()  # one entry per pool thread asked to help with a split
_wake = threading.Semaphore(0)  # released once per ticket
_busy = threading.Lock()  # held while a split runs: splits never nest or overlap


class _Split:
    """One split: ``parts`` chunks that any thread may claim, in order, until none is left.

    The caller claims chunks too, so when a pool thread is slow to wake (the other cores are
    busy) the caller simply does its chunks as well and never waits for a thread that has not
    started: on a loaded machine a split costs about what one thread would."""

    __slots__ = ("fn", "parts", "claim", "mutex", "finished", "all_done", "error")

    def __init__(self, fn, parts: int):
        self.fn, self.parts = fn, parts
        self.claim = itertools.count()  # next() is atomic under the GIL
        self.mutex = threading.Lock()
        self.finished = 0
        self.all_done = threading.Lock()
        self.all_done.acquire()  # released by whoever finishes the last chunk
        self.error = None

    def work(self) -> None:
        """Runs chunks until none is left to claim."""
        while True:
            k = next(self.claim)
            if k >= self.parts:
                return
            try:
                self.fn(k)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                if self.error is None:
                    self.error = exc
            with self.mutex:
                self.finished += 1
                last = self.finished == self.parts
            if last:
                self.all_done.release()


def _pool_thread():
    while True:
        _wake.acquire()
        _tickets.popleft().work()  # a split finished before this thread woke finds nothing left


def run(fn, parts: int) -> None:
    """Calls ``fn(k)`` for ``k in range(parts)``, on this thread and up to ``parts - 1`` pool
    threads at the same time; returns when all are done and re-raises the first error.

    Where no split is possible (one intra-op thread, or another split running) the calls run
    here one after another."""
    threads = _threads.intra_op_threads()
    if parts <= 1 or threads <= 1 or not _busy.acquire(blocking=False):
        for k in range(max(parts, 1)):
            fn(k)
        return
    try:
        helpers = min(parts, threads) - 1
        while len(_workers) < helpers:
            t = threading.Thread(target=_pool_thread, name=f"disttorch-intra-op-{len(_workers) + 1}", daemon=True)
            t.start()
            _workers.append(t)
        split = _Split(fn, parts)
        for _ in range(helpers):
            _tickets.append(split)
            _wake.release()
        split.work()
        split.all_done.acquire()  # at most the chunks pool threads are running right now
        if split.error is not None:
            raise split.error
    finally:
        _busy.release()


def parts_for(numel: int, minimum: int = MIN_ELEMENTS) -> int:
    """How many chunks an op of ``numel`` units of work is split into (1: run it as one piece):
    none below ``minimum`` (elements for elementwise ops; ``_gemm`` passes its own, in
    multiply-adds), then one per ``minimum / 2`` units, at most one per intra-op thread."""
    if numel < minimum:
        return 1
    n = _threads.intra_op_threads()
    if n <= 1:
        return 1
    return max(1, min(n, numel // (minimum // 2)))


def chunk_bounds(numel: int, parts: int, align: int = ALIGN, lead: float = 0.0) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``range(numel)``, inner bounds multiples of ``align``.

    ``lead``: the first range (the caller's, see ``run``) takes that fraction of ``numel`` more
    than an even share, the others share the rest evenly. Pool threads start their chunks late
    (their wake-up), so an even split leaves the caller waiting for them, and a caller that
    blocks takes as long again to wake; a caller that finishes last never blocks."""
    if lead > 0 and parts > 1:
        first = int(round(numel * (1 / parts + lead) / align)) * align
        first = max(0, min(numel, first))
        rest = chunk_bounds(numel - first, parts - 1, align)
        return [(0, first)] + [(first + lo, first + hi) for lo, hi in rest]
    step = -(-numel // parts)
    step = -(-step // align) * align
    return [(min(k * step, numel), min((k + 1) * step, numel)) for k in range(parts)]


def _splittable(x, n_rows: int) -> bool:
    """An operand that can be cut along axis 0 with the output: a C-contiguous NumPy array of
    the output's leading length (lower-rank or length-1 operands broadcast and go whole)."""
    return type(x) is np.ndarray and x.ndim > 0 and x.shape[0] == n_rows and n_rows > 1


def _plan(inputs, shape):
    """(parts, rows per part bounds) for an op whose result has ``shape``, or None: no split."""
    if not shape:
        return None
    numel = 1
    for s in shape:
        numel *= s
    parts = parts_for(numel)
    if parts <= 1:
        return None
    for x in inputs:
        if type(x) is np.ndarray:
            if not x.flags.c_contiguous or x.dtype.kind not in "fb" or x.ndim > len(shape):
                return None
        elif not isinstance(x, (int, float, bool)):
            return None  # an operand type the split does not know (a 0-d array subclass, CuPy, ...)
    rows = shape[0]
    row_elems = numel // rows
    if len(shape) == 1:
        bounds = chunk_bounds(rows, parts, ALIGN, CALLER_LEAD)
    else:  # whole rows per chunk; with small rows, as close to ALIGN elements as rows allow
        align_rows = max(1, ALIGN // row_elems) if row_elems < ALIGN else 1
        if rows < parts:
            return None
        bounds = chunk_bounds(rows, parts, align_rows, CALLER_LEAD)
    bounds = [(lo, hi) for lo, hi in bounds if hi > lo]
    return bounds if len(bounds) > 1 else None


def ufunc(uf, *inputs, out=None):
    """``uf(*inputs, out=out)`` (a NumPy ufunc), split over the intra-op threads when large.

    Operands are NumPy arrays or Python scalars; arrays that broadcast along axis 0 (a bias row)
    go to every chunk whole. Anything else (CuPy arrays, views that are not C-contiguous,
    integer or complex dtypes, small ops) runs as the plain ufunc call."""
    if out is not None:
        shape = out.shape
        if type(out) is not np.ndarray or not out.flags.c_contiguous or any(
                x is not out and type(x) is np.ndarray and np.may_share_memory(x, out) for x in inputs):
            # an operand overlapping the output: NumPy buffers the whole op, chunks would not
            return uf(*inputs, out=out)
    else:
        first = inputs[0]
        shape = first.shape if type(first) is np.ndarray else ()
        for x in inputs[1:]:
            if type(x) is np.ndarray and x.shape != shape:
                if x.ndim > len(shape) or x.size > first.size:
                    return uf(*inputs)  # the result is larger than the first operand: keep it simple
    bounds = _plan(inputs + ((out,) if out is not None else ()), shape)
    if bounds is None:
        return uf(*inputs) if out is None else uf(*inputs, out=out)
    rows = shape[0]
    cut = [_splittable(x, rows) and x.ndim == len(shape) for x in inputs]
    if out is None:  # NumPy's own promotion decides the dtype: run it on one row
        probe = uf(*(x[:1] if c else x for x, c in zip(inputs, cut)))
        if probe.shape[1:] != shape[1:]:
            return uf(*inputs)
        out = np.empty(shape, probe.dtype)

    def chunk(k):
        lo, hi = bounds[k]
        uf(*(x[lo:hi] if c else x for x, c in zip(inputs, cut)), out=out[lo:hi])

    run(chunk, len(bounds))
    return out


def iop(uf, target, other):
    """``target = uf(target, other)`` in place (``+=``, ``*=``), split when large; returns target."""
    return ufunc(uf, target, other, out=target)


# ---- the ops' dispatch point: large NumPy arrays may be split; small ones and anything else (CuPy)
# take the plain operator at once, so small ops pay one type check and one size check
def add(a, b):
    """``a + b``."""
    if type(a) is np.ndarray and a.size >= MIN_ELEMENTS:
        return ufunc(np.add, a, b)
    return a + b


def mul(a, b):
    """``a * b``."""
    if type(a) is np.ndarray and a.size >= MIN_ELEMENTS:
        return ufunc(np.multiply, a, b)
    return a * b


def add_(target, other):
    """``target += other``."""
    if type(target) is np.ndarray and target.size >= MIN_ELEMENTS:
        return ufunc(np.add, target, other, out=target)
    target += other
    return target


def relu(xp, x):
    """``max(x, 0)``."""
    if xp is np and type(x) is np.ndarray and x.size >= MIN_ELEMENTS:
        return ufunc(np.maximum, x, 0)
    return xp.maximum(x, 0)


def relu_into(x):
    """``x = max(x, 0)`` in place."""
    if type(x) is np.ndarray and x.size >= MIN_ELEMENTS:
        return ufunc(np.maximum, x, 0, out=x)
    return np.maximum(x, 0, out=x)


def relu_backward(g, out):
    """``g`` where the ReLU's output ``out`` is not ``<= 0``, else 0: PyTorch's ``threshold_backward``,
    so a NaN output passes its gradient on (``out > 0`` would stop it). A ReLU's output is >= 0
    or NaN, so that is exactly ``out != 0``: one comparison, as fast as ``out > 0``."""
    if (type(g) is np.ndarray and type(out) is np.ndarray and g.size >= MIN_ELEMENTS and g.shape == out.shape
            and g.dtype.kind == "f" and g.flags.c_contiguous and out.flags.c_contiguous):
        # one hand-off for both passes, each thread's mask only its own chunk (2 threads, 2.36M
        # float32: 0.93 ms against 1.15 ms as two splits)
        result = np.empty(g.shape, g.dtype)
        split_flat(lambda gc, oc, rc: np.multiply(gc, oc != 0, out=rc), (g, out, result), g.size)
        return result
    return g * (out != 0)


def split_flat(fn, arrays, numel: int) -> None:
    """Calls ``fn(*chunks)`` for contiguous chunks of the flat ``arrays`` (all C-contiguous, all
    ``numel`` elements), on the intra-op threads when large; as one call otherwise.

    For multi-pass elementwise updates (an optimizer's): each thread makes every pass over its
    own chunk, one hand-off for the whole update."""
    parts = parts_for(numel)
    if parts > 1 and all(type(a) is np.ndarray and a.flags.c_contiguous and a.size == numel for a in arrays):
        flat = [a.reshape(-1) for a in arrays]
        bounds = [(lo, hi) for lo, hi in chunk_bounds(numel, parts, ALIGN, CALLER_LEAD) if hi > lo]
        if len(bounds) > 1:
            run(lambda k: fn(*(a[bounds[k][0]:bounds[k][1]] for a in flat)), len(bounds))
            return
    fn(*arrays)


def started_threads() -> int:
    """Pool threads started in this process (0 until a split first needed them)."""
    return len(_workers)


def _forget_in_child():
    """After fork: the parent's pool threads do not exist here; start afresh when needed."""
    global _busy, _wake
    _workers.clear()
    _tickets.clear()
    _wake = threading.Semaphore(0)
    _busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
