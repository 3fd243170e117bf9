"""--inject-fault: each kind produces its documented outcome, deterministically, and nothing of the
job outlives it. The job all-reduces once per step; collective n is step n."""
import json
import re
import statistics

import pytest

from disttorch.distributed.simulation.spec import parse_fault, resolve_faults
from trace_checks import check_chrome_trace

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 2.0

STEPS = """
import datetime, os, sys, time
import numpy as np
import disttorch as torch
import disttorch.distributed as dist
dist.init_process_group("zmq", timeout=datetime.timedelta(seconds=float(os.environ["TIMEOUT"])))
steps, compute = int(os.environ["STEPS"]), float(os.environ.get("COMPUTE", "0"))
t = torch.from_numpy(np.ones(1024, np.float32))
last = time.perf_counter()
for i in range(1, steps + 1):
    time.sleep(compute)
    entered = time.perf_counter()
    try:
        dist.all_reduce(t)
    except Exception as e:
        print(f"ERROR {type(e).__name__} after {time.perf_counter() - entered:.2f} s: {e}", flush=True)
        raise
    now = time.perf_counter()
    print(f"STEP {i} {now - last:.4f}", flush=True)
    last = now
print("FINISHED attempt", os.environ["DISTTORCH_RESTART_COUNT"], float(t[0]), flush=True)
dist.destroy_process_group()
"""


def _run(job, fault_args, nproc=2, steps=8, compute=0.0, extra=()):
    script = job.script("steps.py", STEPS)
    args = ["--nproc-per-node", str(nproc), *extra]
    for f in fault_args:
        args += ["--inject-fault", f]
    done = job.run([*args, script], env={"TIMEOUT": str(TIMEOUT), "STEPS": str(steps), "COMPUTE": str(compute)})
    assert job.leftovers() == [], "processes of the job outlived it"
    return done


def _report(done):
    assert done.stderr.count("disttorch-run: job failed") == 1, done.output[-4000:]
    return done.stderr[done.stderr.index("first failure (by time):"):]


def _steps(done, rank):
    return {int(a): float(b) for a, b in (line.split() for line in done.lines(f"[rank{rank}]: STEP "))}


def test_kill_is_reported_with_rank_and_signal_and_follows_the_seed(job):
    spec = "rank=random,at=collective:3-6,kind=kill"
    done = _run(job, [spec], nproc=3, extra=["--fault-seed", "11"])
    assert done.returncode == 1
    m = re.search(r"injecting fault rank (\d): kill at collective (\d) \(attempt 0\)", done.stderr)
    rank, at = int(m.group(1)), int(m.group(2))
    expected = resolve_faults([parse_fault(spec)], 11, 3)[0]  # the workers draw the same
    assert (rank, at) == (expected.rank, expected.collective)
    report = _report(done)
    assert f"rank      : {rank} (local rank {rank} on node 0)" in report
    assert "exit      : signal SIGKILL (9)" in report
    assert max(_steps(done, rank)) == at - 1  # it died entering collective `at`
    assert f"rank {rank}: kill at collective {at} (all_reduce)" in done.stderr


def test_hang_makes_the_peer_time_out_naming_the_rank(job):
    done = _run(job, ["rank=1,at=collective:4,kind=hang"])
    assert done.returncode == 1
    report = _report(done)
    assert "rank      : 0 (local rank 0 on node 0)" in report
    assert "error     : DistTimeoutError: all_reduce #4 on group world timed out after 2.0 s on rank 0, " \
           "waiting for rank 1" in report
    error = done.lines("[rank0]: ERROR ")[0]
    seconds = float(error.split(" after ")[1].split()[0])
    assert TIMEOUT <= seconds <= TIMEOUT + 5, error
    assert "stopped by the launcher: rank 1 (SIGTERM)" in report  # the hung rank, stopped for good


