"""The fork server: workers forked from a pre-imported template get everything a spawned worker
gets (environment, cwd, argv, seeds, process group, relay, failure report, restarts), and
`--start-method spawn` still starts fresh interpreters."""
import os
import signal
import sys
import time

import psutil
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the fork server is used on Linux only")

PROBE = """
import json, os, random, sys
preimported = "numpy" in sys.modules and "disttorch" in sys.modules
import numpy, disttorch
with open("/proc/self/cmdline", "rb") as f:
    cmdline = f.read().split(b"\\0")
record = {
    "rank": int(os.environ["RANK"]), "local_rank": os.environ["LOCAL_RANK"],
    "pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgrp(), "sid": os.getsid(0),
    "cwd": os.getcwd(), "argv": sys.argv, "main": __name__,
    "main_file": sys.modules["__main__"].__file__,
    "preimported": preimported,
    "template": any(a.endswith(b"_forkserver_template.py") for a in cmdline[:3]),
    "random": random.random(), "numpy": float(numpy.random.rand()),
    "torch_seed": disttorch.initial_seed(), "torch": float(disttorch.rand(1).item()),
    "only_mine": os.environ.get("MARK"),
    "stdin": sys.stdin.read(),
}
with open(f"probe{record['rank']}.json", "w") as f:
    json.dump(record, f)
print("unflushed line from", record["rank"])  # relayed although the worker exits right after
"""

FAIL_ONCE = """
import os, sys
import disttorch
if os.environ["RANK"] == "1" and os.environ["TORCHELASTIC_RESTART_COUNT"] == "0":
    raise ValueError("rank 1 fails on attempt 0")
print("ok on attempt", os.environ["TORCHELASTIC_RESTART_COUNT"])
"""

FAIL = """
import os, time
if os.environ["RANK"] == "2":
    raise KeyError("missing shard 7")
time.sleep(30)
"""

SLEEP = """
import os, time
open(f"up{os.environ['RANK']}", "w").close()
time.sleep(60)
"""


def _method(method):
    return [] if method == "default" else ["--start-method", method]


@pytest.mark.parametrize("method", ["default", "spawn"])
def test_each_worker_gets_its_own_process_env_cwd_argv_and_seeds(job, method):
    script = job.script("probe.py", PROBE)
    proc = job.start([*_method(method), "--nproc-per-node", "3", script, "--lr", "0.1"])
    d = job.finish(proc, timeout=120)
    assert d.returncode == 0, d.output
    records = sorted(job.json_files("probe*.json"), key=lambda r: r["rank"])
    assert [r["rank"] for r in records] == [0, 1, 2]
    forked = method == "default"
    for r in records:
        assert r["template"] is forked and r["preimported"] is forked, r
        assert r["ppid"] == proc.pid  # the launcher's own child: it waits for and signals it
        assert r["pgid"] == r["pid"] == r["sid"]  # leads its own session and group
        assert r["cwd"] == str(job.dir)
        assert r["argv"] == [script, "--lr", "0.1"]
        assert r["main"] == "__main__" and r["main_file"] == script
        assert r["local_rank"] == str(r["rank"])
        assert r["stdin"] == ""  # /dev/null, never the launcher's stdin
        assert f"[rank{r['rank']}]: unflushed line from {r['rank']}" in d.stdout
    for key in ("random", "numpy", "torch_seed", "torch"):
        assert len({r[key] for r in records}) == 3, (key, records)  # reseeded in every worker
    assert len({r["pid"] for r in records}) == 3


def test_an_explicit_seed_gives_every_forked_worker_the_same_stream(job):
    script = job.script("seeded.py", "import os, disttorch\ndisttorch.manual_seed(5)\n"
                        "print('draw', disttorch.rand(3).tolist())\n")
    d = job.run(["--nproc-per-node", "2", script], timeout=120)
    assert d.returncode == 0, d.output
    import torch
    torch.manual_seed(5)
    expected = f"draw {torch.rand(3).tolist()}"
    assert d.lines("[rank0]: ") == [expected] and d.lines("[rank1]: ") == [expected]


