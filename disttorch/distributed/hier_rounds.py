"""The rounds of the hierarchical all-reduce: where its buffer is cut, with a ramp at both ends.

Each round is reduce-scattered in shared memory, sent across hosts by the network thread, then
all-gathered in shared memory (``hierarchical.py``). Only the network part of one round overlaps
the shared-memory parts of its neighbours, so the first round's reduce-scatter (the link is idle
until it is done) and the last round's all-gather (the link is idle again) are paid in full. A
ramp makes those two rounds small: the first round of the plan is split into pieces of 1/8, 1/8,
1/4 and 1/2 of its size and the last round into the mirror image, so the link starts after a
reduce-scatter of 1/8 of a round and the job ends one all-gather of 1/8 of a round after the link.

``cuts`` are element offsets where a round must end (DDP's staged all-reduce cuts at bucket
boundaries, so that a round never waits for a bucket after its own). Every rank derives the same
plan from the same arguments, which keeps the result bit-identical on every rank.
"""
from __future__ import annotations

from . import algorithms as alg

#: the ramp, in eighths of the round it replaces (first round: as listed; last round: reversed)
RAMP_EIGHTHS = (1, 1, 2, 4)
#: a round is ramped only when its smallest piece would still hold this many bytes: below that the
#: per-round costs (a shared-memory barrier each side, a network turnaround) outweigh the gain
MIN_RAMP_PIECE_BYTES = 64 << 10


def round_ranges(size: int, round_elems: int, itemsize: int, cuts=(), ramp: bool = True,
                 ramp_up: bool = True) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(size)``: rounds of at most ``round_elems`` elements
    that end at every cut, the first and last ramped (see the module docstring). ``ramp_up=False``
    leaves the first round whole (a staged all-reduce's first round is reduce-scattered while its
    caller still computes, so nothing waits for it, and more rounds would only cost turnarounds)."""
    if round_elems <= 0:
        raise ValueError(f"round_elems must be positive, got {round_elems}")
    bounds = sorted({0, size, *(int(c) for c in cuts if 0 < int(c) < size)})
    rounds = []
    for a, b in zip(bounds, bounds[1:]):
        rounds += alg.chunk_ranges(a, b, round_elems)
    if not rounds:
        return [(0, 0)]
    if not ramp:
        return rounds
    if len(rounds) == 1:
        return rounds  # one round has no neighbour to overlap with: splitting it only adds rounds
    first = _ramped(*rounds[0], RAMP_EIGHTHS, itemsize) if ramp_up else [rounds[0]]
    last = _ramped(*rounds[-1], RAMP_EIGHTHS[::-1], itemsize)
    return first + rounds[1:-1] + last


def _ramped(a: int, b: int, eighths: tuple[int, ...], itemsize: int) -> list[tuple[int, int]]:
    """``[a, b)`` split in the proportions ``eighths`` (summing to 8), or whole when too small."""
    n = b - a
    if n * min(eighths) // 8 * itemsize < MIN_RAMP_PIECE_BYTES:
        return [(a, b)]
    pieces, start, done = [], a, 0
    for e in eighths:
        done += e
        stop = a + n * done // 8
        pieces.append((start, stop))
        start = stop
    return pieces
