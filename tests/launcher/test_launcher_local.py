"""Single-node jobs that succeed: worker variables, prefixed output, logs, -m, --no-python."""
import os
import re
import sys

import pytest

from disttorch_launcher.config import available_cores

pytestmark = pytest.mark.timeout(60)

DUMP_ENV = """
import json, os, sys
keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK",
        "GROUP_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT", "DISTTORCH_SECRET",
        "TORCHELASTIC_RESTART_COUNT", "DISTTORCH_RESTART_COUNT", "TORCHELASTIC_RUN_ID",
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "DISTTORCH_ERROR_FILE",
        "TORCHELASTIC_ERROR_FILE", "DISTTORCH_LAUNCHER_PID"]
record = {k: os.environ.get(k) for k in keys}
record["argv"] = sys.argv
record["pid"] = os.getpid()
record["ppid"] = os.getppid()
record["sys_path0"] = sys.path[0]
with open(f"env_rank{os.environ['RANK']}.json", "w") as f:
    json.dump(record, f)
"""


@pytest.mark.parametrize("nproc", [1, 2, 4])
def test_every_rank_sees_its_variables(job, nproc):
    script = job.script("dump.py", DUMP_ENV)
    done = job.run(["--nproc-per-node", str(nproc), script, "--flag", "x y"])
    assert done.returncode == 0, done.stderr
    records = job.json_files("env_rank*.json")
    assert [r["RANK"] for r in records] == [str(i) for i in range(nproc)]
    port = records[0]["MASTER_PORT"]
    secret = records[0]["DISTTORCH_SECRET"]
    threads = str(max(1, available_cores() // nproc))
    for i, r in enumerate(records):
        assert r["LOCAL_RANK"] == str(i)
        assert (r["WORLD_SIZE"], r["LOCAL_WORLD_SIZE"]) == (str(nproc), str(nproc))
        assert (r["GROUP_RANK"], r["NODE_RANK"], r["GROUP_WORLD_SIZE"]) == ("0", "0", "1")
        assert (r["MASTER_ADDR"], r["MASTER_PORT"]) == ("127.0.0.1", port)
        assert r["DISTTORCH_SECRET"] == secret and len(secret) == 64
        assert r["TORCHELASTIC_RESTART_COUNT"] == r["DISTTORCH_RESTART_COUNT"] == "0"
        assert r["OMP_NUM_THREADS"] == r["OPENBLAS_NUM_THREADS"] == r["MKL_NUM_THREADS"] == threads
        assert r["DISTTORCH_ERROR_FILE"] == r["TORCHELASTIC_ERROR_FILE"]
        assert r["DISTTORCH_ERROR_FILE"].endswith(f"rank{i}/error.json")
        assert r["argv"] == [script, "--flag", "x y"]
        assert r["sys_path0"] == str(job.dir)  # as `python script.py` would have it
        assert r["ppid"] == int(r["DISTTORCH_LAUNCHER_PID"])  # the launcher spawned it directly
    assert 1024 <= int(port) <= 65535
    assert job.leftovers() == []


def test_secret_and_port_are_fresh_per_job(job):
    script = job.script("dump.py", DUMP_ENV)
    assert job.run([script]).returncode == 0
    first = job.json_files("env_rank0.json")[0]
    assert job.run([script]).returncode == 0
    second = job.json_files("env_rank0.json")[0]
    assert first["DISTTORCH_SECRET"] != second["DISTTORCH_SECRET"]
    assert first["TORCHELASTIC_RUN_ID"] != second["TORCHELASTIC_RUN_ID"]


def test_user_thread_settings_win(job):
    script = job.script("dump.py", DUMP_ENV)
    done = job.run(["--nproc-per-node", "2", script], env={"OMP_NUM_THREADS": "3",
                                                           "MKL_NUM_THREADS": "5"})
    assert done.returncode == 0, done.stderr
    r = job.json_files("env_rank1.json")[0]
    assert (r["OMP_NUM_THREADS"], r["OPENBLAS_NUM_THREADS"], r["MKL_NUM_THREADS"]) == ("3", "3", "5")


def test_output_is_rank_prefixed_and_never_interleaved(job):
    script = job.script("chatty.py", """
import os, sys
rank = os.environ["RANK"]
for i in range(300):
    sys.stdout.write(f"line {i} of rank {rank} " + rank * 3000 + "\\n")
    if i % 50 == 0:
        sys.stderr.write(f"warning {i} from {rank}\\n")
sys.stdout.write("no newline at the end")
""")
    done = job.run(["--nproc-per-node", "3", script])
    assert done.returncode == 0, done.stderr
    pattern = re.compile(r"^\[rank(\d)\]: line (\d+) of rank (\d) (\d{3000})$")
    lines = done.stdout.splitlines()
    assert len(lines) == 3 * 301
    seen = {0: [], 1: [], 2: []}
    for line in lines:
        if line.endswith("no newline at the end"):
            assert re.match(r"^\[rank\d\]: no newline at the end$", line)
            continue
        m = pattern.match(line)
        assert m, line[:120]
        assert m.group(1) == m.group(3) and set(m.group(4)) == {m.group(1)}
        seen[int(m.group(1))].append(int(m.group(2)))
    assert all(v == list(range(300)) for v in seen.values())  # per-rank order kept
    err = [line for line in done.stderr.splitlines() if line.startswith("[rank")]
    assert sorted(err) == sorted(f"[rank{r}]: warning {i} from {r}" for r in range(3)
                                 for i in range(0, 300, 50))


def test_log_dir_keeps_each_rank_output(job):
    script = job.script("talk.py", """
import os, sys
print("out of", os.environ["RANK"])
print("err of", os.environ["RANK"], file=sys.stderr)
""")
    logs = job.dir / "logs"
    done = job.run(["--nproc-per-node", "2", "--log-dir", str(logs), "--run-id", "r1",
                    "--redirects", "0:1", script])
    assert done.returncode == 0, done.stderr
    for rank in (0, 1):
        d = logs / "r1" / "attempt_0" / f"rank{rank}"
        assert (d / "stdout.log").read_text() == f"out of {rank}\n"
        assert (d / "stderr.log").read_text() == f"err of {rank}\n"
    # --redirects 0:1 sends local rank 0's stdout to its log file only
    assert "[rank0]: out of 0" not in done.stdout and "[rank1]: out of 1" in done.stdout
    assert "[rank0]: err of 0" in done.stderr


def test_local_ranks_filter_limits_the_console(job):
    script = job.script("talk.py", "import os\nprint('hello from', os.environ['RANK'])\n")
    done = job.run(["--nproc-per-node", "3", "--local-ranks-filter", "1", script])
    assert done.returncode == 0
    assert done.stdout == "[rank1]: hello from 1\n"


def test_module_entry_point(job):
    pkg = job.dir / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train.py").write_text(
        "import os, sys\nprint('module', __name__, os.environ['RANK'], sys.argv[1:])\n")
    done = job.run(["--nproc-per-node", "2", "-m", "mypkg.train", "--epochs", "1"])
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [
        "[rank0]: module __main__ 0 ['--epochs', '1']",
        "[rank1]: module __main__ 1 ['--epochs', '1']"]


def test_no_python_runs_a_program(job):
    done = job.run(["--nproc-per-node", "2", "--no-python", "sh", "-c", 'echo "sh rank $RANK"'])
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["[rank0]: sh rank 0", "[rank1]: sh rank 1"]


def test_dry_run_prints_the_plan_and_starts_nothing(job):
    script = job.script("dump.py", DUMP_ENV)
    done = job.run(["--nproc-per-node", "2", "--dry-run", script, "a"])
    assert done.returncode == 0, done.stderr
    assert "1 node, 2 workers, master 127.0.0.1:<free port>" in done.stdout
    assert f"_bootstrap.py {script} a" in done.stdout
    assert "RANK=1" in done.stdout and "DISTTORCH_SECRET='<secret>'" in done.stdout
    assert list(job.dir.glob("env_rank*.json")) == []


def test_usage_errors_exit_2_naming_the_value(job):
    done = job.run(["--nproc-per-node", "zero", "x.py"])
    assert done.returncode == 2
    assert "--nproc-per-node: expected a positive integer, 'auto', 'cpu' or 'gpu', got 'zero'" \
        in done.stderr
    done = job.run(["missing.py"])
    assert done.returncode == 2 and "script 'missing.py' not found" in done.stderr


def test_launcher_imports_nothing_of_the_tensor_stack(job):
    probe = job.script("probe.py", """
import sys
sys.argv = ["disttorch-run", "--dry-run", "x.py"]
import disttorch_launcher.cli, disttorch_launcher.local, disttorch_launcher.multinode, disttorch_launcher.remote, disttorch_launcher.coordinator
heavy = sorted(m for m in sys.modules
        if m.split(".")[0] in ("numpy", "torch", "disttorch", "zmq", "psutil"))
print(heavy)
""")
    import subprocess
    out = subprocess.run([sys.executable, probe], capture_output=True, text=True, env=job.env,
                         cwd=job.dir)
    assert out.stdout.strip() == "[]", out.stderr


def test_python_m_launcher_and_console_script_agree(job):
    script = job.script("hi.py", "print('hi')\n")
    exe = os.path.join(os.path.dirname(sys.executable), "disttorch-run")
    if not os.path.exists(exe):
        pytest.skip("disttorch-run console script is not installed in this environment")
    import subprocess
    out = subprocess.run([exe, script], capture_output=True, text=True, env=job.env, cwd=job.dir)
    assert (out.returncode, out.stdout) == (0, "[rank0]: hi\n")
    assert job.run([script]).stdout == out.stdout


def test_scratch_directories_of_dead_launchers_are_swept(tmp_path):
    import subprocess
    import sys
    from disttorch_launcher.local import sweep_stale_scratch
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs (SIGKILLed launcher)
    stale = tmp_path / f"disttorch-abc123-p{gone.pid}-k3j_x9qz"
    live = tmp_path / f"disttorch-abc123-p{os.getpid()}-a1b2c3d4"
    logs = tmp_path / "disttorch-logs-abc123-a1b2c3d4"  # --redirects without --log-dir: the user's
    other = tmp_path / "unrelated-p1-abcdefgh"
    for d in (stale, live, logs, other):
        (d / "attempt_0" / "rank0").mkdir(parents=True)
        (d / "attempt_0" / "rank0" / "error.json").write_text("{}")
    assert sweep_stale_scratch(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists() and logs.exists() and other.exists()
