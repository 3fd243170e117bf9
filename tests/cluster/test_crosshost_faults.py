"""Faults across test hosts: a host's workers killed, a host's link cut (with and without a
restart), a host's sshd stopped before launch."""
from __future__ import annotations

import os
import re
import signal
import time

import numpy as np
from _cluster_jobs import REPO

STEPS = REPO / "tests" / "cluster" / "_steps_worker.py"
HOSTS = ["--hosts", "testhost1:2,testhost2:2"]


def _expected_value(steps: int, world: int = 4) -> float:
    """What _steps_worker.py ends with when every step ran exactly once (float32, as it runs)."""
    value = np.float32(0)
    for step in range(steps):
        value = value * np.float32(0.5) + np.float32((step + 1) * world * (world + 1) // 2)
    return float(value)


def _wait_for_starts(proc, count: int, timeout: float = 30.0) -> list[str]:
    """Reads the job's output until `count` workers printed START; returns the lines read."""
    lines, deadline = [], time.monotonic() + timeout
    while sum("START" in line for line in lines) < count:
        assert time.monotonic() < deadline, "".join(lines)
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    return lines


def _read_until(proc, marker: str, timeout: float) -> list[str]:
    """Reads the job's output until a line contains `marker` (at most `timeout` seconds)."""
    lines, deadline = [], time.monotonic() + timeout
    while not any(marker in line for line in lines):
        assert time.monotonic() < deadline, f"no {marker!r} within {timeout} s:\n" + "".join(lines)
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    return lines


def _pid_of(output: str, rank: str) -> str:
    return re.search(rf"START rank={rank} host=\S+ pid=(\d+)", output).group(1)


def _workers_on(head: str, host: str) -> list[int]:
    """The pids the ranks on `host` printed in their START lines (forked or spawned alike: a rank
    forked by the launcher's fork server shows the template's command line in ps)."""
    return [int(pid) for h, pid in re.findall(r"START rank=\d+ host=(\S+) pid=(\d+)", head) if h == host]


def test_killing_every_worker_of_a_host_stops_the_job_and_names_host_and_ranks(jobs, rig):
    proc = jobs.start("testhost1", [*HOSTS, "--monitor-interval", "0.1", STEPS, "2000", "0.02"])
    head = "".join(_wait_for_starts(proc, 4))
    victims = _workers_on(head, "testhost2")
    assert len(victims) == 2, rig.processes("testhost2")
    killed = time.monotonic()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    done = jobs.finish(proc, timeout=30)
    took = time.monotonic() - killed
    out = head + done.output
    assert done.returncode != 0 and took < 15, (took, out[-3000:])
    report = out[out.index("job failed"):]
    first = re.search(r"rank +: ([23]) \(local rank [01] on node 1\)\n +host +: testhost2\n"
                      r".*\n +exit +: signal SIGKILL \(9\)", report)
    assert first, report
    other = {"2": "3", "3": "2"}[first.group(1)]  # killed too: a failure, not a rank we stopped
    assert f"rank {other} (host testhost2, pid {_pid_of(out, other)}): signal SIGKILL (9)" in report, report
    assert jobs.wait_until_idle(15) == {}


def test_cut_link_fails_every_survivor_naming_the_unreachable_ranks_and_leaves_no_process(jobs, rig):
    proc = jobs.start("testhost1", [*HOSTS, "--node-timeout", "8", STEPS, "2000", "0.02"],
                      STEPS_TIMEOUT="10")
    head = "".join(_wait_for_starts(proc, 4))
    rig.set_link("testhost2", False)
    cut = time.monotonic()
    done = jobs.finish(proc, timeout=60)
    out = head + done.output
    assert done.returncode != 0, out[-3000:]
    for rank in (0, 1):  # the survivors on testhost1: each names a rank of testhost2
        errors = [line for line in out.splitlines()
                  if line.startswith(f"[rank{rank}]: disttorch.distributed.errors.")]
        assert errors and re.search(r"rank [23] ", errors[0]), (rank, out[-3000:])
    failed_at = re.search(r"time +: [\d-]+ [\d:.]+ \(([\d.]+) s after start\)", out)
    assert failed_at, out[-3000:]
    # within the collective timeout (10 s) of the cut; the start is at most the job's age
    assert float(failed_at.group(1)) < (cut - proc.started) + 10.0, out[-3000:]
    # testhost2 cannot be told: it finds out itself (its launcher loses node 0 after 8 s)
    assert jobs.wait_until_idle(30) == {}, "processes left"
    rig.set_link("testhost2", True)


def test_cut_link_restored_resumes_with_max_restarts_and_ends_as_an_unbroken_run(jobs, rig, tmp_path):
    state = tmp_path / "state.json"
    steps = 150
    proc = jobs.start("testhost1", [*HOSTS, "--max-restarts", "1", STEPS, steps, "0.05", state],
                      STEPS_TIMEOUT="10")
    head = "".join(_wait_for_starts(proc, 4))
    time.sleep(1.0)
    rig.set_link("testhost2", False)
    # the link comes back once a survivor has failed its collective, well inside the 15 s after
    # which ssh (and sshd) give the connection up
    head += "".join(_read_until(proc, "[rank0]: disttorch.distributed.errors.", timeout=14.0))
    rig.set_link("testhost2", True)
    done = jobs.finish(proc, timeout=90)
    out = head + done.output
    assert done.returncode == 0, out[-4000:]
    assert "restarting 2 nodes (restart 1 of 1)" in out, out[-4000:]
    resumed = [int(m) for m in re.findall(r"START rank=\d host=\S+ pid=\d+ from=(\d+)", out)]
    assert len(resumed) == 8 and all(r > 0 for r in resumed[4:]), resumed
    values = {float(v) for v in re.findall(r"RESULT rank=\d value=([\d.e+-]+)", out)}
    assert values == {_expected_value(steps)}, (values, _expected_value(steps))
    assert jobs.wait_until_idle() == {}


def test_stopped_sshd_is_a_clear_error_naming_the_host(jobs, rig):
    rig.stop_sshd("testhost2")
    done = jobs.run("testhost1", [*HOSTS, STEPS, "10", "0.01"], timeout=30)
    assert done.returncode != 0 and done.elapsed < 15, (done.elapsed, done.output[-3000:])
    assert "ssh: connect to host testhost2 port 22: Connection refused" in done.output
    assert "node 1 (host testhost2) could not join" in done.output, done.output[-3000:]
    assert "Traceback" not in done.output
    assert jobs.wait_until_idle() == {}
