"""SLURM node lists and scheduler placements, from simulated environments."""
import pytest

from disttorch_launcher.schedulers import (expand_nodelist, launcher_placement, slurm_master_port,
                                 worker_placement)


@pytest.mark.parametrize("nodelist, hosts", [
    ("node[01-03,07],gpu5", ["node01", "node02", "node03", "node07", "gpu5"]),
    ("gpu5", ["gpu5"]),
    ("a,b,c", ["a", "b", "c"]),
    ("node[8-11]", ["node8", "node9", "node10", "node11"]),
    ("node[08-10]", ["node08", "node09", "node10"]),
    ("node[098-101]", ["node098", "node099", "node100", "node101"]),
    ("rack[1-2]-n[1,3]", ["rack1-n1", "rack1-n3", "rack2-n1", "rack2-n3"]),
    ("x[5],y[1-2].cluster", ["x5", "y1.cluster", "y2.cluster"]),
    (" n[1-2] ", ["n1", "n2"]),
])
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("nodelist, message", [
    ("", "empty"),
    ("node[1-3", "unclosed"),
    ("node1-3]", "unmatched"),
    ("node[3-1]", "runs backwards"),
    ("node[a-b]", "bad range 'a-b'"),
    ("node[1,,2]", "empty range"),
    ("a,,b", "empty host"),
    ("n[[1]]", "nested"),
])
def test_expand_nodelist_rejects_malformed_lists(nodelist, message):
    with pytest.raises(ValueError, match=message):
        expand_nodelist(nodelist)


def test_slurm_master_port_is_deterministic_and_in_range():
    assert slurm_master_port("123456") == slurm_master_port("123456")
    assert slurm_master_port("5") == 15005
    assert slurm_master_port("123456") == 15000 + 3456  # disttorch.distributed's formula too
    assert 15000 <= slurm_master_port("987654321") < 25000
    assert slurm_master_port("77_3") == slurm_master_port("773")  # array job ids
    with pytest.raises(ValueError, match="no digits"):
        slurm_master_port("abc")


def _srun_env(**extra):
    env = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": "1",
           "SLURM_NTASKS": "3", "SLURM_NNODES": "3", "SLURM_NODEID": "1",
           "SLURM_LOCALID": "0", "SLURM_STEP_NODELIST": "gpu[07-08],cpu1",
           "SLURM_JOB_NODELIST": "gpu[07-08],cpu1,spare9"}
    env.update(extra)
    return env


def test_launcher_placement_under_srun_one_task_per_node():
    p = launcher_placement(_srun_env())
    assert (p.scheduler, p.node_rank, p.nnodes) == ("slurm", 1, 3)
    assert p.master_addr == "gpu07"  # the step's list wins over the job's
    assert p.master_port == slurm_master_port("4242") == 19242
    assert p.run_id == "slurm-4242.0"


def test_launcher_placement_rejects_several_tasks_per_node():
    with pytest.raises(ValueError, match="one task per node, got 6 tasks on 3 nodes"):
        launcher_placement(_srun_env(SLURM_NTASKS="6"))


def test_batch_script_without_srun_is_not_a_placement():
    env = _srun_env()
    for var in ("SLURM_STEP_ID", "SLURM_STEP_NODELIST"):
        env.pop(var)
    assert launcher_placement(env) is None
    assert launcher_placement({}) is None
    assert worker_placement({}) is None


def test_launcher_placement_under_open_mpi():
    env = {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4",
           "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "1"}
    p = launcher_placement(env)
    assert (p.scheduler, p.node_rank, p.nnodes, p.master_addr) == ("mpi", 2, 4, None)
    env["OMPI_COMM_WORLD_LOCAL_SIZE"] = "2"
    with pytest.raises(ValueError, match="one process per node, got 2"):
        launcher_placement(env)


def test_launcher_placement_under_mpich_pmi():
    p = launcher_placement({"PMI_RANK": "1", "PMI_SIZE": "2"})
    assert (p.node_rank, p.nnodes) == (1, 2)
    with pytest.raises(ValueError, match="PMI_RANK='x' is not an integer"):
        launcher_placement({"PMI_RANK": "x", "PMI_SIZE": "2"})


def test_worker_placement_under_srun_one_task_per_worker():
    env = _srun_env(SLURM_PROCID="5", SLURM_NTASKS="8", SLURM_NNODES="2", SLURM_NODEID="1",
                    SLURM_LOCALID="1", SLURM_STEP_NODELIST="n[1-2]",
                    SLURM_STEP_TASKS_PER_NODE="4(x2)")
    p = worker_placement(env)
    assert (p.rank, p.world_size, p.local_rank, p.local_world_size) == (5, 8, 1, 4)
    assert (p.master_addr, p.master_port) == ("n1", 19242)


def test_worker_placement_reads_uneven_tasks_per_node():
    env = _srun_env(SLURM_PROCID="4", SLURM_NTASKS="5", SLURM_NODEID="2", SLURM_LOCALID="0",
                    SLURM_TASKS_PER_NODE="2(x2),1")
    env.pop("SLURM_STEP_NODELIST")
    p = worker_placement(env)
    assert p.local_world_size == 1
    assert p.master_addr == "gpu07"


def test_worker_placement_under_open_mpi():
    env = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
           "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    p = worker_placement(env)
    assert (p.scheduler, p.rank, p.world_size, p.local_rank, p.local_world_size) == (
        "openmpi", 3, 4, 1, 2)
    assert p.master_addr is None


def test_mpi_variables_win_over_the_slurm_step_mpirun_runs_in():
    # Open MPI's mpirun inside an allocation starts its daemons with srun: its processes see a
    # step's SLURM_PROCID (the node index) as well as their own MPI rank.
    env = _srun_env(OMPI_COMM_WORLD_RANK="2", OMPI_COMM_WORLD_SIZE="3",
                    OMPI_COMM_WORLD_LOCAL_RANK="0", OMPI_COMM_WORLD_LOCAL_SIZE="1")
    p = launcher_placement(env)
    assert (p.scheduler, p.node_rank, p.nnodes) == ("mpi", 2, 3)
    w = worker_placement(env)
    assert (w.scheduler, w.rank, w.world_size, w.master_addr, w.master_port) == (
        "openmpi", 2, 3, "gpu07", 19242)