def test_slow_rank_takes_three_times_as_long_per_step(job):
    done = _run(job, ["rank=1,at=collective:7,kind=slow:3x"], steps=13, compute=0.05)
    assert done.returncode == 0, done.output[-3000:]
    steps = _steps(done, 1)
    before = statistics.median(steps[i] for i in range(2, 7))
    after = statistics.median(steps[i] for i in range(8, 14))
    assert after / before == pytest.approx(3.0, rel=0.25), (before, after)
    # the others wait for the straggler: their steps stretch alike
    peer = _steps(done, 0)
    assert statistics.median(peer[i] for i in range(8, 14)) == pytest.approx(after, rel=0.25)
    assert "compute and communication from here on take 3x as long" in done.output


def test_dropped_message_makes_the_peer_time_out_naming_the_sender(job):
    done = _run(job, ["rank=1,at=collective:4,kind=drop"])
    assert done.returncode == 1
    report = _report(done)
    assert "rank      : 0 (local rank 0 on node 0)" in report
    assert "error     : DistTimeoutError: all_reduce #4 on group world timed out after 2.0 s on rank 0, " \
           "waiting for rank 1" in report
    seconds = float(done.lines("[rank0]: ERROR ")[0].split(" after ")[1].split()[0])
    assert TIMEOUT <= seconds <= TIMEOUT + 5
    assert "rank 1 dropped its message to rank 0 (collective #4 all_reduce, 4096 bytes)" in done.output
    # the dropping rank hears of the failure from its peer instead of timing out itself
    assert re.search(r"rank 1 \(host .*\): .*ProcessGroupAbortedError: rank 0 aborted the process group", report)


def test_corrupted_message_fails_the_integrity_check_naming_the_sender(job):
    done = _run(job, ["rank=1,at=collective:3,kind=corrupt"])
    assert done.returncode == 1
    report = _report(done)
    assert "rank      : 0 (local rank 0 on node 0)" in report
    assert re.search(r"error     : MessageIntegrityError: integrity check failed on rank 0: the message from "
                     r"rank 1 \(collective #3 all_reduce, 4096 bytes\) has CRC32 0x[0-9a-f]{8} but its sender "
                     r"computed 0x[0-9a-f]{8}: the data was corrupted in transit", report), report
    assert done.elapsed < TIMEOUT + 8  # detected on arrival, not by a timeout


def test_kill_then_restart_runs_clean_unless_the_fault_repeats(job):
    done = _run(job, ["rank=1,at=collective:3,kind=kill"], extra=["--max-restarts", "1", "--trace-dir", "tr"])
    assert done.returncode == 0, done.output[-3000:]
    assert re.search(r"attempt failed: rank 1 \(host .*\): signal SIGKILL \(9\); restarting all 2 workers "
                     r"\(restart 1 of 1\)", done.stderr)
    assert done.lines("[rank0]: FINISHED ") == ["attempt 1 256.0"]  # 2 ** 8: the clean attempt ran every step
    assert done.lines("[rank1]: FINISHED ") == ["attempt 1 256.0"]
    # the killed rank wrote its trace before dying, the stopped one on SIGTERM; both attempts merge
    ranks = job.dir / "tr" / "ranks"
    assert sorted(p.name for p in ranks.iterdir()) == [f"rank{r}-attempt{a}.json" for r in (0, 1) for a in (0, 1)]
    killed = json.loads((ranks / "rank1-attempt0.json").read_text())["traceEvents"]
    assert [e["args"]["collective"] for e in killed if e["name"] == "fault: kill"] == [3]
    merged = json.loads((job.dir / "tr" / "trace.json").read_text())
    check_chrome_trace(merged, ranks=[0, 1])
    names = {e["args"]["name"] for e in merged["traceEvents"] if e["name"] == "thread_name"}
    assert {"main", "main (attempt 1)"} <= names

    done = _run(job, ["rank=1,at=collective:3,kind=kill,restart=any"], extra=["--max-restarts", "1"])
    assert done.returncode == 1
    assert "restart 1 of 1)" in done.stderr and "exit      : signal SIGKILL (9)" in _report(done)
