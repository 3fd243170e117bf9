"""The Ray engine on a 2-node `ray.cluster_utils.Cluster`: placement over nodes, a lost node."""
from __future__ import annotations

import pathlib
import threading
import time

import pytest

from _digits import child_env
from _ray_helpers import processes_with_env, read_ranks

ray = pytest.importorskip("ray", reason="the Ray engine needs ray: pip install 'disttorch[ray]'")

from ray.cluster_utils import Cluster  # noqa: E402

from launcher.engines.ray import RayJob, bootstrap_argv, run_ray_job  # noqa: E402

PROBE = pathlib.Path(__file__).with_name("_ray_probe.py")
_STORE = 80 * 1024 * 1024


@pytest.fixture(scope="module")
def cluster():
    # One CPU per node: two 1-CPU ranks cannot share a node. Fast health checks make a removed
    # node count as dead within seconds.
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": _STORE, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4}})
    worker = c.add_node(num_cpus=1, object_store_memory=_STORE)
    ray.init(address=c.address, log_to_driver=False, logging_level="WARNING")
    try:
        c.wait_for_nodes()
        yield c, worker
    finally:
        ray.shutdown()
        c.shutdown()


def _job(out_dir, *flags, **kw) -> RayJob:
    return RayJob(argv=bootstrap_argv(str(PROBE), [str(out_dir), *flags]), nproc_per_node=1,
                  nnodes=2, env={"PYTHONPATH": child_env()["PYTHONPATH"]}, grace_period=3.0, **kw)


def test_one_rank_per_node_with_node_ranks_and_a_working_group(cluster, tmp_path):
    job = _job(tmp_path)
    outcome = run_ray_job(job, address="auto")
    assert outcome.statuses == [0, 0]
    ranks = read_ranks(tmp_path, 2)
    assert [(r["RANK"], r["NODE_RANK"], r["LOCAL_RANK"], r["LOCAL_WORLD_SIZE"]) for r in ranks] == [
        ("0", "0", "0", "1"), ("1", "1", "0", "1")]
    assert [r["sum"] for r in ranks] == [3.0, 3.0]
    assert ranks[0]["MASTER_ADDR"] == "127.0.0.1"  # both nodes on this one host: loopback


def test_a_lost_node_is_reported_with_rank_node_and_cause(cluster, tmp_path, capfd):
    c, worker = cluster
    job = _job(tmp_path, "--hold", "120")
    result = {}
    runner = threading.Thread(target=lambda: result.update(outcome=run_ray_job(job, address="auto")))
    runner.start()
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"rank{r}.json").exists() for r in range(2)):
        assert time.monotonic() < deadline and runner.is_alive(), capfd.readouterr().err[-3000:]
        time.sleep(0.2)
    ranks = read_ranks(tmp_path, 2)
    c.remove_node(worker)
    runner.join(180)
    assert not runner.is_alive()
    outcome = result["outcome"]
    failure = outcome.first_failure
    assert outcome.exit_code == 1 and failure.returncode is None
    assert "Ray actor was lost" in failure.cause
    # the lost rank is the one whose node went: its node rank is the one it was started with
    assert str(failure.node_rank) == ranks[failure.rank]["NODE_RANK"]
    survivor = 1 - failure.rank
    assert outcome.statuses[survivor] is not None  # stopped by the engine, not lost
    err = capfd.readouterr().err
    assert f"first failure: rank {failure.rank} (node {failure.node_rank}" in err
    deadline = time.monotonic() + 15
    while processes_with_env(f"DISTTORCH_RUN_ID={job.run_id}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with_env(f"DISTTORCH_RUN_ID={job.run_id}") == []
