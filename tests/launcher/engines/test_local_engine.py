"""The local engine driven by the shared supervise loop (the loop the Ray engine uses too)."""
from __future__ import annotations

import os

from disttorch_launcher.cli import build_parser, config_from_args
from disttorch_launcher.engines.local import LocalEngine
from disttorch_launcher.engines.supervise import supervise

_SCRIPT = """
import os, sys, time
rank, attempt = int(os.environ["RANK"]), int(os.environ["TORCHELASTIC_RESTART_COUNT"])
mode = sys.argv[1]
if mode == "fail-once" and rank == 1 and attempt == 0:
    sys.exit(3)
if mode == "raise" and rank == 1:
    time.sleep(0.5)
    raise ValueError("boom from rank 1")
if mode == "raise":
    time.sleep(60)  # rank 0 waits to be stopped
print("rank", rank, "attempt", attempt, "done", flush=True)
"""


def _engine(tmp_path, mode, **options):
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    argv = ["--nproc-per-node", "2", "--grace-period", "2", str(script), mode]
    cfg, _ = config_from_args(build_parser().parse_args(argv), dict(os.environ))
    return LocalEngine(cfg)


def test_supervise_restarts_the_local_group_after_a_failure(tmp_path, capfd):
    engine = _engine(tmp_path, "fail-once")
    try:
        outcome = supervise(engine, max_restarts=1, monitor_interval=0.05, grace=2.0)
    finally:
        engine.close()
    assert (outcome.exit_code, outcome.statuses, outcome.restarts) == (0, [0, 0], 1)
    captured = capfd.readouterr()
    assert "attempt failed: rank 1 (node 0" in captured.err and "exit code 3" in captured.err
    # (rank 0 may finish attempt 0 before rank 1's failure is seen; attempt 1 runs both again)
    assert sorted(line for line in captured.out.splitlines() if "attempt 1 done" in line) == [
        "[rank0]: rank 0 attempt 1 done", "[rank1]: rank 1 attempt 1 done"]


def test_first_failure_stops_the_others_and_names_the_exception(tmp_path, capfd):
    engine = _engine(tmp_path, "raise")
    try:
        outcome = supervise(engine, max_restarts=0, monitor_interval=0.05, grace=2.0)
    finally:
        engine.close()
    failure = outcome.first_failure
    assert (outcome.exit_code, failure.rank, failure.returncode) == (1, 1, 1)
    assert failure.cause == "ValueError: boom from rank 1"
    assert outcome.statuses == [-15, 1]  # rank 0 ended by the SIGTERM of the stop
    err = capfd.readouterr().err
    assert "first failure: rank 1 (node 0, host" in err and "ValueError: boom from rank 1" in err
    assert "then stopped: rank 0 (SIGTERM)" in err
