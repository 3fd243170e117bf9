"""init_process_group: env://, tcp://, scheduler variables, CURVE, and rendezvous errors that name values."""
import random
import socket

import pytest

import harness
import workers

NO_TORCHRUN = {"RANK": None, "WORLD_SIZE": None, "LOCAL_RANK": None, "MASTER_ADDR": None, "MASTER_PORT": None}


def _free_port_in(lo: int, hi: int) -> int:
    while True:
        port = random.randrange(lo, hi)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def _ok(results, world):
    for r, out in enumerate(results):
        assert "error" not in out, out
        assert (out["rank"], out["world"], out["sum"]) == (r, world, sum(range(world)))


@pytest.mark.timeout(60)
def test_env_and_tcp_init_methods():
    _ok(harness.run(workers.init_with, 2, {"backend": "gloo"}, init=False), 2)
    per_rank = {r: {**NO_TORCHRUN} for r in range(3)}
    out = harness.run(workers.tcp_init, 3, harness.free_port(), init=False, per_rank_env=per_rank)
    _ok(out, 3)
    assert [o["local_rank"] for o in out] == [0, 1, 2]  # computed from the peer table


@pytest.mark.timeout(60)
def test_slurm_and_mpi_variables_without_a_launcher():
    port = _free_port_in(15000, 25000)
    slurm = {r: {**NO_TORCHRUN, "SLURM_PROCID": r, "SLURM_STEP_ID": 0, "SLURM_NTASKS": 3, "SLURM_LOCALID": r,
                 "SLURM_JOB_NODELIST": "localhost", "SLURM_JOB_ID": port - 15000} for r in range(3)}
    out = harness.run(workers.init_with, 3, {}, init=False, per_rank_env=slurm)
    _ok(out, 3)
    ompi = {r: {**NO_TORCHRUN, "OMPI_COMM_WORLD_RANK": r, "OMPI_COMM_WORLD_SIZE": 2, "OMPI_COMM_WORLD_LOCAL_RANK": r,
                "OMPI_COMM_WORLD_LOCAL_SIZE": 2, "MASTER_PORT": harness.free_port()} for r in range(2)}
    ompi[1]["MASTER_PORT"] = ompi[0]["MASTER_PORT"]
    _ok(harness.run(workers.init_with, 2, {}, init=False, per_rank_env=ompi), 2)


@pytest.mark.timeout(60)
def test_curve_encryption():
    env = {"DISTTORCH_CURVE": "1", "DISTTORCH_SECRET": "curve-secret", "DISTTORCH_TRANSPORT": "tcp"}
    _ok(harness.run(workers.init_with, 2, {}, init=False, env=env), 2)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("per_rank,patterns", [
    ({1: {"WORLD_SIZE": 4}}, ["world_size=4", "rank 0 has world_size=3"]),
    ({2: {"RANK": 7}}, ["rank 7", "out of range for world_size 3"]),
    ({2: {"RANK": 1}}, ["rank 1 was claimed twice", "pid"]),
])
def test_rendezvous_errors_reach_every_rank(per_rank, patterns):
    res = harness.run(workers.init_with, 3, {"timeout": 20}, init=False, per_rank_env=per_rank, job_timeout=60)
    assert all("error" in r for r in res), res
    for r in res:
        assert r["error"] == "RendezvousError", r
        for p in patterns:
            assert p in r["message"], (p, r["message"])


@pytest.mark.timeout(60)
def test_port_in_use_and_missing_variables():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = harness.run(workers.init_with, 1, {"world_size": 2, "rank": 0, "timeout": 5}, init=False,
                          env={"MASTER_PORT": port})
    assert res[0]["error"] == "DistNetworkError" and f"MASTER_PORT {port}" in res[0]["message"], res
    res = harness.run(workers.init_with, 1, {"world_size": 2, "rank": 0}, init=False, env={"MASTER_PORT": None})
    assert res[0]["error"] == "ValueError" and "MASTER_PORT" in res[0]["message"], res
    res = harness.run(workers.init_with, 1, {"world_size": 2, "rank": 1, "timeout": 5}, init=False,
                      env={"MASTER_ADDR": "10.255.255.1", "DISTTORCH_SECRET": None})
    assert res[0]["error"] == "DistError" and "DISTTORCH_SECRET" in res[0]["message"], res
    # a single process needs no master at all
    res = harness.run(workers.init_with, 1, {"world_size": 1, "rank": 0}, init=False, env=NO_TORCHRUN)
    assert res[0]["world"] == 1 and res[0]["sum"] == 0, res


@pytest.mark.timeout(120)
def test_the_rank_serving_the_store_waits_until_every_rank_is_done_with_it():
    # Before: rank 0 saw every doorbell first, returned, destroyed the store, and rank 1's own
    # wait for the doorbells, sent a moment later, was never answered (DistTimeoutError after
    # the whole timeout: the 5-rank flake of test_direct_reduce on the loaded machine).
    import _init_workers

    res = harness.run(_init_workers.store_served_until_every_rank_is_done, 3, 8.0, 1.5, init=False,
                      timeout=8.0, job_timeout=60)
    assert [r["shm"] for r in res] == [True, True, True], res
    assert res[0]["init_s"] >= 1.5, res  # rank 0 stayed until rank 1 was done
