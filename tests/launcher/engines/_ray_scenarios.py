"""The Ray engine's test scenarios, run in a child process: `python _ray_scenarios.py local|cluster OUT_DIR`.

Ray's native threads can crash an interpreter's finalization after `ray.shutdown()` (a SIGSEGV
at exit, seen once in the test suite's own process), so the pytest process never hosts a Ray
driver: this child does, runs every scenario of one module against one Ray instance (a local one,
or a 2-node `ray.cluster_utils.Cluster`), writes OUT_DIR/results.json and leaves with os._exit.
Each scenario's stderr (the engine's reports) goes to OUT_DIR/<scenario>/stderr.txt. The tests
(test_ray.py, test_ray_cluster.py) assert on what this writes.
"""
from __future__ import annotations

import json
import os
import pathlib
import sys
import threading
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _digits import SCRIPT, child_env, digits_args  # noqa: E402
from _ray_helpers import processes_with_env  # noqa: E402

PROBE = HERE / "_ray_probe.py"
_STORE = 80 * 1024 * 1024


def _job(out_dir, *flags, nproc=2, **kw):
    from disttorch_launcher.engines.ray import RayJob, bootstrap_argv
    return RayJob(argv=bootstrap_argv(str(PROBE), [str(out_dir), *flags]), nproc_per_node=nproc,
                  env={"PYTHONPATH": child_env()["PYTHONPATH"]}, grace_period=3.0, **kw)


def _outcome(outcome) -> dict:
    f = outcome.first_failure
    return {"statuses": outcome.statuses, "exit_code": outcome.exit_code, "restarts": outcome.restarts,
            "failure": None if f is None else {"rank": f.rank, "node_rank": f.node_rank,
                                                "returncode": f.returncode, "cause": f.cause,
                                                "summary": f.summary()}}


def _leftovers(run_id: str) -> list[int]:
    deadline = time.monotonic() + 15
    while processes_with_env(f"DISTTORCH_RUN_ID={run_id}") and time.monotonic() < deadline:
        time.sleep(0.2)
    return processes_with_env(f"DISTTORCH_RUN_ID={run_id}")


# -- on a local Ray instance (test_ray.py) ------------------------------------------------------
def train_digits(d):
    import disttorch.ray
    statuses = disttorch.ray.run(str(SCRIPT), digits_args(d, "ray"), num_workers=2, cpus_per_worker=1,
                                 env={"PYTHONPATH": child_env()["PYTHONPATH"]})
    return {"statuses": statuses}


def variables(d):
    import ray

    from disttorch_launcher.engines.ray import run_ray_job
    job = _job(d, cpus_per_rank=2)
    result = _outcome(run_ray_job(job, address="auto"))
    result["leftovers"] = _leftovers(job.run_id)
    deadline = time.monotonic() + 10
    while ray.available_resources().get("CPU", 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    result["cpus_free"] = ray.available_resources().get("CPU", 0)
    return result


def killed_actor(d):
    from disttorch_launcher.engines.ray import run_ray_job
    job = _job(d, "--kill-actor-rank", "1")
    result = _outcome(run_ray_job(job, address="auto"))
    result["leftovers"] = _leftovers(job.run_id)
    return result


def restarts(d):
    from disttorch_launcher.engines.ray import run_ray_job
    return _outcome(run_ray_job(_job(d, "--fail-first-attempt", max_restarts=1), address="auto"))


def bad_arguments(d):
    import disttorch.ray
    from disttorch_launcher.engines.ray import run_ray_job
    errors = []
    for call in (lambda: disttorch.ray.run(str(PROBE), num_workers=4, num_nodes=3),
                 lambda: disttorch.ray.run(str(PROBE), num_workers=0),
                 lambda: disttorch.ray.run("nope.py", num_workers=1),
                 lambda: run_ray_job(_job(d, cpus_per_rank=0), address="auto"),
                 lambda: run_ray_job(_job(d, nnodes=2), address="auto")):
        try:
            call()
            errors.append(None)
        except Exception as exc:  # noqa: BLE001 - the test checks type and message
            errors.append([type(exc).__name__, str(exc)])
    return {"errors": errors}


# -- on a 2-node Cluster (test_ray_cluster.py) ---------------------------------------------------
def spread(d):
    from disttorch_launcher.engines.ray import run_ray_job
    return _outcome(run_ray_job(_job(d, nproc=1, nnodes=2), address="auto"))


def lost_node(d, cluster, worker):
    from disttorch_launcher.engines.ray import run_ray_job
    job = _job(d, "--hold", "120", nproc=1, nnodes=2)
    box = {}
    runner = threading.Thread(target=lambda: box.update(outcome=run_ray_job(job, address="auto")))
    runner.start()
    deadline = time.monotonic() + 120
    while not all((d / f"rank{r}.json").exists() for r in range(2)):
        if time.monotonic() > deadline or not runner.is_alive():
            raise RuntimeError("the ranks never reported")
        time.sleep(0.2)
    cluster.remove_node(worker)
    runner.join(180)
    if runner.is_alive():
        raise RuntimeError("the job did not end after its node was removed")
    result = _outcome(box["outcome"])
    result["leftovers"] = _leftovers(job.run_id)
    return result


def main(which: str, out: pathlib.Path) -> None:
    import ray
    cluster = worker = None
    if which == "local":
        # address="local": a private instance even when another session's Ray runs here
        ray.init(address="local", num_cpus=4, include_dashboard=False, object_store_memory=_STORE,
                 log_to_driver=False, logging_level="WARNING")
        scenarios = [(train_digits, ()), (variables, ()), (killed_actor, ()), (restarts, ()),
                     (bad_arguments, ())]
    else:
        from ray.cluster_utils import Cluster
        # One CPU per node: two 1-CPU ranks cannot share one. Fast health checks make a removed
        # node count as dead within seconds.
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "object_store_memory": _STORE, "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4}})
        worker = cluster.add_node(num_cpus=1, object_store_memory=_STORE)
        ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
        cluster.wait_for_nodes()
        scenarios = [(spread, ()), (lost_node, None)]
    results = {}
    saved_err = os.dup(2)
    try:
        for fn, extra in scenarios:
            d = out / fn.__name__
            d.mkdir(parents=True, exist_ok=True)
            with open(d / "stderr.txt", "wb") as err:
                sys.stderr.flush()
                os.dup2(err.fileno(), 2)
                try:
                    args = (cluster, worker) if extra is None else extra
                    results[fn.__name__] = {"ok": True, **fn(d, *args)}
                except Exception:  # noqa: BLE001 - reported to the test
                    results[fn.__name__] = {"ok": False, "error": traceback.format_exc()}
                finally:
                    sys.stderr.flush()
                    os.dup2(saved_err, 2)
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        (out / "results.json").write_text(json.dumps(results))
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], pathlib.Path(sys.argv[2]))
