"""Single-node faults: a worker that raises, exits non-zero, is SIGKILLed, ignores SIGTERM or
hangs in a collective; the launcher signalled or SIGKILLed; restarts. Every test checks the exit
status, the report, the time taken, and that no process of the job is left."""
import importlib
import json
import os
import signal
import socket
import time

import psutil
import pytest

pytestmark = pytest.mark.timeout(60)

# Rank FAIL_RANK fails in the way FAIL_MODE says; every other rank writes a ready file and sleeps.
# Fails only once every other rank is up, so that what the others were doing is known even on
# a loaded machine.
WAIT_FOR_OTHERS = """
def wait_for_others(prefix):
    import glob, os, time
    deadline = time.monotonic() + 30
    while len(glob.glob(prefix + "*")) < int(os.environ["WORLD_SIZE"]) - 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
"""

FAULTY = WAIT_FOR_OTHERS + """
import os, sys, time
rank = int(os.environ["RANK"])
mode = os.environ["FAIL_MODE"]
if rank == int(os.environ.get("FAIL_RANK", "1")):
    wait_for_others("ready")
    if mode == "raise":
        def load_batch(step):
            raise ValueError(f"corrupt batch at step {step}")
        load_batch(7)
    if mode == "exit":
        print("giving up", file=sys.stderr)
        sys.exit(3)
    if mode == "sigkill":
        os.kill(os.getpid(), 9)
open(f"ready{rank}", "w").close()
time.sleep(120)
"""


def _report_block(stderr):
    assert stderr.count("disttorch-run: job failed") == 1, stderr
    return stderr[stderr.index("=" * 78):]


def test_worker_that_raises_stops_the_others_and_is_reported(job):
    script = job.script("faulty.py", FAULTY)
    done = job.run(["--nproc-per-node", "3", script], env={"FAIL_MODE": "raise"})
    assert done.returncode == 1
    report = _report_block(done.stderr)
    assert "rank      : 1 (local rank 1 on node 0)" in report
    assert f"host      : {socket.gethostname()}" in report
    assert "exit      : exit code 1" in report
    assert "error     : ValueError: corrupt batch at step 7" in report
    # the user's frames, and none of the bootstrap's or runpy's
    assert f'File "{script}", line 17, in <module>' in report
    assert f'File "{script}", line 16, in load_batch' in report
    assert "_bootstrap" not in report and "runpy" not in report
    assert "stopped by the launcher: rank 0 (SIGTERM), rank 2 (SIGTERM)" in report
    assert "other failures: none" in report
    assert done.elapsed < 8  # well under the 10 s default grace period
    assert job.leftovers() == []


def test_worker_that_exits_nonzero(job):
    script = job.script("faulty.py", FAULTY)
    done = job.run(["--nproc-per-node", "2", script], env={"FAIL_MODE": "exit"})
    assert done.returncode == 1
    report = _report_block(done.stderr)
    assert "exit      : exit code 3" in report
    assert "last stderr lines:" in report and "giving up" in report
    assert "stopped by the launcher: rank 0 (SIGTERM)" in report
    assert done.elapsed < 8  # well under the 10 s default grace period
    assert job.leftovers() == []


def test_worker_killed_by_sigkill(job):
    script = job.script("faulty.py", FAULTY)
    done = job.run(["--nproc-per-node", "2", script], env={"FAIL_MODE": "sigkill",
                                                           "FAIL_RANK": "0"})
    assert done.returncode == 1
    report = _report_block(done.stderr)
    assert "rank      : 0 (local rank 0 on node 0)" in report
    assert "exit      : signal SIGKILL (9)" in report
    assert "killed by a signal before Python could record one" in report
    assert "stopped by the launcher: rank 1 (SIGTERM)" in report
    assert done.elapsed < 8  # well under the 10 s default grace period
    assert job.leftovers() == []


