"""distributed/direct_reduce.py: the all-reduce whose inputs ranks write into shared memory (DDP's path)."""
import pytest

import _direct_workers as w
import harness


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world,numel,dtype", [(2, 1000, "float32"), (3, 4099, "float64"), (4, 22, "int64")])
def test_sums_every_rank_area_over_alternating_rounds(world, numel, dtype):
    results = harness.run(w.rounds, world, numel, dtype)
    assert all(r["created"] for r in results)
    for rank, r in enumerate(results):
        assert not r["failures"], f"rank {rank}: {r['failures']}"
        assert r["file_gone"], f"rank {rank}: its /dev/shm file is still there"


@pytest.mark.timeout(120)
def test_more_ranks_than_max_fall_back_on_every_rank():
    results = harness.run(w.rounds, 5, 100, "float32")
    assert [r["created"] for r in results] == [False] * 5


@pytest.mark.timeout(120)
def test_not_created_without_shared_memory():
    assert harness.run(w.created_over_sockets, 2, env={"DISTTORCH_TRANSPORT": "tcp"}) == [False, False]


@pytest.mark.timeout(120)
def test_mismatch_with_a_plain_all_reduce_is_named():
    results = harness.run(w.direct_against_plain, 2, raise_errors=False, timeout=10)
    for r in results:
        assert isinstance(r, harness.RankError) and r.type_name == "CollectiveMismatchError", r
        assert "all_reduce_direct" in r.message and "all_reduce(" in r.message, r.message


@pytest.mark.timeout(120)
def test_a_rank_without_shared_memory_space_makes_everyone_fall_back():
    results = harness.run(w.one_rank_out_of_shm, 2)
    assert [r["created"] for r in results] == [False, False]
    assert [r["left"] for r in results] == [[], []]


@pytest.mark.timeout(120)
def test_a_dead_peer_is_named_not_waited_for():
    res = harness.run(w.peer_dies_before_combining, 3, timeout=20, job_timeout=60, raise_errors=False,
                      wait_for=[0, 1])
    for rank in (0, 1):
        r = res[rank]
        assert not isinstance(r, Exception) and r["error"] is not None, r
        assert "rank 2" in r["message"] and r["elapsed"] < 20, r
        assert "Aborted" in r["again"], r
