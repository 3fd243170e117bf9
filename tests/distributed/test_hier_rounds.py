"""The round plan of the hierarchical all-reduce (``distributed/hier_rounds.py``)."""
from __future__ import annotations

import pytest

from disttorch.distributed.hier_rounds import MIN_RAMP_PIECE_BYTES, round_ranges


def _covers(rounds, size):
    assert rounds[0][0] == 0 and rounds[-1][1] == size
    assert all(a < b for a, b in rounds) and all(b == c for (_, b), (c, _) in zip(rounds, rounds[1:]))


def test_sixteen_mib_ramps_up_and_down_around_full_rounds():
    r = 2 << 20 >> 2  # 2 MiB rounds of float32
    rounds = round_ranges(4 << 20, r, 4)  # 16 MiB
    _covers(rounds, 4 << 20)
    sizes = [b - a for a, b in rounds]
    assert sizes == [r // 8, r // 8, r // 4, r // 2] + [r] * 6 + [r // 2, r // 4, r // 8, r // 8]


def test_without_ramp_rounds_are_equal_chunks():
    assert round_ranges(10, 4, 4, ramp=False) == [(0, 4), (4, 8), (8, 10)]


def test_cuts_end_rounds_and_small_pieces_stay_whole():
    # 2.55 MiB of gradients cut after the first bucket (1.03 MiB), 2 MiB rounds: two rounds, each
    # ramped; a cut makes a round end there whatever the round size
    size, cut, r = 669_706, 270_090, 524_288
    rounds = round_ranges(size, r, 4, cuts=[cut])
    _covers(rounds, size)
    assert cut in [b for _, b in rounds]
    assert len(rounds) == 8
    # staged (DDP): the first round is reduce-scattered during backward, so only the end ramps
    staged = round_ranges(size, r, 4, cuts=[cut], ramp_up=False)
    assert staged[0] == (0, cut) and staged[1:] == rounds[4:]
    # too small to ramp (a piece would hold less than MIN_RAMP_PIECE_BYTES): left whole
    small = 8 * MIN_RAMP_PIECE_BYTES // 4 - 8
    assert round_ranges(2 * small, small, 4) == [(0, small), (small, 2 * small)]
    # a single round is never split, and an empty buffer is one empty round
    assert round_ranges(1000, 4000, 4) == [(0, 1000)]
    assert round_ranges(0, 4000, 4) == [(0, 0)]
    # cuts outside the buffer are ignored
    assert round_ranges(100, 60, 4, cuts=[0, 100, 250], ramp=False) == [(0, 60), (60, 100)]


def test_bad_round_size_is_refused():
    with pytest.raises(ValueError, match="round_elems must be positive, got 0"):
        round_ranges(10, 0, 4)
