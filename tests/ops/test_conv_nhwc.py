"""ops/conv_nhwc.py: how a convolution's samples are cut into chunks and the chunks into threads."""
import pytest

from disttorch import _threads
from disttorch.ops import conv_nhwc


@pytest.fixture
def threads():
    previous = _threads.get_num_threads()
    yield _threads.set_num_threads
    _threads.set_num_threads(previous)


def _covers(chunks, n):
    return chunks[0][0] == 0 and chunks[-1][1] == n and all(
        hi == lo2 for (_, hi), (lo2, _) in zip(chunks, chunks[1:])) and all(hi > lo for lo, hi in chunks)


def test_one_thread_keeps_chunks_of_the_budget_with_near_equal_sizes(threads):
    threads(1)
    # the CNN's second layer's input gradient: 64 samples of 246 KB against a 1.5 MB budget
    chunks = conv_nhwc._chunks(64, 246_000, 3 << 19)
    assert _covers(chunks, 64) and len(chunks) == 11 and {e - s for s, e in chunks} == {6, 4}
    assert conv_nhwc._chunks(16, 100) == [(0, 16)]


@pytest.mark.parametrize("n,per_sample,budget", [(64, 246_000, 3 << 19), (16, 100, None), (7, 10**7, None),
                                                 (3, 1, None), (33, 50_000, 1 << 20)])
def test_two_threads_get_whole_chunks_of_equal_sample_counts(threads, n, per_sample, budget):
    threads(2)
    chunks = conv_nhwc._chunks(n, per_sample, budget)
    assert _covers(chunks, n)
    if n > 1:
        assert len(chunks) % 2 == 0 or len(chunks) == n  # a count the two threads share evenly
    sizes = [e - s for s, e in chunks]
    assert max(sizes) - min(sizes) <= 1
    ranges = conv_nhwc._blocks(len(chunks))
    per_thread = [chunks[hi - 1][1] - chunks[lo][0] for lo, hi in ranges]
    assert max(per_thread) - min(per_thread) <= max(1, len(chunks) // 2)  # samples, not chunks, balance
    # 11 chunks of 6 gave one thread 6 chunks (36 samples) and the other 5 (28): now 32 and 32
    if (n, per_sample) == (64, 246_000):
        assert per_thread == [32, 32]
