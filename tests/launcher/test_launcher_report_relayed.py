"""The report's first failure is a root cause, not a rank relaying a peer's abort, even when the
relaying rank's record is a few milliseconds older."""
from disttorch_launcher.report import WorkerFailure, first_event, format_report


def _failure(rank, when, exc_type):
    return WorkerFailure(rank=rank, local_rank=rank, node_rank=0, host="h", pid=100 + rank, returncode=1,
                         time=when, exc_type=exc_type, message="m")


def test_relayed_abort_is_never_the_first_failure():
    cause = _failure(0, 10.003, "DistTimeoutError")
    relay = _failure(1, 10.001, "ProcessGroupAbortedError")
    assert first_event([relay, cause], []) is cause
    report = format_report(entrypoint="x.py", run_id="r", restart_count=0, max_restarts=0, started_at=9.0,
                           failures=[relay, cause])
    assert "rank      : 0 (local rank 0 on node 0)" in report
    assert "rank 1 (host h, pid 101): exit code 1: ProcessGroupAbortedError: m" in report


def test_only_relayed_failures_still_report_the_earliest():
    a, b = _failure(0, 5.0, "ProcessGroupAbortedError"), _failure(1, 4.0, "ProcessGroupAbortedError")
    assert first_event([a, b], []) is b
