"""--trace-dir: a DDP job's merged trace is valid Chrome-trace JSON, one track per rank, with compute
and communication spans nested as they ran."""
import json
import os

import pytest

from trace_checks import check_chrome_trace, parent_of

pytestmark = pytest.mark.timeout(60)

DDP = """
import disttorch as torch, disttorch.nn as nn
import disttorch.distributed as dist
from disttorch.nn.parallel import DistributedDataParallel as DDP
dist.init_process_group("zmq")
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 4))
model = DDP(net, bucket_cap_mb=0.05)  # several buckets: some reduced on the communication thread
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(16, 32), torch.randint(0, 4, (16,))
for step in range(4):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
dist.destroy_process_group()
"""


def test_ddp_trace_has_one_track_per_rank_and_nested_spans(job):
    script = job.script("ddp.py", DDP)
    done = job.run(["--nproc-per-node", "2", "--simulate-network", "latency=200us,bandwidth=1gbit",
                    "--trace-dir", "trace", script], env={"DISTTORCH_DDP_OVERLAP": "on"})
    assert done.returncode == 0, done.output[-3000:]
    assert job.leftovers() == []
    trace_dir = job.dir / "trace"
    assert sorted(os.listdir(trace_dir / "ranks")) == ["rank0-attempt0.json", "rank1-attempt0.json"]
    data = json.loads((trace_dir / "trace.json").read_text())
    spans = check_chrome_trace(data, ranks=[0, 1])
    assert f"trace of 2 ranks written to {trace_dir / 'trace.json'}" in done.stderr
    assert "rank  steps  step ms" in done.stderr

    for rank in (0, 1):
        mine = [e for e in spans if e["pid"] == rank]
        cats = {e["cat"] for e in mine}
        assert {"forward", "backward", "optimizer", "comm", "ddp", "wait", "network"} <= cats, cats
        assert sum(e["name"] == "SGD.step" for e in mine) == 4
        threads = {e["args"]["name"] for e in data["traceEvents"]
                   if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == rank}
        assert {"main", "comm (world)", "NIC (simulated)"} <= threads, threads
        # forward: model > container > layer
        linear = next(e for e in mine if e["name"] == "Linear")
        assert parent_of(mine, linear)["name"] == "Sequential"
        assert parent_of(mine, parent_of(mine, linear))["name"] == "DistributedDataParallel"
        # backward holds the buckets DDP launches from its hooks, and the waits for them
        buckets = [e for e in mine if e["name"] == "all-reduce bucket"]
        waits = [e for e in mine if e["name"] == "wait bucket"]
        assert len(buckets) >= 8 and len(waits) == len(buckets)
        for e in buckets[:3] + waits[:3]:
            assert parent_of(mine, e)["name"] == "backward", e
        # every collective is numbered, on the thread that ran it, with the bytes it sent
        reduces = [e for e in mine if e["cat"] == "comm" and e["name"] == "all_reduce"]
        assert {"n", "seq", "group", "sent_bytes"} <= set(reduces[0]["args"])
        assert any(e["tid"] != buckets[0]["tid"] for e in reduces)  # on the communication thread
        setup = [e for e in mine if e["cat"] == "comm" and e["name"] in ("broadcast", "all_gather")]
        assert setup and all(e["tid"] == buckets[0]["tid"] for e in setup)  # DDP's setup: on main
        assert sorted(e["args"]["n"] for e in mine if e["cat"] == "comm") == \
            list(range(1, 1 + sum(e["cat"] == "comm" for e in mine)))
