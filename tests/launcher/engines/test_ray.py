"""The Ray engine on a local Ray instance (one per module): placement, training, failures."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import pytest

from _digits import SCRIPT, assert_same_weights, child_env, digits_args, load_weights
from _ray_helpers import processes_with_env, read_ranks

ray = pytest.importorskip("ray", reason="the Ray engine needs ray: pip install 'disttorch[ray]'")

import disttorch.ray  # noqa: E402
from launcher.engines.ray import RayJob, bootstrap_argv, run_ray_job  # noqa: E402

PROBE = pathlib.Path(__file__).with_name("_ray_probe.py")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # address="local": a new private instance even when another session's Ray runs on this machine
    ray.init(address="local", num_cpus=4, include_dashboard=False, object_store_memory=80 * 1024 * 1024,
             log_to_driver=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


def _job(out_dir, *flags, nproc=2, **kw) -> RayJob:
    return RayJob(argv=bootstrap_argv(str(PROBE), [str(out_dir), *flags]), nproc_per_node=nproc,
                  env={"PYTHONPATH": child_env()["PYTHONPATH"]}, grace_period=3.0, **kw)


def _assert_no_rank_left(run_id: str) -> None:
    deadline = time.monotonic() + 10
    while processes_with_env(f"DISTTORCH_RUN_ID={run_id}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with_env(f"DISTTORCH_RUN_ID={run_id}") == []


def test_train_digits_under_ray_equals_disttorch_run(tmp_path, digits_reference):
    statuses = disttorch.ray.run(str(SCRIPT), digits_args(tmp_path, "ray"), num_workers=2,
                                 cpus_per_worker=1, env={"PYTHONPATH": child_env()["PYTHONPATH"]})
    assert statuses == [0, 0]
    assert_same_weights(load_weights(tmp_path / "ray.npz"), digits_reference)


def test_ranks_get_torchrun_variables_threads_from_the_bundle_and_no_leftovers(tmp_path):
    job = _job(tmp_path, cpus_per_rank=2)
    outcome = run_ray_job(job, address="auto")
    assert outcome.statuses == [0, 0] and outcome.exit_code == 0
    ranks = read_ranks(tmp_path, 2)
    for r, got in enumerate(ranks):
        assert (got["RANK"], got["LOCAL_RANK"], got["WORLD_SIZE"], got["LOCAL_WORLD_SIZE"],
                got["NODE_RANK"], got["MASTER_ADDR"]) == (str(r), str(r), "2", "2", "0", "127.0.0.1")
        assert got["OMP_NUM_THREADS"] == "2" and got["sum"] == 3.0 and got["secret_in_env"]
    assert ranks[0]["actor_pid"] != ranks[1]["actor_pid"]  # one actor per rank
    _assert_no_rank_left(job.run_id)
    # the placement group is gone: all 4 CPUs are free again
    deadline = time.monotonic() + 10
    while ray.available_resources().get("CPU", 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 4


def test_a_killed_actor_is_reported_with_its_rank_and_stops_the_others(tmp_path, capfd):
    job = _job(tmp_path, "--kill-actor-rank", "1")
    outcome = run_ray_job(job, address="auto")
    assert outcome.exit_code == 1
    failure = outcome.first_failure
    assert (failure.rank, failure.node_rank, failure.returncode) == (1, 0, None)
    assert "Ray actor was lost" in failure.cause
    assert outcome.statuses[1] is None and outcome.statuses[0] is not None  # rank 0 was stopped
    err = capfd.readouterr().err
    assert "first failure: rank 1 (node 0, host" in err and "lost: its Ray actor was lost" in err
    _assert_no_rank_left(job.run_id)


def test_max_restarts_restarts_the_group_after_a_failure(tmp_path, capfd):
    job = _job(tmp_path, "--fail-first-attempt", max_restarts=1)
    outcome = run_ray_job(job, address="auto")
    assert (outcome.exit_code, outcome.statuses, outcome.restarts) == (0, [0, 0], 1)
    assert [r["TORCHELASTIC_RESTART_COUNT"] for r in read_ranks(tmp_path, 2)] == ["1", "1"]
    assert "attempt failed: rank 0 (node 0" in capfd.readouterr().err and "exit code 3" in "".join(
        [failure for failure in [outcome.first_failure.summary()]])


def test_bad_arguments_are_refused_at_the_boundary(tmp_path):
    with pytest.raises(ValueError, match="num_nodes=3 does not divide num_workers=4"):
        disttorch.ray.run(str(PROBE), num_workers=4, num_nodes=3)
    with pytest.raises(ValueError, match="num_workers: expected an int >= 1, got 0"):
        disttorch.ray.run(str(PROBE), num_workers=0)
    with pytest.raises(FileNotFoundError, match="nope.py"):
        disttorch.ray.run("nope.py", num_workers=1)
    with pytest.raises(ValueError, match="--cpus-per-rank: expected > 0, got 0"):
        run_ray_job(_job(tmp_path, cpus_per_rank=0), address="auto")
    with pytest.raises(RuntimeError, match="--nnodes 2: the Ray cluster has 1 alive node$"):
        run_ray_job(_job(tmp_path, nnodes=2), address="auto")


def test_disttorch_run_ray_local_is_one_job_and_leaves_no_ray_process(tmp_path, digits_reference):
    # Its own private Ray instance (--ray local), beside this module's: a separate session.
    done = subprocess.run([sys.executable, "-m", "launcher", "--ray", "local", "--nproc-per-node", "2",
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