@pytest.mark.parametrize("method", ["default", "spawn"])
def test_a_crash_is_reported_the_same_way(job, method):
    script = job.script("fail.py", FAIL)
    d = job.run([*_method(method), "--nproc-per-node", "3", "--grace-period", "2", script],
                timeout=120)
    assert d.returncode == 1, d.output
    report = d.stderr[d.stderr.index("disttorch-run: job failed"):]
    assert "  rank      : 2 (local rank 2 on node 0)" in report
    assert "  exit      : exit code 1" in report
    assert "  error     : KeyError: 'missing shard 7'" in report
    assert f'      File "{script}", line 4, in <module>' in report
    assert "_forkserver_template" not in report and "runpy" not in report
    assert "stopped by the launcher: rank 0 (SIGTERM), rank 1 (SIGTERM)" in report
    assert job.processes() == [] or _only_gone(job)


def _only_gone(job, timeout=5.0):
    deadline = time.monotonic() + timeout
    while job.processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    return job.processes() == []


def test_a_restart_forks_the_group_again(job):
    script = job.script("once.py", FAIL_ONCE)
    d = job.run(["--nproc-per-node", "2", "--max-restarts", "1", script], timeout=120)
    assert d.returncode == 0, d.output
    assert ("attempt failed: rank 1 (host " in d.stderr
            and "ValueError: rank 1 fails on attempt 0; restarting all 2 workers (restart 1 of 1)"
            in d.stderr), d.stderr
    assert d.lines("[rank0]: ")[-1] == "ok on attempt 1"
    rank1 = d.lines("[rank1]: ")
    assert [line for line in rank1 if line.startswith("ok")] == ["ok on attempt 1"]
    assert "Traceback (most recent call last):" in rank1
    assert "ValueError: rank 1 fails on attempt 0" in rank1


def test_no_worker_or_template_outlives_a_killed_launcher(job):
    script = job.script("sleep.py", SLEEP)
    proc = job.start(["--nproc-per-node", "3", script])
    job.wait_for_files("up*", 3, timeout=60)
    mine = job.processes()
    templates = [p for p in mine if any(a.endswith("_forkserver_template.py") for a in p.cmdline()[:3])
                 and p.ppid() == proc.pid]
    # the template and the three workers it forked (which keep its command line)
    assert len(templates) == 4, [p.cmdline() for p in mine]
    assert len(mine) == 1 + 1 + 3  # and the launcher
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _only_gone(job, timeout=15), [(p.pid, p.cmdline()) for p in job.processes()]


def test_sigint_ends_forked_workers_quietly(job):
    script = job.script("sleep.py", SLEEP)
    proc = job.start(["--nproc-per-node", "2", script])
    job.wait_for_files("up*", 2, timeout=60)
    proc.send_signal(signal.SIGINT)
    d = job.finish(proc, timeout=60)
    assert d.returncode == 130, d.output
    assert "KeyboardInterrupt" not in d.output and "Traceback" not in d.output
    assert _only_gone(job)


def test_start_method_names_are_checked(job):
    d = job.run(["--start-method", "threads", "--nproc-per-node", "1", "x.py"])
    assert d.returncode == 2
    assert "--start-method: expected forkserver, fork or spawn, got 'threads'" in d.stderr


def test_the_template_imports_the_stack_runs_one_thread_and_exits_on_close():
    from disttorch_launcher.forkserver import ForkServer

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    server = ForkServer(sys.executable, env)
    assert {"numpy", "disttorch"} <= set(server.imported)
    assert psutil.Process(server.pid).num_threads() == 1  # no BLAS, ZeroMQ or Python threads
    server.close()
    assert server.proc.returncode == 0


def test_a_forked_worker_gets_the_blas_threads_its_environment_asks_for(job):
    script = job.script("threads.py", "import disttorch\nprint('threads', disttorch.get_num_threads())\n")
    d = job.run(["--nproc-per-node", "1", script], env={"OMP_NUM_THREADS": "2"}, timeout=120)
    assert d.returncode == 0, d.output
    assert d.lines("[rank0]: ") == ["threads 2"]
