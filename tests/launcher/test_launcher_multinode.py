"""Two "nodes" as two launchers on 127.0.0.1: rank layout, a shared run id and secret, restarts
together, failures and lost nodes reported, SLURM / Open MPI placement from simulated variables,
and --hosts through a stand-in ssh that runs the command locally."""
import hashlib
import json
import re
import signal
import sys
import time

import pytest


pytestmark = pytest.mark.timeout(60)

DUMP = """
import hashlib, json, os, time
keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK",
        "GROUP_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
        "DISTTORCH_RESTART_COUNT"]
record = {k: os.environ.get(k) for k in keys}
record["secret_sha"] = hashlib.sha256(os.environ["DISTTORCH_SECRET"].encode()).hexdigest()
with open(f"env_rank{os.environ['RANK']}.json", "w") as f:
    json.dump(record, f)
print("hello from", os.environ["RANK"])
"""

# Rank FAIL_RANK raises at restart count < FAIL_UNTIL; everyone else sleeps until stopped
# (or ends after a short nap once no failure is due).
FLAKY = """
import glob, os, sys, time
rank, restart = int(os.environ["RANK"]), int(os.environ["DISTTORCH_RESTART_COUNT"])
open(f"ran_rank{rank}_restart{restart}", "w").close()
if restart < int(os.environ.get("FAIL_UNTIL", "99")):
    if rank == int(os.environ["FAIL_RANK"]):
        # fail once every rank runs, however loaded the machine
        while len(glob.glob(f"ran_rank*_restart{restart}")) < int(os.environ["WORLD_SIZE"]):
            time.sleep(0.01)
        raise RuntimeError(f"rank {rank} broke at restart {restart}")
    time.sleep(60)
time.sleep(0.2)
"""

SLEEP = """
import os, time
open(f"ready{os.environ['RANK']}", "w").close()
time.sleep(120)
"""


def _two_nodes(job, script, port, extra0=(), extra1=(), env=None, nproc=2):
    common = ["--nnodes", "2", "--nproc-per-node", str(nproc), "--master-port", str(port)]
    env = {"DISTTORCH_SECRET": "shared-test-secret", **(env or {})}
    node0 = job.start([*common, "--node-rank", "0", *extra0, script], env=env)
    node1 = job.start([*common, "--node-rank", "1", *extra1, script], env=env)
    return node0, node1


