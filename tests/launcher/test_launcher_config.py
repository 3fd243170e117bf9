"""Option values, option resolution (scheduler, hosts, torchrun spellings) and worker variables."""
import pytest

from disttorch_launcher import cli
from disttorch_launcher.config import (StreamSpec, parse_nnodes, parse_nproc, parse_ranks_filter,
                             parse_stream_spec, thread_env, visible_gpus, worker_env)
from disttorch_launcher.remote import parse_hostfile, parse_hosts


def test_parse_nproc():
    assert parse_nproc("4", {}) == 4
    assert parse_nproc("gpu", {"CUDA_VISIBLE_DEVICES": "2,5"}) == 2
    assert parse_nproc("auto", {"CUDA_VISIBLE_DEVICES": "1"}) == 1
    assert parse_nproc("auto", {"CUDA_VISIBLE_DEVICES": ""}) == parse_nproc("cpu", {}) >= 1
    with pytest.raises(ValueError, match="no visible GPU"):
        parse_nproc("gpu", {"CUDA_VISIBLE_DEVICES": ""})
    for bad in ("0", "-2", "many", "1.5"):
        with pytest.raises(ValueError, match=f"got '{bad}'"):
            parse_nproc(bad, {})


def test_parse_nnodes():
    assert parse_nnodes("3") == (3, 3)
    assert parse_nnodes("1:4") == (1, 4)
    for bad in ("0", "3:2", "x", "1:y"):
        with pytest.raises(ValueError, match=f"got '{bad}'"):
            parse_nnodes(bad)


def test_parse_stream_spec_and_ranks_filter():
    assert parse_stream_spec("3", "--tee") == StreamSpec(3, {})
    spec = parse_stream_spec("0:1,2:3", "--redirects")
    assert spec.for_local_rank(0) == 1 and spec.for_local_rank(1) == 0
    assert spec.covers(2, 2) and not spec.covers(0, 2)
    with pytest.raises(ValueError, match="--tee: expected 0 .* got '4'"):
        parse_stream_spec("4", "--tee")
    with pytest.raises(ValueError, match="'local_rank:streams'"):
        parse_stream_spec("a:1", "--redirects")
    assert parse_ranks_filter("0,2") == frozenset({0, 2})
    with pytest.raises(ValueError, match="got 'x'"):
        parse_ranks_filter("x")


