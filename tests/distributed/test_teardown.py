"""Leaving a job: a rank that finished its part and exits is not a failure; one that leaves
before its part is named at once (the GOODBYE message, process_group.say_goodbye)."""
import re

import pytest

import _teardown_workers as w
import harness


@pytest.mark.timeout(120)
def test_peers_that_finished_the_last_barrier_may_exit_while_another_still_waits():
    # Before the GOODBYE, rank 1 raised PeerFailureError in the first barrier ("rank 0 exited
    # before the job ended" / "lost its connection"): the watchdog counted every dead peer, also
    # those that had sent it everything. This is the final-barrier race of 128 workers, made
    # deterministic. Over sockets: the shared-memory barrier never looks at finished peers.
    res = harness.run(w.leave_while_a_peer_still_waits, 4, env={"DISTTORCH_TRANSPORT": "ipc"}, timeout=20,
                      job_timeout=90)
    assert res[3]["held_s"] >= 1.5  # rank 3 really held its message until 0 and 2 were gone
    assert res[1]["quick_exited"]  # and rank 1 was still inside the barrier then
    assert res[1]["elapsed"] >= 1.5
    for rank in (1, 3):  # the second barrier, which 0 and 2 left before: named at once
        kind, message, elapsed = res[rank]["second"]
        # the first to notice raises PeerFailureError; the other may get its abort first
        assert kind in ("PeerFailureError", "ProcessGroupAbortedError"), res[rank]
        assert re.search(r"rank [02] exited before the job ended or left the group: its goodbye says it "
                         r"finished collective #1, before joining collective #2", message), message
        assert elapsed < 5, res[rank]  # not the 20 s deadline
