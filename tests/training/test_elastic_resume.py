"""An elastic job (--nnodes 1:2) re-formed with more nodes resumes its mid-epoch checkpoint: the
checkpoint written by 1 rank loads into 2, and the rest of the epoch is re-sharded over them."""
from __future__ import annotations

import json
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "launcher"))
from _launcher_jobs import Job, free_port_pair  # noqa: E402

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def job(tmp_path):
    j = Job(tmp_path)
    yield j
    j.cleanup()


def test_elastic_regroup_resumes_mid_epoch_and_reshards_the_rest(job):
    script = str(HERE / "_elastic_worker.py")
    common = ["--nnodes", "1:2", "--nproc-per-node", "1", "--rdzv-conf", "last_call_timeout=0.2",
              "--master-port", str(free_port_pair())]
    env = {"DISTTORCH_SECRET": "elastic-resume"}
    first = job.start([*common, script], env=env)
    job.wait_for_files("seen_before.json", 1, timeout=40)  # alone, checkpointed after step 5
    second = job.start([*common, "--node-rank", "1", script], env=env)
    d1, d2 = job.finish(first, timeout=60), job.finish(second, timeout=60)
    assert (d1.returncode, d2.returncode) == (0, 0), d1.stderr[-3000:] + d2.stderr[-3000:]
    assert "re-forming the group with 2 nodes" in d1.stderr
    before = json.loads((job.dir / "seen_before.json").read_text())
    after = [json.loads((job.dir / f"seen_world2_rank{r}.json").read_text()) for r in range(2)]
    assert all(a["resumed_from"] == a["run_id"] and a["start_step"] == 5 for a in after), after
    assert "written by 1 ranks and this job has 2" in d1.stderr + d1.stdout
    rest = after[0]["seen"] + after[1]["seen"]
    assert len(before) == 10 and len(after[0]["seen"]) == len(after[1]["seen"]) == 15
    assert sorted(before + rest) == list(range(40))  # every sample of the epoch once, none twice
    assert job.leftovers() == []
