"""Every collective, reduce op and dtype on 2, 3 and 4 processes, against NumPy.

Each job runs the whole matrix of ``workers.collective_matrix`` (empty tensors, sizes that do not
divide by the world size, multi-chunk sizes) on one engine: shared memory (the default on one
host), sockets only (``DISTTORCH_TRANSPORT=tcp``), and the hierarchical mix (two simulated hosts).
Chunk sizes are made small so the multi-chunk / multi-round paths run on small tensors.
"""
import pytest

import harness
import workers

SHM = {"DISTTORCH_SHM_SLOT_BYTES": 64 * 1024, "DISTTORCH_SHM_CHUNK_BYTES": 16 * 1024}
TCP = {"DISTTORCH_TRANSPORT": "tcp", "DISTTORCH_CHUNK_BYTES": 64 * 1024, "DISTTORCH_ALLREDUCE_SWITCH": 32 * 1024}


def _assert_clean(results):
    failures = [f for r in results for f in r["failures"]]
    assert not failures, "\n".join(failures[:20])


@pytest.mark.timeout(180)
@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("engine", ["shm", "tcp"])
def test_collective_matrix(world, engine):
    results = harness.run(workers.collective_matrix, world, env=SHM if engine == "shm" else TCP, job_timeout=150)
    _assert_clean(results)
    assert all(r["checked"] > 1000 for r in results)


@pytest.mark.timeout(180)
def test_collective_matrix_two_simulated_hosts():
    # ranks 0,1 on "host A", 2,3 on "host B": shared memory inside a host, tcp between them,
    # and the hierarchical all-reduce
    per_rank = {r: {"DISTTORCH_HOST_ID": "A" if r < 2 else "B"} for r in range(4)}
    results = harness.run(workers.collective_matrix, 4, env={**SHM, "DISTTORCH_CHUNK_BYTES": 64 * 1024},
                          per_rank_env=per_rank, job_timeout=150)
    _assert_clean(results)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("layout", ["AABB", "AAABBB", "AABBCC", "AAB", "AAB/tcp", "AABB/ramp"])
def test_hierarchical_all_reduce_is_bit_identical_on_every_rank(layout):
    # equal hosts take the sliced form (each local rank all-reduces its slice across hosts; with
    # 3 hosts and a small switch that is a ring), unequal ones the leader form, and with
    # DISTTORCH_TRANSPORT=tcp every rank the flat ring; small slots and rounds make 300k elements
    # run many pipelined rounds; "ramp": 512 KiB rounds, so the first and last are split into the
    # ramp of 1/8, 1/8, 1/4, 1/2 (hier_rounds.py)
    layout, _, transport = layout.partition("/")
    per_rank = {r: {"DISTTORCH_HOST_ID": h} for r, h in enumerate(layout)}
    env = {**SHM, "DISTTORCH_HIER_CHUNK_BYTES": 512 * 1024 if transport == "ramp" else 48 * 1024,
           "DISTTORCH_CHUNK_BYTES": 16 * 1024, "DISTTORCH_ALLREDUCE_SWITCH": 8 * 1024,
           "DISTTORCH_TRANSPORT": "auto" if transport in ("", "ramp") else transport}
    results = harness.run(workers.hierarchical_bits, len(layout), env=env, per_rank_env=per_rank, job_timeout=100)
    assert all(r["digests"] == results[0]["digests"] for r in results)
    assert results[0]["worst"] < 1e-5 * len(layout)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world,env", [(2, {}), (3, TCP), (4, {})])
def test_p2p_async_objects_and_groups(world, env):
    _assert_clean(harness.run(workers.p2p_and_objects, world, env=env, job_timeout=100))


@pytest.mark.timeout(60)
def test_transport_wrapper_sees_the_messages():
    res = harness.run(workers.wrapped_transport, 2, init=False, env={"DISTTORCH_TRANSPORT": "tcp"})
    assert all(r["ok"] and r["sent"] > 0 and r["received"] > 0 for r in res), res
