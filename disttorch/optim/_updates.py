"""One optimizer step's parameter updates, run as a single split over the intra-op threads.

An optimizer's update is elementwise, so any contiguous piece of a parameter (with the same piece
of its gradient and state) can be updated on its own. Updated one parameter at a time, only a
parameter of at least ``_intra_op.MIN_ELEMENTS`` elements was split, each with a hand-off of its
own, and the rest ran on one thread: the MLP benchmark's 784-512-512-10 model (401k, 262k and
three small parameters) ran its whole step on one thread. Here the step lays every parameter end
to end and cuts that line into one range per thread (the caller's a little longer,
``_intra_op.CALLER_LEAD``): one hand-off per step. Measured on the 2-core VM with 2 threads, that
model's Adam step took 975-1018 us instead of 1393-1424 us; its SGD step with momentum (three
passes over memory, no arithmetic to speak of: one core already draws what bandwidth there is)
took 501-552 us either way.

Bits: a parameter cut in two is cut at a multiple of ``_intra_op.ALIGN`` elements from its start,
and never into a piece below ``MIN_PIECE`` elements (MKL's fused kernels refuse smaller ones), so
every element is computed by the same code and SIMD grouping as when the parameter is updated
whole: results are identical for any thread count.

Scratch: updates that need scratch arrays name them by workspace slot (``ScratchSlot(0)``...).
Pieces of one range run one after another and share that range's workspace; each range has its
own, so two threads never write the same scratch.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _intra_op

#: a parameter is cut only into pieces of at least this many elements (``_vector.MIN_ELEMENTS``'
#: 8192 with room to spare): smaller ones would change which kernels update them
MIN_PIECE = 1 << 14


class ScratchSlot(NamedTuple):
    """Stands for a scratch array (workspace slot ``slot``) in an ``Update``'s operands."""
    slot: int


class Update(NamedTuple):
    """``fn(*operands)`` updates one parameter in place; ``operands`` are its arrays (parameter,
    gradient, state, all ``numel`` elements) and ``ScratchSlot``s, in ``fn``'s order."""
    fn: object
    operands: list
    numel: int


def run(updates, workspace_for) -> None:
    """Runs every update. ``workspace_for(k)`` is the ``_Workspace`` of range ``k`` (range 0 is
    the calling thread's, and the only one when nothing is split)."""
    pieces = _ranges(updates)
    if pieces is None:
        workspace = workspace_for(0)
        for update in updates:
            like = _first_array(update)
            operands = [workspace.get(like, x.slot) if type(x) is ScratchSlot else x for x in update.operands]
            _intra_op.split_flat(update.fn, operands, update.numel)  # a large one is still split
        return
    workspaces = [workspace_for(k) for k in range(len(pieces))]

    def run_range(k):
        workspace = workspaces[k]
        for update, lo, hi in pieces[k]:
            operands = [x.reshape(-1)[lo:hi] for x in update.operands if type(x) is not ScratchSlot]
            like = operands[0]
            operands = iter(operands)
            update.fn(*(workspace.get(like, x.slot) if type(x) is ScratchSlot else next(operands)
                        for x in update.operands))

    _intra_op.run(run_range, len(pieces))


def _first_array(update):
    return next(x for x in update.operands if type(x) is not ScratchSlot)


def _ranges(updates):
    """For each thread, its pieces ``(update, lo, hi)``; None where the step runs one update at a
    time (one thread, a small step, or operands that are not contiguous NumPy arrays)."""
    if len(updates) < 2:
        return None
    total = sum(u.numel for u in updates)
    parts = _intra_op.parts_for(total)
    if parts <= 1:
        return None
    for u in updates:
        for x in u.operands:
            if type(x) is ScratchSlot:
                continue
            if type(x) is not np.ndarray or not x.flags.c_contiguous or x.size != u.numel:
                return None
    cuts = [hi for _, hi in _intra_op.chunk_bounds(total, parts, 1, _intra_op.CALLER_LEAD)][:-1]
    pieces = [[] for _ in range(parts)]
    k, start = 0, 0  # the range being filled, and where the current update starts on the line
    for u in updates:
        lo = 0
        while k < len(cuts) and cuts[k] < start + u.numel:
            cut = _cut_inside(u.numel, cuts[k] - start)
            if cut > lo:
                pieces[k].append((u, lo, cut))
                lo = cut
            k += 1
        if lo < u.numel:
            pieces[k].append((u, lo, u.numel))
        start += u.numel
    pieces = [p for p in pieces if p]
    return pieces if len(pieces) > 1 else None


def _cut_inside(numel: int, at: int) -> int:
    """Where a range ending ``at`` elements into a parameter of ``numel`` cuts it: a multiple of
    ``ALIGN``, or the parameter's start or end where a piece would be under ``MIN_PIECE``."""
    at = max(0, at)
    if at < MIN_PIECE:
        return 0
    if numel - at < MIN_PIECE:
        return numel
    return at // _intra_op.ALIGN * _intra_op.ALIGN
