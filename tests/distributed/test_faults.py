"""A rank that exits, is killed or is stopped mid-collective; ranks that disagree; NaN checks."""
import re

import pytest

import harness
import workers

TIMEOUT = 4.0
ENGINES = {"shm": {}, "tcp": {"DISTTORCH_TRANSPORT": "tcp"}}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["exit", "kill", "stop"])
@pytest.mark.parametrize("engine", ["shm", "tcp"])
def test_dead_or_stopped_rank_is_named_within_timeout(engine, how):
    res = harness.run(workers.dies_mid_collective, 3, 2, how, env=ENGINES[engine], timeout=TIMEOUT,
                      job_timeout=60, raise_errors=False, wait_for=[0, 1])
    for rank in (0, 1):
        r = res[rank]
        assert not isinstance(r, Exception), r
        assert r["error"] is not None, f"rank {rank} finished a collective its peer never joined"
        assert "rank 2" in r["message"], r["message"]
        assert r["elapsed"] <= TIMEOUT + 5, r
        if how != "stop":  # a dead process is reported at once, not at the deadline
            assert r["elapsed"] < TIMEOUT, r
        assert "Aborted" in r["again"] and float(r["again"].split()[-1][:-1]) < 1.0, r["again"]


@pytest.mark.timeout(90)
def test_a_stopped_same_host_rank_is_named_before_the_deadline():
    # same-host links carry no heartbeats: /proc's "stopped" state, held longer than the
    # heartbeat timeout (1 s here) plus a second, names it, as a missed heartbeat did before
    res = harness.run(workers.dies_mid_collective, 2, 1, "stop", env={"DISTTORCH_HEARTBEAT_TIMEOUT": "1"},
                      timeout=20, job_timeout=60, raise_errors=False, wait_for=[0])
    r = res[0]
    assert r["error"] == "PeerFailureError", r
    assert "rank 1 is stopped (pid" in r["message"], r["message"]
    assert r["elapsed"] < 10, r  # not the 20 s deadline


MISMATCH = {
    "shape": [r"\(5,\)", r"\(4,\)", "float32", "all_reduce"],
    "dtype": ["float64", "float32", "all_reduce"],
    "op": ["all_gather", "all_reduce"],
    "root": ["broadcast", "root=0", "root=1"],
    "skip": ["all_gather", "all_reduce"],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("engine,kind", [("shm", k) for k in MISMATCH] +
                         [("tcp", "shape"), ("tcp", "op"), ("detail", "root"), ("detail", "dtype")])
def test_mismatch_is_reported_on_every_rank(engine, kind):
    env = {"detail": {"DISTTORCH_TRANSPORT": "tcp", "DISTTORCH_DEBUG": "detail"}}.get(engine, ENGINES.get(engine))
    res = harness.run(workers.mismatched, 3, kind, env=env, timeout=20, job_timeout=60)
    for rank, r in enumerate(res):
        assert r["error"] in ("CollectiveMismatchError", "ProcessGroupAbortedError"), (rank, r)
        msg = r["message"]
        assert "mismatch" in msg and re.search(r"#\d|sequence number \d", msg), msg
        assert re.search(r"rank \d", msg), msg
        for pattern in MISMATCH[kind]:
            assert re.search(pattern, msg), (pattern, msg)
        assert r["elapsed"] < 10, "reported by the fingerprint check, not by a timeout"


@pytest.mark.timeout(60)
def test_nan_check_names_the_rank():
    res = harness.run(workers.nan_input, 3, env={"DISTTORCH_NAN_CHECK": "1"}, timeout=20)
    assert res[1]["error"] == "DistBackendError" and "rank 1" in res[1]["message"] and "NaN" in res[1]["message"]
    for r in (res[0], res[2]):
        assert r["error"] is not None and "rank 1" in r["message"], r


@pytest.mark.timeout(60)
def test_work_wait_timeout_then_completion():
    res = harness.run(workers.work_timeout, 2, timeout=20)
    assert "did not complete within 0.3 s" in res[0]["first"]
    assert res[0]["value"] == res[1]["value"] == 2.0
