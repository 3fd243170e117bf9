"""executor.py: call order and sequence numbers, deadlines taken at the start, abort after a failure."""
import threading
import time

import pytest

from disttorch.distributed.errors import DistError, ProcessGroupAbortedError
from disttorch.distributed.executor import Executor


def test_sequence_numbers_follow_call_order_inline_and_queued():
    ex = Executor("world", 10.0)
    ran = []
    gate = threading.Event()
    first = ex.submit("slow", lambda seq, dl: (gate.wait(5), ran.append(("slow", seq))), async_op=True)
    works = [ex.submit(f"c{i}", lambda seq, dl, i=i: ran.append((f"c{i}", seq)), async_op=True) for i in range(3)]
    assert ran == []  # all queued behind the first
    gate.set()
    for w in [first] + works:
        w.wait()
    assert ran == [("slow", 1), ("c0", 2), ("c1", 3), ("c2", 4)]
    assert ex.submit("sync", lambda seq, dl: ran.append(("sync", seq)), async_op=False) is None
    assert ran[-1] == ("sync", 5) and ex.seq == 5 and ex.last_finished == 5
    ex.close()


def test_a_synchronous_call_runs_in_the_callers_thread_unless_work_is_queued():
    ex = Executor("world", 10.0)
    where = []
    ex.submit("a", lambda seq, dl: where.append(threading.current_thread()), async_op=False)
    assert where == [threading.current_thread()]
    gate = threading.Event()
    w = ex.submit("b", lambda seq, dl: gate.wait(5), async_op=True)
    t = threading.Thread(target=lambda: ex.submit("c", lambda seq, dl: where.append(threading.current_thread()),
                                                  async_op=False))
    t.start()
    time.sleep(0.05)
    gate.set()
    t.join(5)
    w.wait()
    assert where[1].name == "disttorch-pg-world"  # waited behind "b", on the worker
    ex.close()


def test_the_deadline_is_taken_when_the_body_starts_not_when_queued():
    ex = Executor("world", 2.0)
    gate = threading.Event()
    deadlines = {}
    ex.submit("slow", lambda seq, dl: gate.wait(5), async_op=True)
    queued_at = time.monotonic()
    w = ex.submit("next", lambda seq, dl: deadlines.setdefault(seq, (time.monotonic(), dl)), async_op=True)
    time.sleep(0.3)
    gate.set()
    w.wait()
    started, deadline = deadlines[2]
    assert started - queued_at >= 0.25
    assert deadline == pytest.approx(started + 2.0, abs=0.05)
    ex.close()


def test_the_first_failure_tells_peers_once_and_later_calls_raise_at_once():
    told, order = [], []
    ex = Executor("world", 10.0, begin=lambda seq, label: order.append(("begin", seq, label)),
                  end=lambda: order.append(("end",)), tell_peers=told.append)
    boom = RuntimeError("rank 1 sent garbage")

    def fail(seq, dl):
        raise boom

    with pytest.raises(RuntimeError, match="garbage"):
        ex.submit("all_reduce", fail, async_op=False)
    assert told == [boom] and ex.failed is boom
    assert order == [("begin", 1, "all_reduce"), ("end",)]
    with pytest.raises(ProcessGroupAbortedError, match=r"^broadcast: process group world is unusable after an "
                                                        r"earlier failure: rank 1 sent garbage$"):
        ex.submit("broadcast", lambda seq, dl: None, async_op=False)
    ex.fail(RuntimeError("second"))
    assert told == [boom]  # told once
    ex.close()


def test_an_async_failure_reaches_the_waiter_and_aborts_what_is_queued_behind_it():
    told = []
    ex = Executor("g1", 10.0, tell_peers=told.append)
    gate = threading.Event()

    def fail(seq, dl):
        gate.wait(5)
        raise TimeoutError("peer gone")

    w1 = ex.submit("all_reduce", fail, async_op=True)
    ran = []
    w2 = ex.submit("all_gather", lambda seq, dl: ran.append(seq), async_op=True)
    gate.set()
    with pytest.raises(TimeoutError, match="peer gone"):
        w1.wait()
    with pytest.raises(ProcessGroupAbortedError, match="all_gather: process group g1 is unusable.*peer gone"):
        w2.wait()
    assert ran == [] and len(told) == 1
    ex.close()


def test_an_abort_from_a_peer_is_not_echoed_back():
    told = []
    ex = Executor("world", 10.0, tell_peers=told.append)

    def aborted(seq, dl):
        raise ProcessGroupAbortedError("rank 2 aborted the process group: out of memory")

    with pytest.raises(ProcessGroupAbortedError):
        ex.submit("barrier", aborted, async_op=False)
    assert told == [] and isinstance(ex.failed, ProcessGroupAbortedError)


def test_a_closed_executor_refuses_work_and_its_worker_exits():
    ex = Executor("world", 10.0)
    ex.submit("a", lambda seq, dl: None, async_op=True).wait()
    ex.close()
    assert not ex._worker.is_alive()  # noqa: SLF001
    with pytest.raises(DistError, match="^barrier: process group world was destroyed$"):
        ex.submit("barrier", lambda seq, dl: None, async_op=False)


def test_a_staged_run_goes_a_part_at_a_time_in_the_callers_thread_and_blocks_other_collectives():
    ex = Executor("world", 10.0)
    log = []

    def body(seq, deadline):
        ready = 0
        for need in (3, 7):
            while ready < need:
                ready = yield
            log.append((seq, need, threading.current_thread()))

    run = ex.open_staged("all_reduce", body)
    assert run is not None and not run.done and ex.seq == 1
    assert run.feed(2) is False and log == []  # not enough input yet
    assert run.feed(5) is False and log == [(1, 3, threading.current_thread())]
    # anything else now would wait behind the run, whose input this thread still computes
    with pytest.raises(DistError, match=r"barrier on process group world was issued while the staged "
                                        r"all_reduce #1 waits for the rest of its input"):
        ex.submit("barrier", lambda seq, dl: None, async_op=False)
    assert run.feed(7) is True and log[-1][1] == 7 and ex.last_finished == 1
    ex.submit("barrier", lambda seq, dl: log.append(seq), async_op=False)
    assert log[-1] == 2
    # busy: no staged start (the caller submits the whole instead)
    gate = threading.Event()
    w = ex.submit("slow", lambda seq, dl: gate.wait(5), async_op=True)
    assert ex.open_staged("all_reduce", body) is None
    gate.set()
    w.wait()
    # an abandoned run fails the group, naming the reason
    run = ex.open_staged("all_reduce", body)
    run.abort("backward raised")
    assert run.done and isinstance(ex.failed, DistError) and "backward raised" in str(ex.failed)
    with pytest.raises(ProcessGroupAbortedError, match="backward raised"):
        ex.submit("barrier", lambda seq, dl: None, async_op=False)
    ex.close()