def test_worker_ignoring_sigterm_is_killed_after_the_grace_period(job):
    script = job.script("stubborn.py", WAIT_FOR_OTHERS + """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.environ["RANK"] == "1":
    wait_for_others("ready")
    sys.exit(2)
open(f"ready{os.environ['RANK']}", "w").close()
time.sleep(120)
""")
    done = job.run(["--nproc-per-node", "2", "--grace-period", "1", script])
    assert done.returncode == 1
    report = _report_block(done.stderr)
    assert "exit      : exit code 2" in report
    assert "stopped by the launcher: rank 0 (SIGKILL after 1 s grace)" in report
    assert 1.0 <= done.elapsed < 8
    assert job.leftovers() == []


def test_children_of_a_failed_worker_are_stopped_too(job):
    script = job.script("spawner.py", WAIT_FOR_OTHERS + """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
escaped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                           start_new_session=True)  # left our process group
open(f"children{os.environ['RANK']}", "w").write(f"{child.pid} {escaped.pid}")
if os.environ["RANK"] == "1":
    wait_for_others("children")
    raise SystemExit(4)
time.sleep(120)
""")
    done = job.run(["--nproc-per-node", "2", script])
    assert done.returncode == 1
    assert "exit      : exit code 4" in done.stderr
    assert "stopped by the launcher: rank 0 (SIGTERM)" in done.stderr
    assert done.elapsed < 8
    assert job.leftovers() == []


def test_collective_hang_is_cut_by_the_timeout_and_the_hung_rank_killed(job):
    try:
        dist = importlib.import_module("disttorch.distributed")
    except ImportError as exc:
        pytest.skip(f"disttorch.distributed is missing ({exc})")
    if not hasattr(dist, "init_process_group"):
        pytest.skip("disttorch.distributed has no init_process_group yet (being written)")
    script = job.script("hang.py", """
import datetime, os, time
import disttorch.distributed as dist
dist.init_process_group(backend="zmq", init_method="env://",
                        timeout=datetime.timedelta(seconds=2))
if dist.get_rank() == 1:
    time.sleep(300)  # never reaches the barrier
dist.barrier()
""")
    done = job.run(["--nproc-per-node", "2", script], timeout=60)
    assert done.returncode == 1, done.stderr
    report = _report_block(done.stderr)
    assert "rank      : 0 (local rank 0 on node 0)" in report
    assert "dist.barrier()" in report  # the traceback points at the collective
    assert "stopped by the launcher: rank 1 (SIGTERM)" in report
    assert done.elapsed < 20
    assert job.leftovers() == []


SLEEPER = """
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a grandchild
open(f"ready{os.environ['RANK']}", "w").close()
time.sleep(120)
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130),
                                       (signal.SIGHUP, 129)])
def test_signals_to_the_launcher_reach_every_worker(job, sig, code):
    script = job.script("sleeper.py", SLEEPER)
    proc = job.start(["--nproc-per-node", "2", script])
    job.wait_for_files("ready*", 2)
    sent = time.monotonic()
    proc.send_signal(sig)
    done = job.finish(proc)
    assert done.returncode == code
    name = signal.Signals(sig).name
    assert f"the launcher received {name}: stopped 2 workers" in done.stderr
    assert "job failed" not in done.stderr
    assert time.monotonic() - sent < 8
    assert job.leftovers(timeout=0.5) == []  # gone before the launcher exited


def test_launcher_killed_with_sigkill_leaves_no_worker(job):
    script = job.script("sleeper.py", SLEEPER)
    stubborn = job.script("stubborn.py", """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the watchdog's SIGKILL ends it
open(f"ready{os.environ['RANK']}", "w").close()
time.sleep(120)
""")
    first = job.start(["--nproc-per-node", "2", script])
    second = job.start(["--nproc-per-node", "1", "--grace-period", "1", stubborn])
    job.wait_for_files("ready*", 2)
    time.sleep(0.3)
    workers = [p for p in job.processes() if p.pid not in (first.pid, second.pid)]
    assert len(workers) >= 5  # 3 workers + 2 grandchildren (+ the stubborn one's)
    killed = time.monotonic()
    first.kill()
    second.kill()
    first.wait()
    second.wait()
    assert job.leftovers(timeout=8) == []
    assert time.monotonic() - killed < 8


def test_restarts_export_the_restart_count(job):
    script = job.script("flaky.py", WAIT_FOR_OTHERS + """
