"""The Ray engine on a local Ray instance (one per module): placement, training, failures.

The scenarios run in a child process (`_ray_scenarios.py local`): the pytest process never hosts
a Ray driver, whose native threads can crash an interpreter's exit. These tests check what it
recorded.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from _digits import SCRIPT, assert_same_weights, child_env, digits_args, load_weights
from _ray_helpers import processes_with_env, read_ranks, run_scenarios, scenario_result

pytest.importorskip("ray", reason="the Ray engine needs ray: pip install 'disttorch[ray]'")

@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    out = tmp_path_factory.mktemp("ray-local")
    return out, run_scenarios("local", out)


def test_train_digits_under_ray_equals_disttorch_run(scenarios, digits_reference):
    d, record = scenario_result(scenarios, "train_digits")
    assert record["statuses"] == [0, 0]
    assert_same_weights(load_weights(d / "ray.npz"), digits_reference)


def test_ranks_get_torchrun_variables_threads_from_the_bundle_and_no_leftovers(scenarios):
    d, record = scenario_result(scenarios, "variables")
    assert record["statuses"] == [0, 0] and record["exit_code"] == 0
    ranks = read_ranks(d, 2)
    for r, got in enumerate(ranks):
        assert (got["RANK"], got["LOCAL_RANK"], got["WORLD_SIZE"], got["LOCAL_WORLD_SIZE"],
                got["NODE_RANK"], got["MASTER_ADDR"]) == (str(r), str(r), "2", "2", "0", "127.0.0.1")
        assert got["OMP_NUM_THREADS"] == "2" and got["sum"] == 3.0 and got["secret_in_env"]
    assert ranks[0]["actor_pid"] != ranks[1]["actor_pid"]  # one actor per rank
    assert record["leftovers"] == []
    for got in ranks:  # each actor removes the scratch folder of its rank's error file
        assert got["error_file"] and not os.path.exists(os.path.dirname(got["error_file"]))
    assert record["cpus_free"] == 4  # the placement group is gone


def test_a_killed_actor_is_reported_with_its_rank_and_stops_the_others(scenarios):
    d, record = scenario_result(scenarios, "killed_actor")
    assert record["exit_code"] == 1
    failure = record["failure"]
    assert (failure["rank"], failure["node_rank"], failure["returncode"]) == (1, 0, None)
    assert "Ray actor was lost" in failure["cause"]
    assert record["statuses"][1] is None and record["statuses"][0] is not None  # rank 0 was stopped
    err = (d / "stderr.txt").read_text()
    assert "first failure: rank 1 (node 0, host" in err and "lost: its Ray actor was lost" in err
    assert record["leftovers"] == []


def test_max_restarts_restarts_the_group_after_a_failure(scenarios):
    d, record = scenario_result(scenarios, "restarts")
    assert (record["exit_code"], record["statuses"], record["restarts"]) == (0, [0, 0], 1)
    assert [r["TORCHELASTIC_RESTART_COUNT"] for r in read_ranks(d, 2)] == ["1", "1"]
    err = (d / "stderr.txt").read_text()
    assert "attempt failed: rank 0 (node 0" in err and "exit code 3" in err


def test_bad_arguments_are_refused_at_the_boundary(scenarios):
    _, record = scenario_result(scenarios, "bad_arguments")
    assert record["errors"] == [
        ["ValueError", "num_nodes=3 does not divide num_workers=4"],
        ["ValueError", "num_workers: expected an int >= 1, got 0"],
        ["FileNotFoundError", f"script 'nope.py' not found (cwd {os.getcwd()})"],
        ["ValueError", "--cpus-per-rank: expected > 0, got 0"],
        ["RuntimeError", "--nnodes 2: the Ray cluster has 1 alive node"],
    ]


def test_disttorch_run_ray_local_is_one_job_and_leaves_no_ray_process(tmp_path, digits_reference):
    # Its own private Ray instance (--ray local), beside this module's: a separate session.
    done = subprocess.run([sys.executable, "-m", "disttorch_launcher", "--ray", "local", "--nproc-per-node", "2",
                           str(SCRIPT), *digits_args(tmp_path, "cli")], cwd=tmp_path,
                          env=child_env(DISTTORCH_TEST_MARK=f"ray-cli-{os.getpid()}"),
                          capture_output=True, text=True, timeout=240, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    finals = [line for line in out.splitlines() if "final test accuracy" in line]
    assert len(finals) == 1 and "(2 ranks" in finals[0] and finals[0].startswith("[rank0]: "), out[-3000:]
    assert_same_weights(load_weights(tmp_path / "cli.npz"), digits_reference)
    # raylet, gcs_server and workers of that private instance inherited the mark: none is left
    deadline = time.monotonic() + 15
    while processes_with_env(f"DISTTORCH_TEST_MARK=ray-cli-{os.getpid()}") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert processes_with_env(f"DISTTORCH_TEST_MARK=ray-cli-{os.getpid()}") == []