def _check_layout(job, nnodes, nproc, master_addr, port):
    records = job.json_files("env_rank*.json")
    world = nnodes * nproc
    assert sorted(int(r["RANK"]) for r in records) == list(range(world))
    for r in records:
        rank = int(r["RANK"])
        assert r["LOCAL_RANK"] == str(rank % nproc)
        assert (r["GROUP_RANK"], r["NODE_RANK"]) == (str(rank // nproc),) * 2
        assert (r["WORLD_SIZE"], r["LOCAL_WORLD_SIZE"]) == (str(world), str(nproc))
        assert r["GROUP_WORLD_SIZE"] == str(nnodes)
        assert (r["MASTER_ADDR"], r["MASTER_PORT"]) == (master_addr, str(port))
    assert len({r["TORCHELASTIC_RUN_ID"] for r in records}) == 1
    assert len({r["secret_sha"] for r in records}) == 1
    return records


def test_two_nodes_share_ranks_run_id_and_secret(job, port_pair):
    script = job.script("dump.py", DUMP)
    node0, node1 = _two_nodes(job, script, port_pair)
    d0, d1 = job.finish(node0), job.finish(node1)
    assert (d0.returncode, d1.returncode) == (0, 0), d0.stderr + d1.stderr
    records = _check_layout(job, 2, 2, "127.0.0.1", port_pair)
    assert records[0]["secret_sha"] == hashlib.sha256(b"shared-test-secret").hexdigest()
    assert sorted(d0.stdout.splitlines()) == ["[rank0]: hello from 0", "[rank1]: hello from 1"]
    assert sorted(d1.stdout.splitlines()) == ["[rank2]: hello from 2", "[rank3]: hello from 3"]
    assert max(d0.elapsed, d1.elapsed) < 10
    assert job.leftovers() == []


def test_node_with_a_wrong_secret_is_rejected(job, port_pair):
    script = job.script("dump.py", DUMP)
    common = ["--nnodes", "2", "--master-port", str(port_pair), "--join-timeout", "2"]
    node0 = job.start([*common, "--node-rank", "0", script], env={"DISTTORCH_SECRET": "right"})
    node1 = job.start([*common, "--node-rank", "1", script], env={"DISTTORCH_SECRET": "wrong"})
    d1 = job.finish(node1)
    assert d1.returncode == 1
    assert "authentication failed" in d1.stderr
    d0 = job.finish(node0)
    assert d0.returncode == 1
    assert "rendezvous timed out after 2 s: 1 of 2 nodes joined" in d0.stderr
    assert list(job.dir.glob("env_rank*.json")) == []  # nothing ran
    assert job.leftovers() == []


def test_failure_on_one_node_stops_both_with_one_report(job, port_pair):
    script = job.script("flaky.py", FLAKY)
    node0, node1 = _two_nodes(job, script, port_pair, env={"FAIL_RANK": "3"})
    d0, d1 = job.finish(node0), job.finish(node1)
    assert (d0.returncode, d1.returncode) == (1, 1)
    assert d0.stderr.count("disttorch-run: job failed") == 1
    assert "disttorch-run: job failed" not in d1.stderr and "=" * 78 not in d1.stderr
    assert "rank      : 3 (local rank 1 on node 1)" in d0.stderr
    assert "RuntimeError: rank 3 broke at restart 0" in d0.stderr
    assert ("stopped by the launcher: rank 0 (SIGTERM), rank 1 (SIGTERM), rank 2 (SIGTERM)"
            in d0.stderr)
    assert "the job failed: rank 3" in d1.stderr and "node 0 prints the full report" in d1.stderr
    assert max(d0.elapsed, d1.elapsed) < 8
    assert job.leftovers() == []


def test_nodes_restart_together(job, port_pair):
    script = job.script("flaky.py", FLAKY)
    node0, node1 = _two_nodes(job, script, port_pair, extra0=["--max-restarts", "2"],
                              env={"FAIL_RANK": "2", "FAIL_UNTIL": "2"})
    d0, d1 = job.finish(node0), job.finish(node1)
    assert (d0.returncode, d1.returncode) == (0, 0), d0.stderr + d1.stderr
    ran = sorted(p.name for p in job.dir.glob("ran_*"))
    assert ran == [f"ran_rank{r}_restart{k}" for r in range(4) for k in range(3)]
    assert "restarting 2 nodes (restart 1 of 2)" in d0.stderr
    assert "restarting 2 nodes (restart 2 of 2)" in d0.stderr
    assert job.leftovers() == []


@pytest.mark.parametrize("victim", [0, 1])
def test_lost_node_stops_the_other(job, port_pair, victim):
    script = job.script("sleep.py", SLEEP)
    nodes = _two_nodes(job, script, port_pair)
    job.wait_for_files("ready*", 4)
    killed = time.monotonic()
    nodes[victim].kill()  # SIGKILL: no goodbye on the control channel
    survivor = job.finish(nodes[1 - victim])
    nodes[victim].wait()
    assert survivor.returncode == 1
    if victim == 1:
        assert "first failure (by time):" in survivor.stderr
        assert re.search(r"node      : 1 \(host .+\) lost", survivor.stderr)
        assert "control connection" in survivor.stderr
        assert "stopped by the launcher: rank 0 (SIGTERM), rank 1 (SIGTERM)" in survivor.stderr
    else:
        assert "lost node 0 (127.0.0.1:" in survivor.stderr
        assert "stopped 2 workers" in survivor.stderr
    assert time.monotonic() - killed < 8
    assert job.leftovers() == []


def test_sigterm_to_one_node_stops_the_job(job, port_pair):
    script = job.script("sleep.py", SLEEP)
    node0, node1 = _two_nodes(job, script, port_pair)
    job.wait_for_files("ready*", 4)
    node1.send_signal(signal.SIGTERM)
    d1, d0 = job.finish(node1), job.finish(node0)
    assert d1.returncode == 143 and d0.returncode == 1
    assert "the launcher received SIGTERM: stopped 2 workers" in d1.stderr
    assert "its launcher received SIGTERM" in d0.stderr
    assert max(d0.elapsed, d1.elapsed) < 10
    assert job.leftovers() == []


def _srun_env(job_id, procid, nodelist="localhost,127.0.0.1"):
    return {"SLURM_JOB_ID": str(job_id), "SLURM_STEP_ID": "0", "SLURM_PROCID": str(procid),
            "SLURM_NTASKS": "2", "SLURM_NNODES": "2", "SLURM_NODEID": str(procid),
            "SLURM_LOCALID": "0", "SLURM_STEP_NODELIST": nodelist,
            "DISTTORCH_SECRET": "exported-in-the-batch-script"}


def _slurm_job_id_with_free_ports():
    """A job id whose derived master port (and the control port after it) is free here."""
    import random
    import socket
    from disttorch_launcher.schedulers import slurm_master_port
    for job_id in random.sample(range(10000), 200):
        port = slurm_master_port(str(job_id))
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return job_id, port
    pytest.skip("no free port pair in the range SLURM job ids map to")


def test_launchers_under_simulated_srun(job):
    job_id, port = _slurm_job_id_with_free_ports()
    script = job.script("dump.py", DUMP)
    procs = [job.start(["--nproc-per-node", "2", script], env=_srun_env(job_id, i))
             for i in range(2)]
    done = [job.finish(p) for p in procs]
    assert [d.returncode for d in done] == [0, 0], done[0].stderr + done[1].stderr
    records = _check_layout(job, 2, 2, "localhost", port)  # first host of the node list
    assert records[0]["TORCHELASTIC_RUN_ID"] == f"slurm-{job_id}.0"
    assert job.leftovers() == []


def test_srun_with_several_tasks_per_node_is_refused(job):
    env = _srun_env(77, 0)
    env.update(SLURM_NTASKS="4")
    done = job.run([job.script("dump.py", DUMP)], env=env)
    assert done.returncode == 2
    assert "needs one task per node, got 4 tasks on 2 nodes" in done.stderr


def test_launchers_under_simulated_open_mpi(job, port_pair):
    script = job.script("dump.py", DUMP)
    procs = []
    for rank in range(2):
        env = {"OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_SIZE": "2",
               "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "1",
               "MASTER_ADDR": "127.0.0.1", "DISTTORCH_SECRET": "mpi-secret"}
        procs.append(job.start(["--master-port", str(port_pair), script], env=env))
    done = [job.finish(p) for p in procs]
    assert [d.returncode for d in done] == [0, 0], done[0].stderr + done[1].stderr
    _check_layout(job, 2, 1, "127.0.0.1", port_pair)
    assert job.leftovers() == []


FAKE_SSH = """
import os, sys
# Stand-in for ssh: 'fake_ssh.py HOST COMMAND' runs COMMAND locally as a remote shell would,
# without the caller's environment secrets, and logs its command line.
host, command = sys.argv[1], sys.argv[2]
os.environ.pop("DISTTORCH_SECRET", None)
with open("ssh_calls.log", "a") as f:
    f.write(repr(sys.argv[1:]) + "\\n")
os.execvp("sh", ["sh", "-c", command])
"""

CHECK_LISTINGS = """
import json, os, psutil
# No process of the job may show the secret on its command line.
secret = os.environ["DISTTORCH_SECRET"]
tag = os.environ["DISTTORCH_TEST_TAG"]
seen = 0
for p in psutil.process_iter():
    try:
        if p.environ().get("DISTTORCH_TEST_TAG") == tag:
            seen += 1
            assert secret not in " ".join(p.cmdline()), p.cmdline()
    except psutil.Error:
        pass
open(f"listing_ok{os.environ['RANK']}", "w").write(str(seen))
"""


def test_hosts_through_a_stand_in_ssh(job):
    fake = job.script("fake_ssh.py", FAKE_SSH)
    script = job.script("dump.py", DUMP + CHECK_LISTINGS)
    done = job.run(["--hosts", "localhost:2,127.0.0.1:1", "--ssh-command",
                    f"{sys.executable} {fake}", script])
    assert done.returncode == 0, done.stderr
    records = job.json_files("env_rank*.json")
    assert [(r["RANK"], r["GROUP_RANK"], r["LOCAL_RANK"], r["WORLD_SIZE"], r["LOCAL_WORLD_SIZE"])
            for r in records] == [("0", "0", "0", "3", "2"), ("1", "0", "1", "3", "2"),
                                  ("2", "1", "0", "3", "1")]
    assert len({r["secret_sha"] for r in records}) == 1
    assert len({(r["MASTER_ADDR"], r["MASTER_PORT"]) for r in records}) == 1
    assert sorted(done.stdout.splitlines()) == [f"[rank{r}]: hello from {r}" for r in range(3)]
    calls = (job.dir / "ssh_calls.log").read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("['127.0.0.1', 'cd ")
    assert "--secret-stdin" in calls[0] and "--node-rank 1" in calls[0]
    assert all(int((job.dir / f"listing_ok{r}").read_text()) >= 3 for r in range(3))
    assert job.leftovers() == []


def test_hostfile_failure_on_the_remote_node_is_reported_once(job):
    fake = job.script("fake_ssh.py", FAKE_SSH)
    hostfile = job.dir / "hostfile"
    hostfile.write_text("localhost slots=1\n127.0.0.1 slots=2\n")
    script = job.script("flaky.py", FLAKY)
    done = job.run(["--hostfile", str(hostfile), "--ssh-command", f"{sys.executable} {fake}",
                    script], env={"FAIL_RANK": "2"})
    assert done.returncode == 1
    assert done.stderr.count("disttorch-run: job failed") == 1
    assert "rank      : 2 (local rank 1 on node 1)" in done.stderr
    assert "RuntimeError: rank 2 broke at restart 0" in done.stderr
    assert done.elapsed < 10
    assert job.leftovers() == []


def test_hosts_driver_killed_with_sigkill_takes_every_node_down(job):
    fake = job.script("fake_ssh.py", FAKE_SSH)
    script = job.script("sleep.py", SLEEP)
    driver = job.start(["--hosts", "localhost:1,127.0.0.1:2", "--ssh-command",
                        f"{sys.executable} {fake}", script])
    job.wait_for_files("ready*", 3)
    killed = time.monotonic()
    driver.kill()
    driver.wait()
    assert job.leftovers(timeout=8) == []
    assert time.monotonic() - killed < 8


def test_unreachable_host_fails_fast(job):
    script = job.script("sleep.py", SLEEP)
    done = job.run(["--hosts", "localhost:1,127.0.0.1:1", "--ssh-command", "false", script])
    assert done.returncode == 1
    assert "node 1 (host 127.0.0.1)" in done.stderr
    assert "ssh to 127.0.0.1 ended with exit code 1" in done.stderr
    assert done.elapsed < 10
    assert job.leftovers() == []


def test_hosts_dry_run_shows_every_node_and_hides_the_secret(job):
    script = job.script("dump.py", DUMP)
    done = job.run(["--hosts", "localhost:2,node7:4", "--dry-run", script, "--lr", "1"],
                   env={"DISTTORCH_SECRET": "do-not-print-me"})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("disttorch-run dry run: 2 nodes, 6 workers, master ")
    assert "node 0 on localhost (this machine): 2 workers, ranks 0-1" in out
    assert "node 1 on node7 (via ssh): 4 workers, ranks 2-5; secret sent on stdin" in out
    assert "ssh node7 'cd " in out and "--node-rank 1 --nproc-per-node 4" in out
    assert "do-not-print-me" not in out + done.stderr
    assert json.dumps(out)  # plain text
    assert not list(job.dir.glob("env_rank*"))


def test_hosts_all_remote_when_this_machine_is_not_listed(job, port_pair):
    fake = job.script("fake_ssh.py", FAKE_SSH)
    script = job.script("dump.py", DUMP)
    done = job.run(["--hosts", "node0.invalid:1,node1.invalid:2", "--master-addr", "127.0.0.1",
                    "--master-port", str(port_pair), "--ssh-command", f"{sys.executable} {fake}",
                    script])
    assert done.returncode == 0, done.stderr
    records = job.json_files("env_rank*.json")
    assert [(r["RANK"], r["GROUP_RANK"], r["WORLD_SIZE"]) for r in records] == [
        ("0", "0", "3"), ("1", "1", "3"), ("2", "1", "3")]
    calls = (job.dir / "ssh_calls.log").read_text().splitlines()
    assert sorted(c.split(",")[0] for c in calls) == ["['node0.invalid'", "['node1.invalid'"]
    assert job.leftovers() == []


def test_elastic_job_takes_in_a_late_node(job, port_pair):
    script = job.script("elastic.py", """
import os, time
world, restart = os.environ["WORLD_SIZE"], os.environ["DISTTORCH_RESTART_COUNT"]
open(f"world{world}_rank{os.environ['RANK']}_restart{restart}", "w").close()
if world == "1":
    time.sleep(60)  # stopped when the second node joins
""")
    common = ["--nnodes", "1:2", "--rdzv-conf", "last_call_timeout=0.2", "--master-port",
              str(port_pair)]
    env = {"DISTTORCH_SECRET": "elastic"}
    first = job.start([*common, script], env=env)
    job.wait_for_files("world1_*", 1)  # running alone
    second = job.start([*common, "--node-rank", "1", script], env=env)
    d1, d2 = job.finish(first), job.finish(second)
    assert (d1.returncode, d2.returncode) == (0, 0), d1.stderr + d2.stderr
    assert sorted(p.name for p in job.dir.glob("world*")) == [
        "world1_rank0_restart0", "world2_rank0_restart0", "world2_rank1_restart0"]
    assert "joined: re-forming the group with 2 nodes" in d1.stderr
    assert job.leftovers() == []