import json, os, sys, time
restart = int(os.environ["DISTTORCH_RESTART_COUNT"])
assert os.environ["TORCHELASTIC_RESTART_COUNT"] == str(restart)
with open(f"seen_rank{os.environ['RANK']}_restart{restart}.json", "w") as f:
    json.dump({"port": os.environ["MASTER_PORT"], "pid": os.getpid(),
               "max": os.environ["TORCHELASTIC_MAX_RESTARTS"]}, f)
if restart < 2:
    if os.environ["RANK"] == "1":
        wait_for_others(f"seen_rank0_restart{restart}")
        raise RuntimeError(f"flaky failure at restart {restart}")
    time.sleep(60)  # rank 0 is stopped when rank 1 fails
print("done at restart", restart)
""")
    done = job.run(["--nproc-per-node", "2", "--max-restarts", "3", script])
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["[rank0]: done at restart 2",
                                                "[rank1]: done at restart 2"]
    assert "restarting all 2 workers (restart 1 of 3)" in done.stderr
    assert "restarting all 2 workers (restart 2 of 3)" in done.stderr
    assert "restart 3 of 3" not in done.stderr
    assert "RuntimeError: flaky failure at restart 1" in done.stderr
    seen = sorted(p.name for p in job.dir.glob("seen_*.json"))
    assert seen == [f"seen_rank{r}_restart{k}.json" for r in (0, 1) for k in (0, 1, 2)]
    assert json.loads((job.dir / "seen_rank0_restart0.json").read_text())["max"] == "3"
    assert job.leftovers() == []


def test_restart_budget_runs_out(job):
    script = job.script("faulty.py", FAULTY)
    done = job.run(["--nproc-per-node", "2", "--max-restarts", "1", script],
                   env={"FAIL_MODE": "exit"})
    assert done.returncode == 1
    assert done.stderr.count("giving up") >= 2
    report = _report_block(done.stderr)
    assert "restart 1 of 1)" in report
    assert done.elapsed < 8
    assert job.leftovers() == []


def test_bootstrap_error_file_and_parent_death_signal(job, tmp_path):
    """The bootstrap alone: error file contents, and the worker dies with its parent."""
    import subprocess
    import sys
    from disttorch_launcher.local import BOOTSTRAP

    script = job.script("bad.py", "x = {}\nx['missing']\n")
    err = tmp_path / "err.json"
    out = subprocess.run([sys.executable, BOOTSTRAP, script], capture_output=True, text=True,
                         env={**job.env, "DISTTORCH_ERROR_FILE": str(err), "RANK": "3"})
    assert out.returncode == 1
    record = json.loads(err.read_text())
    assert (record["exc_type"], record["message"], record["rank"]) == ("KeyError", "'missing'", "3")
    assert record["traceback"].startswith("Traceback (most recent call last):\n  File \"" + script)
    assert out.stderr == record["traceback"]  # printed exactly as recorded
    assert abs(record["timestamp"] - time.time()) < 30

    # a parent that dies without a word: PR_SET_PDEATHSIG / the watchdog end the worker
    sleeper = job.script("s.py", "import time\nopen('up', 'w').close()\ntime.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", f"""
import os, subprocess, sys, time
env = dict(os.environ, DISTTORCH_LAUNCHER_PID=str(os.getpid()))
p = subprocess.Popen([sys.executable, {BOOTSTRAP!r}, {sleeper!r}], env=env,
                     start_new_session=True)
print(p.pid, flush=True)
time.sleep(120)
"""], stdout=subprocess.PIPE, text=True, env=job.env, cwd=job.dir)
    child = int(parent.stdout.readline())
    job.wait_for_files("up", 1)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "worker outlived its launcher"
        time.sleep(0.05)
    assert os.path.exists(job.dir / "up")
