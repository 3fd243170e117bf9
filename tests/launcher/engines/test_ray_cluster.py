"""The Ray engine on a 2-node `ray.cluster_utils.Cluster`: placement over nodes, a lost node.

The scenarios run in a child process (`_ray_scenarios.py cluster`, see test_ray.py for why).
"""
from __future__ import annotations

import pytest

from _ray_helpers import read_ranks, run_scenarios, scenario_result

pytest.importorskip("ray", reason="the Ray engine needs ray: pip install 'disttorch[ray]'")



@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    out = tmp_path_factory.mktemp("ray-cluster")
    return out, run_scenarios("cluster", out)


def test_one_rank_per_node_with_node_ranks_and_a_working_group(scenarios):
    d, record = scenario_result(scenarios, "spread")
    assert record["statuses"] == [0, 0]
    ranks = read_ranks(d, 2)
    assert [(r["RANK"], r["NODE_RANK"], r["LOCAL_RANK"], r["LOCAL_WORLD_SIZE"]) for r in ranks] == [
        ("0", "0", "0", "1"), ("1", "1", "0", "1")]
    assert [r["sum"] for r in ranks] == [3.0, 3.0]
    assert ranks[0]["MASTER_ADDR"] == "127.0.0.1"  # both nodes on this one host: loopback


def test_a_lost_node_is_reported_with_rank_node_and_cause(scenarios):
    d, record = scenario_result(scenarios, "lost_node")
    failure = record["failure"]
    assert record["exit_code"] == 1 and failure["returncode"] is None
    assert "Ray actor was lost" in failure["cause"]
    # the lost rank is the one whose node went: its node rank is the one it was started with
    ranks = read_ranks(d, 2)
    assert str(failure["node_rank"]) == ranks[failure["rank"]]["NODE_RANK"]
    assert record["statuses"][1 - failure["rank"]] is not None  # stopped by the engine, not lost
    err = (d / "stderr.txt").read_text()
    assert f"first failure: rank {failure['rank']} (node {failure['node_rank']}" in err
    assert record["leftovers"] == []
