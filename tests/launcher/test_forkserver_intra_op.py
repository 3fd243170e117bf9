"""Workers forked from the fork server's template start without pool threads (the template itself
checks that it forks with one thread, so the pool must not start at import) and get a pool of the size their environment asks for when they need it."""
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the fork server is used on Linux only")

PROBE = """
import json, os, sys, threading
preimported = "disttorch" in sys.modules
import numpy as np, disttorch
from disttorch import _intra_op
record = {"preimported": preimported, "threads_at_start": [t.name for t in threading.enumerate()],
          "pool_at_start": _intra_op.started_threads(), "intra_op": disttorch.get_num_threads()}
a = np.random.default_rng(int(os.environ["RANK"])).standard_normal((1280, 512)).astype(np.float32)
record["equal"] = bool(np.array_equal(disttorch.relu(disttorch.from_numpy(a)).numpy(), np.maximum(a, 0)))
record["pool_after_op"] = _intra_op.started_threads()
record["threads_after_op"] = [t.name for t in threading.enumerate()]
with open(f"pool{os.environ['RANK']}.json", "w") as f:
    json.dump(record, f)
"""


def test_forked_workers_start_single_threaded_and_size_their_pool_from_the_environment(job):
    script = job.script("pool_probe.py", PROBE)
    d = job.run(["--nproc-per-node", "2", script], env={"OMP_NUM_THREADS": "2"}, timeout=120)
    assert d.returncode == 0, d.output
    records = job.json_files("pool*.json")
    assert len(records) == 2
    for r in records:
        assert r["preimported"], r  # forked from the template, not a fresh interpreter
        # (the bootstrap may run threads of its own, e.g. the output relay: only the pool's are counted)
        assert not [n for n in r["threads_at_start"] if n.startswith("disttorch-intra-op")], r
        assert r["pool_at_start"] == 0, r
        assert r["intra_op"] == 2 and r["equal"], r
        assert r["pool_after_op"] == 1, r  # two intra-op threads: the caller plus one pool thread
        assert [n for n in r["threads_after_op"] if n.startswith("disttorch-intra-op")] == ["disttorch-intra-op-1"]
