"""Nothing waits in silence: waiting ranks say whom they wait for, a timed-out collective and
SIGUSR1 show every live rank's Python stack, a crash shows the crashed rank's stack, and
ending a job (early, without destroy_process_group, or with Ctrl-C) is quiet and named."""
import signal
import socket
import time

import pytest

pytestmark = pytest.mark.timeout(60)

# Rank 1 stalls in stuck_here() before the second all-reduce; rank 0 waits there for it.
STUCK = """
import time
import disttorch as torch
import disttorch.distributed as dist

def stuck_here():
    time.sleep(45)

dist.init_process_group("zmq")
t = torch.ones(4)
dist.all_reduce(t)
if dist.get_rank() == 1:
    stuck_here()
dist.all_reduce(t)
print("never reached")
"""

NAPPING = """
import os, time

def napping():
    open(f"ready{os.environ['RANK']}", "w").close()
    while not os.path.exists("go"):
        time.sleep(0.02)

napping()
print("done", os.environ["RANK"])
"""

CRASH = """
import ctypes, os

def crash_here():
    ctypes.string_at(0)

if os.environ["RANK"] == "1":
    crash_here()
"""

NO_DESTROY = """
import disttorch as torch
import disttorch.distributed as dist
dist.init_process_group("zmq")
t = torch.ones(4)
for _ in range(3):
    dist.all_reduce(t)
print("sum", t.tolist())
"""

INTERRUPTED = """
import os, time
import disttorch as torch
import disttorch.distributed as dist
dist.init_process_group("zmq")
dist.all_reduce(torch.ones(2))
open(f"ready{os.environ['RANK']}", "w").close()
time.sleep(45)
"""

EARLY = """
import sys
import disttorch as torch
import disttorch.distributed as dist
dist.init_process_group("zmq")
t = torch.ones(4)
dist.all_reduce(t)
if dist.get_rank() == 1:
    sys.exit(0)
dist.all_reduce(t)
"""


@pytest.mark.parametrize("transport", ["auto", "tcp"])
def test_waiting_rank_reports_then_timeout_shows_every_stack(job, transport):
    script = job.script("stuck.py", STUCK)
    d = job.run(["--nproc-per-node", "2", "--timeout", "3", script],
                env={"DISTTORCH_REPORT_PERIOD": "1", "DISTTORCH_TRANSPORT": transport})
    assert d.returncode == 1, d.output
    host = socket.gethostname()
    waits = d.lines("[rank0]: disttorch: ")
    assert f"all_reduce #2 on rank 0: waiting 1 s for rank 1 ({host}, last finished collective #1)" \
        in waits, d.stderr
    assert 2 <= len(waits) <= 3, waits  # once a period (1 s) until the 3 s timeout
    assert "DistTimeoutError: all_reduce #2 on group world timed out after 3.0 s on rank 0" in d.stderr
    assert "the launcher printed the Python stack of every live rank above" in d.stderr
    # the stuck rank's stack (faulthandler format) shows where it is
    stack1 = d.lines("[rank1]: ")
    assert any(line.strip().endswith("in stuck_here") and "stuck.py" in line for line in stack1), d.stderr
    assert any("Current thread" in line for line in stack1)
    report = d.stderr[d.stderr.index("disttorch-run: job failed"):]
    where = report[report.index("where the stopped ranks were (their last Python stack dump):"):]
    assert where.splitlines()[1].startswith("  rank 1 (host ")
    assert "Current thread" in where.splitlines()[2] and "in stuck_here" in where
    assert "never reached" not in d.stdout
    assert job.leftovers() == []


def test_sigusr1_to_the_launcher_shows_every_rank_stack_and_the_job_goes_on(job):
    script = job.script("napping.py", NAPPING)
    proc = job.start(["--nproc-per-node", "2", script])
    job.wait_for_files("ready*", 2)
    proc.send_signal(signal.SIGUSR1)
    time.sleep(1.0)
    (job.dir / "go").touch()
    d = job.finish(proc)
    assert d.returncode == 0, d.stderr
    for rank in (0, 1):
        stack = d.lines(f"[rank{rank}]: ")
        assert any(line.strip().endswith("in napping") for line in stack), d.stderr
    assert sorted(d.stdout.splitlines()) == ["[rank0]: done 0", "[rank1]: done 1"]


def test_a_segfaulting_rank_reports_its_python_stack(job):
    script = job.script("crash.py", CRASH)
    d = job.run(["--nproc-per-node", "2", script])
    assert d.returncode == 1
    assert "exit      : SIGSEGV" in d.stderr or "Segmentation fault" in d.stderr, d.stderr
    report = d.stderr[d.stderr.index("disttorch-run: job failed"):]
    assert "Fatal Python error: Segmentation fault" in report
    assert "in crash_here" in report  # the stack made it into the report's stderr tail


def test_a_script_without_destroy_process_group_exits_quietly(job):
    script = job.script("nodestroy.py", NO_DESTROY)
    d = job.run(["--nproc-per-node", "2", script])
    assert d.returncode == 0, d.stderr
    assert d.stderr == ""  # no traceback from the store or ZAP threads
    assert sorted(d.stdout.splitlines()) == ["[rank0]: sum [8.0, 8.0, 8.0, 8.0]",
                                             "[rank1]: sum [8.0, 8.0, 8.0, 8.0]"]


def test_ctrl_c_gives_one_line_and_exit_code_130(job):
    script = job.script("interrupted.py", INTERRUPTED)
    proc = job.start(["--nproc-per-node", "2", script])
    job.wait_for_files("ready*", 2, timeout=30)
    proc.send_signal(signal.SIGINT)
    d = job.finish(proc)
    assert d.returncode == 130
    lines = [line for line in d.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, d.stderr
    assert lines[0].startswith("disttorch-run: the launcher received SIGINT: stopped 2 workers")
    assert job.leftovers() == []


def test_a_clean_early_exit_is_named_in_the_report(job):
    script = job.script("early.py", EARLY)
    d = job.run(["--nproc-per-node", "2", script])
    assert d.returncode == 1
    report = d.stderr[d.stderr.index("disttorch-run: job failed"):]
    assert "ended early:" in report
    assert "rank 1 (host " in report and "exited with code 0 before the job ended" in report
    assert "was killed" not in d.stderr
    assert "rank 1 exited before the job ended" in report  # rank 0's error names it too


def test_sigusr1_on_any_node_shows_the_stacks_of_every_node(job, port_pair):
    script = job.script("napping.py", NAPPING)
    common = ["--nnodes", "2", "--nproc-per-node", "1", "--master-port", str(port_pair)]
    env = {"DISTTORCH_SECRET": "stacks-secret"}
    node0 = job.start([*common, "--node-rank", "0", script], env=env)
    node1 = job.start([*common, "--node-rank", "1", script], env=env)
    job.wait_for_files("ready*", 2, timeout=30)
    node1.send_signal(signal.SIGUSR1)  # relayed through node 0 to every node
    time.sleep(1.0)
    (job.dir / "go").touch()
    d0, d1 = job.finish(node0), job.finish(node1)
    assert (d0.returncode, d1.returncode) == (0, 0), d0.stderr + d1.stderr
    assert any(line.strip().endswith("in napping") for line in d0.lines("[rank0]: ")), d0.stderr
    assert any(line.strip().endswith("in napping") for line in d1.lines("[rank1]: ")), d1.stderr
