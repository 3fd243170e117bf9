"""The pure schedules, executed on NumPy arrays for many world sizes (no sockets)."""
import numpy as np
import pytest

from disttorch.distributed import algorithms as alg

WORLDS = list(range(1, 10)) + [16, 17]


@pytest.mark.parametrize("n,parts", [(0, 3), (1, 4), (7, 3), (10, 5), (11, 4), (100, 7)])
def test_partition_covers_range_in_near_equal_blocks(n, parts):
    blocks = alg.partition(n, parts)
    assert len(blocks) == parts
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    sizes = [b - a for a, b in blocks]
    assert max(sizes) - min(sizes) <= 1 and sorted(sizes, reverse=True) == sizes


def test_chunk_ranges():
    assert alg.chunk_ranges(0, 10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert alg.chunk_ranges(5, 5, 4) == [(5, 5)]
    with pytest.raises(ValueError):
        alg.chunk_ranges(0, 1, 0)


def _ring_allreduce(arrays):
    n = len(arrays)
    bufs = [a.copy() for a in arrays]
    blocks = alg.partition(bufs[0].size, n)
    rs = [alg.ring_reduce_scatter(r, n) for r in range(n)]
    ag = [alg.ring_all_gather(r, n) for r in range(n)]
    for s in range(n - 1):  # every rank sends, then every rank receives (a synchronous round)
        sent = {}
        for r in range(n):
            st = rs[r][s]
            a, b = blocks[st.send_block]
            sent[(r, st.send_to)] = (st.send_block, bufs[r][a:b].copy())
        for r in range(n):
            st = rs[r][s]
            blk, data = sent[(st.recv_from, r)]
            assert blk == st.recv_block, "sender and receiver disagree on the block"
            a, b = blocks[blk]
            bufs[r][a:b] += data
    for r in range(n):  # after reduce-scatter rank r owns block r
        a, b = blocks[r]
        np.testing.assert_array_equal(bufs[r][a:b], sum(x[a:b] for x in arrays))
    for s in range(n - 1):
        sent = {}
        for r in range(n):
            st = ag[r][s]
            a, b = blocks[st.send_block]
            sent[(r, st.send_to)] = (st.send_block, bufs[r][a:b].copy())
        for r in range(n):
            st = ag[r][s]
            blk, data = sent[(st.recv_from, r)]
            assert blk == st.recv_block
            a, b = blocks[blk]
            bufs[r][a:b] = data
    return bufs


@pytest.mark.parametrize("n", WORLDS)
@pytest.mark.parametrize("size", [0, 1, 5, 23])
def test_ring_all_reduce_schedule(n, size):
    arrays = [np.arange(size, dtype=np.int64) * (r + 1) + r for r in range(n)]
    for buf in _ring_allreduce(arrays):
        np.testing.assert_array_equal(buf, sum(arrays))


def test_ring_forwards_the_block_it_just_received():
    # the executor relies on it to pipeline: step s+1 sends what step s reduced
    for n in WORLDS:
        for r in range(n):
            rs = alg.ring_reduce_scatter(r, n)
            assert all(rs[s + 1].send_block == rs[s].recv_block for s in range(len(rs) - 1))
            if rs:
                assert rs[-1].recv_block == r == alg.ring_all_gather(r, n)[0].send_block


@pytest.mark.parametrize("n", WORLDS)
def test_recursive_doubling_schedule(n):
    vals = [np.array([float(r + 1), 2.0 ** r]) for r in range(n)]
    bufs = [v.copy() for v in vals]
    steps = {r: alg.recursive_doubling(r, n) for r in range(n)}
    rounds = sorted({st.round for r in steps for st in steps[r]})
    for rnd in rounds:
        out = {}
        for r in range(n):
            for st in steps[r]:
                if st.round == rnd and st.action in ("send", "exchange", "send_result"):
                    out[(r, st.peer)] = bufs[r].copy()
        for r in range(n):
            for st in steps[r]:
                if st.round != rnd:
                    continue
                if st.action in ("recv_reduce", "exchange"):
                    bufs[r] = bufs[r] + out.pop((st.peer, r))
                elif st.action == "recv_result":
                    bufs[r] = out.pop((st.peer, r))
        assert not out, f"unmatched messages in round {rnd}: {list(out)}"
    for b in bufs:
        np.testing.assert_array_equal(b, sum(vals))


@pytest.mark.parametrize("n", WORLDS)
@pytest.mark.parametrize("root", [0, 1, 3])
def test_binomial_tree_reaches_everyone_once(n, root):
    root %= n
    trees = {r: alg.binomial_tree(r, n, root) for r in range(n)}
    assert trees[root].parent is None
    for r, t in trees.items():
        for c in t.children:
            assert trees[c].parent == r
        if r != root:
            assert r in trees[t.parent].children
    reached, frontier, depth = {root}, [root], 0
    while frontier:
        frontier = [c for r in frontier for c in trees[r].children]
        reached.update(frontier)
        depth += 1
    assert reached == set(range(n))
    assert depth <= max(1, (n - 1).bit_length()) + 1


@pytest.mark.parametrize("n", WORLDS)
def test_dissemination_barrier_informs_everyone(n):
    know = [{r} for r in range(n)]
    for rnd in range(len(alg.dissemination_barrier(0, n))):
        new = [set(k) for k in know]
        for r in range(n):
            to, frm = alg.dissemination_barrier(r, n)[rnd]
            assert alg.dissemination_barrier(frm, n)[rnd][0] == r
            new[r] |= know[frm]
        know = new
    assert all(k == set(range(n)) for k in know)


def test_choose_and_layout():
    assert alg.choose_all_reduce(4096, 4, 65536) == "doubling"
    assert alg.choose_all_reduce(1 << 20, 4, 65536) == "ring"
    hosts, leaders = alg.host_layout(["a", "b", "a", "c", "b"])
    assert hosts == [[0, 2], [1, 4], [3]] and leaders == [0, 1, 3]
