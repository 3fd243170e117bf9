"""Jobs across test hosts: `--hosts` through real ssh, the static form, and the topology the
process group picks by itself (shared memory inside a host, TCP across, hierarchical all-reduce)."""
from __future__ import annotations

import json
import re

import numpy as np
from _cluster_jobs import REPO

DIGITS = REPO / "examples" / "train_digits.py"
TOPOLOGY = REPO / "tests" / "cluster" / "_topology_worker.py"
SMALL = ["--epochs", "1", "--limit-train", "400", "--batch-size", "16"]
SECRET = "5f" * 16


def _accuracy(out: str) -> float:
    found = re.search(r"final test accuracy ([0-9.]+) \(4 ranks", out)
    assert found, out[-3000:]
    return float(found.group(1))


def test_hosts_job_through_ssh_ends_with_the_weights_of_one_host(jobs, tmp_path):
    runs = {}
    for name, args in (("2x2", ["--hosts", "testhost1:2,testhost2:2"]),
                       ("1x4", ["--nproc-per-node", "4"])):
        d = tmp_path / name
        d.mkdir()
        done = jobs.run("testhost1", [*args, DIGITS, *SMALL, "--checkpoint", d / "c.pt",
                                      "--metrics", d / "m.jsonl", "--save-weights", d / "w.npz"])
        assert done.returncode == 0, done.output[-4000:]
        runs[name] = (np.load(d / "w.npz"), _accuracy(done.output), done.output)
    (w2, acc2, _), (w1, acc1, _) = runs["2x2"], runs["1x4"]
    assert sorted(w1.files) == sorted(w2.files)
    for key in w1.files:  # sums in another order (per host, then across): float32 rounding only
        np.testing.assert_allclose(w2[key], w1[key], rtol=1e-6, atol=1e-6, err_msg=key)
    assert acc2 == acc1
    assert jobs.wait_until_idle() == {}


def test_static_form_picks_shared_memory_inside_tcp_across_even_under_one_hostname(jobs, rig):
    # Both hosts answer to the same host name: identity must come from the host itself.
    rig.run("testhost2", ["hostname", "testhost1"])
    try:
        master = rig.host("testhost1").address
        procs = [jobs.start(f"testhost{i + 1}",
                            ["--nnodes", "2", "--node-rank", str(i), "--nproc-per-node", "2",
                             "--master-addr", master, "--master-port", "29611", TOPOLOGY],
                            DISTTORCH_SECRET=SECRET)
                 for i in range(2)]
        done = [jobs.finish(p, timeout=60) for p in procs]
    finally:
        rig.run("testhost2", ["hostname", "testhost2"])
    for d in done:
        assert d.returncode == 0, d.output[-4000:]
    reports = {r["rank"]: r for d in done for r in map(json.loads, d.lines("TOPOLOGY "))}
    assert sorted(reports) == [0, 1, 2, 3]
    addresses = {0: rig.host("testhost1").address, 1: rig.host("testhost1").address,
                 2: rig.host("testhost2").address, 3: rig.host("testhost2").address}
    for rank, r in reports.items():
        assert r["hostname"] == "testhost1"
        assert r["hosts"] == [[0, 1], [2, 3]], r
        mine = [0, 1] if rank < 2 else [2, 3]
        assert r["shared_memory_with"] == mine and r["hierarchical"], r
        for peer, endpoint in r["endpoints"].items():
            if int(peer) in mine:
                assert endpoint.startswith("ipc://"), r
            else:
                assert endpoint.startswith(f"tcp://{addresses[int(peer)]}:"), r
        assert r["allreduce_max_error"] == 0.0
    assert reports[0]["host_id"] != reports[2]["host_id"]
    assert jobs.wait_until_idle() == {}
