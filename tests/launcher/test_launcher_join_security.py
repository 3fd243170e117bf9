"""Node 0's control port gives nothing secret to a joiner that has not proven it holds the job
secret: bare, replayed, wrongly signed and late joins are rejected, logged once each, and the
job they attacked trains to the same weights as an unattacked run."""
import json
import socket
import time

import numpy as np
import pytest

from disttorch_launcher.control import PROTOCOL, mac, new_nonce

pytestmark = pytest.mark.timeout(90)

SECRET = "attacked-job-secret-0123456789abcdef"

# Two ranks train a linear model with DDP once the test says go (so the late join hits a job
# that is full and running); rank 0 writes the weights.
TRAIN = """
import os, time
import disttorch as torch
import disttorch.distributed as dist
from disttorch.nn.parallel import DistributedDataParallel as DDP

open(f"ready{os.environ['RANK']}", "w").close()
while not os.path.exists("go"):
    time.sleep(0.02)
dist.init_process_group("zmq")
rank = dist.get_rank()
torch.manual_seed(0)
model = DDP(torch.nn.Linear(4, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
gen = torch.Generator().manual_seed(100 + rank)
for step in range(5):
    x = torch.randn(8, 4, generator=gen)
    loss = (model(x) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
if rank == 0:
    torch.save({k: v for k, v in model.module.state_dict().items()}, "weights.pt")
dist.destroy_process_group()
"""


def _attempt(port, make_join):
    """One connection to node 0's control port: returns (raw bytes received, last message)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        hello_raw = reader.readline()
        hello = json.loads(hello_raw)
        sock.sendall(json.dumps(make_join(hello)).encode() + b"\n")
        received = hello_raw + reader.read()  # node 0 answers, then hangs up
    last = json.loads(received.splitlines()[-1]) if received.strip() else None
    return received, hello, last


def _node_info(node_rank=1):
    return {"node_rank": node_rank, "host": "intruder", "pid": 4242, "nproc": 1,
            "run_id": None, "min_nodes": 2, "max_nodes": 2}


def _wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"control port {port} never opened")


def _load_weights(path):
    import disttorch

    return {k: v.numpy() for k, v in disttorch.load(str(path)).items()}


def test_joins_without_the_secret_get_nothing_and_the_job_trains_as_unattacked(job, port_pair):
    script = job.script("train.py", TRAIN)
    control = port_pair + 1
    common = ["--nnodes", "2", "--nproc-per-node", "1", "--master-port", str(port_pair),
              "--run-id", "attacked"]
    env = {"DISTTORCH_SECRET": SECRET}
    node0 = job.start([*common, "--node-rank", "0", script], env=env)
    _wait_port(control)
    answers = {}
    # 1. a bare join, as the old open mode accepted
    answers["bare"] = _attempt(control, lambda hello: {"type": "join", "proto": PROTOCOL,
                                                       "nonce": new_nonce(), **_node_info()})
    # 2. a wrong MAC
    answers["wrong MAC"] = _attempt(control, lambda hello: {
        "type": "join", "proto": PROTOCOL, "nonce": (n := new_nonce()),
        "mac": mac("guessed-secret", "join", hello["nonce"], n), **_node_info()})
    # 3. a replay: a genuine join captured from one connection, sent again on another
    captured = {}

    def genuine(hello):
        captured["join"] = {"type": "join", "proto": PROTOCOL, "nonce": (n := new_nonce()),
                            "mac": mac(SECRET, "join", hello["nonce"], n), **_node_info(7)}
        return {"type": "join", "proto": PROTOCOL, "nonce": "short"}  # abort this one
    _attempt(control, genuine)
    answers["replayed"] = _attempt(control, lambda hello: captured["join"])
    node1 = job.start([*common, "--node-rank", "1", script], env=env)
    # 4. once both nodes joined and the workers run, a join to the full job
    job.wait_for_files("ready*", 2, timeout=30)
    answers["after full"] = _attempt(control, lambda hello: {"type": "join", "proto": PROTOCOL,
                                                             "nonce": new_nonce(), **_node_info()})
    (job.dir / "go").touch()
    d0, d1 = job.finish(node0), job.finish(node1)
    assert (d0.returncode, d1.returncode) == (0, 0), d0.stderr + d1.stderr

    for name, (received, hello, last) in answers.items():
        assert SECRET.encode() not in received, name
        assert set(hello) == {"type", "proto", "nonce"}, (name, hello)
        assert last["type"] == "reject", (name, last)
        assert "secret" not in last and "mac" not in last, (name, last)
    assert "join without a MAC" in answers["bare"][2]["reason"]
    assert "join without a MAC" in answers["after full"][2]["reason"]
    assert "wrong MAC" in answers["wrong MAC"][2]["reason"]
    assert "wrong MAC" in answers["replayed"][2]["reason"]
    rejections = [line for line in d0.stderr.splitlines() if "control channel: rejected" in line]
    assert len(rejections) == 5, d0.stderr  # the four attacks and the aborted capture
    assert sum("join without a MAC" in line for line in rejections) == 2
    assert sum("wrong MAC" in line for line in rejections) == 2
    assert sum("without a fresh nonce" in line for line in rejections) == 1
    attacked = _load_weights(job.dir / "weights.pt")

    (job.dir / "weights.pt").rename(job.dir / "attacked.pt")
    for ready in job.dir.glob("ready*"):
        ready.unlink()
    clean = job.run(["--standalone", "--nproc-per-node", "2", script])
    assert clean.returncode == 0, clean.stderr
    unattacked = _load_weights(job.dir / "weights.pt")
    assert attacked.keys() == unattacked.keys() == {"weight", "bias"}
    for key in attacked:
        np.testing.assert_allclose(attacked[key], unattacked[key], rtol=1e-6, atol=1e-7)
    assert not np.allclose(attacked["weight"], 0)
    assert job.leftovers() == []


def test_multi_node_without_a_secret_is_refused_naming_the_variable(job, port_pair):
    script = job.script("noop.py", "print('must not run')\n")
    d0 = job.run(["--nnodes", "2", "--node-rank", "0", "--master-port", str(port_pair), script])
    assert d0.returncode == 2
    assert "a multi-node job needs DISTTORCH_SECRET" in d0.stderr
    assert "disttorch-run --new-secret" in d0.stderr
    assert "must not run" not in d0.stdout


def test_new_secret_prints_a_fresh_random_secret(job):
    a, b = job.run(["--new-secret"]), job.run(["--new-secret"])
    assert (a.returncode, b.returncode) == (0, 0)
    assert len(a.stdout.strip()) == 64 and int(a.stdout, 16) >= 0
    assert a.stdout != b.stdout


def test_node0_reports_the_joined_nodes_every_period_while_waiting(job, port_pair):
    script = job.script("noop.py", "print('must not run')\n")
    d0 = job.run(["--nnodes", "2", "--node-rank", "0", "--master-port", str(port_pair),
                  "--join-timeout", "2.5", script],
                 env={"DISTTORCH_SECRET": SECRET, "DISTTORCH_REPORT_PERIOD": "1"})
    assert d0.returncode == 1
    host = socket.gethostname()
    reports = [line for line in d0.stderr.splitlines() if "rendezvous: 1 of 2 nodes joined" in line]
    assert len(reports) == 2, d0.stderr  # after 1 s and 2 s, then the timeout at 2.5 s
    assert reports[0].endswith(f"rendezvous: 1 of 2 nodes joined after 1 s (node 0 ({host})); "
                               f"waiting up to --join-timeout 2.5 s")
    assert "rendezvous timed out after 2.5 s: 1 of 2 nodes joined" in d0.stderr
