"""--simulate-network: a shaped link slows an all-reduce by what the link model says."""
import pytest

from disttorch.distributed.simulation.link import doubling_all_reduce_seconds, ring_all_reduce_seconds
from disttorch.distributed.simulation.spec import parse_network

pytestmark = pytest.mark.timeout(90)

NBYTES = 4 << 20  # 4 MiB: above the 2 MiB switch, so the ring runs

ALL_REDUCE = """
import os, statistics, sys, time
import numpy as np
import disttorch as torch
import disttorch.distributed as dist
dist.init_process_group("zmq")
pg = dist.group.WORLD
print("SETUP", pg.config.transport, pg.shm is not None, type(pg.transport).__name__, flush=True)
t = torch.from_numpy(np.ones(int(sys.argv[1]) // 4, np.float32))
dist.all_reduce(t)
times = []
for _ in range(int(sys.argv[2])):
    dist.barrier()
    start = time.perf_counter()
    dist.all_reduce(t)
    times.append(time.perf_counter() - start)
assert float(t[0]) == 2.0 ** (len(times) + 1)
print("RESULT", statistics.median(times), flush=True)
dist.destroy_process_group()
"""


def _median_seconds(done, world=2):
    assert done.returncode == 0, done.output[-3000:]
    results = [float(done.lines(f"[rank{r}]: RESULT ")[0]) for r in range(world)]
    return max(results)


def test_shaped_link_slows_a_ring_all_reduce_by_the_model(job):
    script = job.script("ar.py", ALL_REDUCE)
    plain = job.run(["--nproc-per-node", "2", script, str(NBYTES), "3"])
    spec = "bandwidth=100mbit"
    shaped = job.run(["--nproc-per-node", "2", "--simulate-network", spec, script, str(NBYTES), "3"])
    base, slow = _median_seconds(plain), _median_seconds(shaped)
    # 2(N-1)/N * S / B = 0.336 s of data, 0.366 s with TCP/Ethernet framing (link.wire_bytes)
    model = ring_all_reduce_seconds(NBYTES, 2, parse_network(spec))
    assert model == pytest.approx(0.3661, abs=1e-3)
    assert slow - base == pytest.approx(model, rel=0.25), (base, slow, model)
    assert slow == pytest.approx(model, rel=0.25)
    assert "every rank is a host whose link has 100 Mbit/s, latency 0 us" in shaped.stderr
    # the ranks act as separate hosts: sockets only, every message through the simulated transport
    assert shaped.lines("[rank0]: SETUP ") == ["tcp False SimulatedTransport"]
    assert plain.lines("[rank0]: SETUP ")[0].endswith("ZmqTransport")
    assert job.leftovers() == []


def test_latency_adds_one_hop_per_doubling_round(job):
    script = job.script("ar.py", ALL_REDUCE)
    # 50 ms, not less: a loaded 2-core CI machine adds several ms of real overhead per
    # collective, which must stay well inside the 25% tolerance
    spec = "latency=50ms"
    done = job.run(["--nproc-per-node", "2", "--simulate-network", spec, script, "4096", "5"])
    model = doubling_all_reduce_seconds(4096, 2, parse_network(spec))  # one exchange: 50 ms
    assert _median_seconds(done) == pytest.approx(model, rel=0.25)
    assert job.leftovers() == []


def test_bad_network_spec_is_a_usage_error_naming_the_value(job):
    script = job.script("ar.py", ALL_REDUCE)
    done = job.run(["--nproc-per-node", "2", "--simulate-network", "latency=2,bandwidth=1gbit", script, "4", "1"])
    assert done.returncode == 2
    assert "latency='2': expected a duration with a unit" in done.stderr
    done = job.run(["--nproc-per-node", "2", "--inject-fault", "rank=2,at=collective:1,kind=kill", script, "4", "1"])
    assert done.returncode == 2
    assert "rank 2 is out of range for 2 workers" in done.stderr