def test_visible_gpus_follows_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3,1"}) == ["3", "1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,-1,2"}) == ["0"]  # CUDA stops at -1
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_thread_env_splits_cores_and_keeps_user_choices():
    assert thread_env({}, 2, cores=8) == {"OMP_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "4",
                                          "MKL_NUM_THREADS": "4"}
    assert thread_env({}, 4, cores=2)["OMP_NUM_THREADS"] == "1"  # never zero
    mixed = thread_env({"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "2"}, 2, cores=8)
    assert mixed == {"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3", "MKL_NUM_THREADS": "2"}


def _env(**kw):
    args = dict(rank=5, local_rank=1, world_size=8, local_world_size=4, node_rank=1, nnodes=2,
                master_addr="n0", master_port=1234, secret="s3cret", run_id="rid",
                restart_count=2, max_restarts=3, role="trainer", error_file="/e.json",
                launcher_pid=99, grace_period=4.0, threads={"OMP_NUM_THREADS": "2"}, gpus=[])
    args.update(kw)
    return worker_env({"TORCHELASTIC_USE_AGENT_STORE": "True", "HOME": "/h"}, **args)


def test_worker_env_carries_torchrun_variables():
    env = _env()
    expected = {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4",
                "GROUP_RANK": "1", "NODE_RANK": "1", "GROUP_WORLD_SIZE": "2",
                "ROLE_NAME": "trainer", "MASTER_ADDR": "n0", "MASTER_PORT": "1234",
                "DISTTORCH_SECRET": "s3cret", "TORCHELASTIC_RESTART_COUNT": "2",
                "DISTTORCH_RESTART_COUNT": "2", "TORCHELASTIC_MAX_RESTARTS": "3",
                "TORCHELASTIC_RUN_ID": "rid", "TORCHELASTIC_ERROR_FILE": "/e.json",
                "DISTTORCH_ERROR_FILE": "/e.json", "DISTTORCH_LAUNCHER_PID": "99",
                "OMP_NUM_THREADS": "2", "HOME": "/h", "PYTHONUNBUFFERED": "1"}
    assert {k: env[k] for k in expected} == expected
    assert "TORCHELASTIC_USE_AGENT_STORE" not in env  # would stop torch's rank 0 store
    assert "CUDA_VISIBLE_DEVICES" not in env and "DISTTORCH_DEVICE_INDEX" not in env


def test_worker_env_gives_each_local_rank_its_gpu():
    env = _env(gpus=["4", "6"], local_rank=1)
    assert env["DISTTORCH_DEVICE_INDEX"] == "1" and "CUDA_VISIBLE_DEVICES" not in env
    env = _env(gpus=["4", "6"], local_rank=1, isolate_gpus=True)
    assert (env["CUDA_VISIBLE_DEVICES"], env["DISTTORCH_DEVICE_INDEX"]) == ("6", "0")
    assert _env(gpus=["4", "6"], local_rank=3, isolate_gpus=True)["CUDA_VISIBLE_DEVICES"] == "6"


def _config(argv, env=None):
    args = cli.build_parser().parse_args(argv)
    return cli.config_from_args(args, env or {})[0]


def test_torchrun_spellings_and_script_args():
    cfg = _config(["--nproc_per_node", "2", "--max_restarts=1", "--rdzv_id", "job7",
                   "train.py", "--lr", "0.1", "--nproc-per-node", "9"])
    assert (cfg.nproc_per_node, cfg.max_restarts, cfg.run_id) == (2, 1, "job7")
    assert cfg.entrypoint_args == ["--lr", "0.1", "--nproc-per-node", "9"]
    assert not cfg.multi_node and cfg.master_port is None and cfg.master_addr == "127.0.0.1"


def test_multinode_defaults_and_rdzv_endpoint():
    cfg = _config(["--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "head:7000", "t.py"])
    assert (cfg.min_nodes, cfg.max_nodes, cfg.node_rank) == (2, 2, 1)
    assert (cfg.master_addr, cfg.master_port) == ("head", 7000)
    cfg = _config(["--nnodes", "1:3", "--master-addr", "h", "t.py"])
    assert cfg.elastic and cfg.master_port == 29500


def test_srun_placement_fills_node_rank_master_and_run_id():
    env = {"SLURM_JOB_ID": "31", "SLURM_STEP_ID": "2", "SLURM_PROCID": "1", "SLURM_NTASKS": "2",
           "SLURM_NNODES": "2", "SLURM_STEP_NODELIST": "c[3-4]"}
    cfg = _config(["--nproc-per-node", "4", "t.py"], env)
    assert (cfg.node_rank, cfg.max_nodes, cfg.scheduler) == (1, 2, "slurm")
    assert (cfg.master_addr, cfg.master_port, cfg.run_id) == ("c3", 15031, "slurm-31.2")
    # explicit options win, and --scheduler none ignores SLURM altogether
    assert _config(["--master-port", "555", "t.py"], env).master_port == 555
    assert not _config(["--scheduler", "none", "t.py"], env).multi_node
    with pytest.raises(ValueError, match="--nnodes 3 differs from the 2 nodes slurm started"):
        _config(["--nnodes", "3", "t.py"], env)


def test_mpirun_placement_needs_a_master_address():
    env = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2",
           "OMPI_COMM_WORLD_LOCAL_SIZE": "1"}
    with pytest.raises(ValueError, match="pass --master-addr"):
        _config(["t.py"], env)
    cfg = _config(["t.py"], {**env, "MASTER_ADDR": "10.0.0.1"})
    assert (cfg.node_rank, cfg.max_nodes, cfg.master_addr) == (1, 2, "10.0.0.1")


@pytest.mark.parametrize("argv, message", [
    (["--max-restarts", "-1", "t.py"], "--max-restarts: expected >= 0, got -1"),
    (["--master-port", "70000", "t.py"], "--master-port: expected a port in 1..65535, got 70000"),
    (["--nnodes", "2", "--node-rank", "2", "t.py"], "--node-rank: expected 0..1 for 2 nodes, got 2"),
    (["--node-rank", "1", "t.py"], "--node-rank: expected 0..0 for 1 node, got 1"),
    (["--standalone", "--nnodes", "2", "t.py"], "--standalone runs one node"),
    (["--hosts", "a:2", "--hostfile", "f", "t.py"], "exclude each other"),
    (["--hosts", "a:0", "t.py"], "slots of 'a' must be a positive integer, got '0'"),
    (["--hosts", "a:2,b", "--nnodes", "3", "t.py"], "--nnodes 3 differs from the 2 hosts"),
    (["--rdzv-conf", "bogus=1", "t.py"], "unknown key"),
    (["-m", "--no-python", "t.py"], "exclude each other"),
])
def test_bad_values_are_named(argv, message):
    with pytest.raises(ValueError, match=message):
        _config(argv)


def test_parse_hosts():
    assert parse_hosts("h1:4,h2:2,h3") == [("h1", 4), ("h2", 2), ("h3", None)]
    with pytest.raises(ValueError, match="bad host name 'a b'"):
        parse_hosts("a b:2")


def test_parse_hostfile(tmp_path):
    path = tmp_path / "hostfile"
    path.write_text("# cluster\nworker-1 slots=4\n\nworker-2 slots=2  # half node\nworker-3\n")
    assert parse_hostfile(str(path)) == [("worker-1", 4), ("worker-2", 2), ("worker-3", None)]
    path.write_text("w1 slots=four\n")
    with pytest.raises(ValueError, match=r"hostfile:1: expected 'slots=N' .* got 'slots=four'"):
        parse_hostfile(str(path))
    path.write_text("w1 slots=1\nw1 slots=2\n")
    with pytest.raises(ValueError, match="'w1' listed twice"):
        parse_hostfile(str(path))
    with pytest.raises(ValueError, match="cannot read"):
        parse_hostfile(str(tmp_path / "missing"))


def test_timeouts_reach_the_workers_environment():
    from disttorch_launcher.config import export_timeouts

    environ = {}
    export_timeouts(_config(["--timeout", "90", "--join-timeout", "45", "s.py"]), environ)
    assert environ == {"DISTTORCH_TIMEOUT": "90", "DISTTORCH_JOIN_TIMEOUT": "45"}
    environ = {"DISTTORCH_TIMEOUT": "12"}
    export_timeouts(_config(["s.py"]), environ)
    assert environ == {"DISTTORCH_TIMEOUT": "12"}  # the user's own setting stays
    with pytest.raises(SystemExit):
        cli.main(["--timeout", "0", "s.py"])
