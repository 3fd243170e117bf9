"""Leaving a job: a rank that finished its part and exits is not a failure; one that leaves
before its part is named at once (the GOODBYE message, process_group.say_goodbye)."""
import pytest

import _teardown_workers as w
import harness

SOCKETS = {"DISTTORCH_TRANSPORT": "ipc"}


@pytest.mark.timeout(120)
def test_peers_that_finished_the_last_barrier_may_exit_while_another_still_waits():
    # Before the GOODBYE, rank 1 raised PeerFailureError here ("rank 0 exited before the job
    # ended" / "lost its connection"): the watchdog counted every dead peer, also those that had
    # sent it everything. This is the final-barrier race of 128 workers, made deterministic.
    res = harness.run(w.leave_while_a_peer_still_waits, 4, env=SOCKETS, timeout=30, job_timeout=90)
    assert res[3]["held_s"] >= 1.5  # rank 3 really held its message until 0 and 2 were gone
    assert res[1]["quick_exited"]  # and rank 1 was still inside the barrier then
    assert res[1]["elapsed"] >= 1.5


@pytest.mark.timeout(120)
@pytest.mark.parametrize("env", [SOCKETS, {}], ids=["sockets", "shm"])
def test_a_rank_that_leaves_before_a_collective_is_named_at_once(env):
    res = harness.run(w.one_rank_leaves_early, 3, env=env, timeout=20, job_timeout=90)
    assert res[2] == {"left": True}
    for rank in (0, 1):
        r = res[rank]
        # the first to notice raises PeerFailureError; the other may get its abort first
        assert r["error"] in ("PeerFailureError", "ProcessGroupAbortedError"), r
        assert "rank 2 exited before the job ended" in r["message"], r["message"]
        assert r["elapsed"] < 5, r  # not the 20 s deadline
