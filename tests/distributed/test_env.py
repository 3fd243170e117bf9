"""Rank, world size and master from torchrun / SLURM / Open MPI / PMI variables (simulated)."""
import pytest

from disttorch.distributed import env


@pytest.mark.parametrize("spec,hosts", [
    ("node01", ["node01"]),
    ("node[01-03]", ["node01", "node02", "node03"]),
    ("node[1-2,7],gpu5", ["node1", "node2", "node7", "gpu5"]),
    ("a[08-10]b", ["a08b", "a09b", "a10b"]),
    ("r[1-2]-n[1-2]", ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]),
    ("x1, x2", ["x1", "x2"]),
])
def test_expand_nodelist(spec, hosts):
    assert env.expand_nodelist(spec) == hosts


@pytest.mark.parametrize("bad", ["node[1-", "node]1[", "n[3-1]"])
def test_expand_nodelist_rejects_garbage(bad):
    with pytest.raises(ValueError):
        env.expand_nodelist(bad)


def test_torchrun_variables_win():
    e = env.resolve({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "h0", "MASTER_PORT": "1234",
                     "SLURM_PROCID": "0", "SLURM_NTASKS": "2", "OMPI_COMM_WORLD_RANK": "5"})
    assert (e.rank, e.world_size, e.local_rank, e.master_addr, e.master_port, e.source) == (3, 8, 1, "h0", 1234, "torchrun")


def test_partial_torchrun_variables_are_an_error():
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        env.resolve({"RANK": "0"})
    with pytest.raises(ValueError, match="not an integer"):
        env.resolve({"RANK": "x", "WORLD_SIZE": "2"})


def test_slurm():
    e = env.resolve({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0",
                     "SLURM_JOB_NODELIST": "gpu[07-10]", "SLURM_JOB_ID": "123456"})
    assert (e.rank, e.world_size, e.local_rank, e.master_addr, e.source) == (5, 8, 1, "gpu07", "slurm")
    assert e.master_port == env.slurm_master_port("123456") == 15000 + 123456 % 10000
    # the step's task count and node list describe what srun started; MASTER_* override
    e = env.resolve({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_ID": "1",
                     "SLURM_STEP_NODELIST": "n[3-4]", "SLURM_JOB_NODELIST": "n[1-4]", "MASTER_PORT": "999"})
    assert (e.world_size, e.master_addr, e.master_port) == (4, "n3", 999)


def test_open_mpi_and_pmi():
    e = env.resolve({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "2",
                     "OMPI_COMM_WORLD_LOCAL_SIZE": "4", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"})
    assert (e.rank, e.world_size, e.local_rank, e.master_addr, e.source) == (2, 4, 2, "127.0.0.1", "openmpi")
    e = env.resolve({"PMI_RANK": "1", "PMI_SIZE": "6", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "3",
                     "SLURM_JOB_NODELIST": "c[1-2]", "SLURM_JOB_ID": "7"})
    assert (e.rank, e.world_size, e.local_rank, e.master_addr, e.master_port, e.source) == (1, 6, 1, "c1", 15007, "pmi")
    e = env.resolve({"PMI_RANK": "1", "PMI_SIZE": "6"})
    assert e.master_addr is None and e.master_port is None  # init_process_group will say what to set


def test_nothing_set():
    e = env.resolve({})
    assert (e.rank, e.world_size, e.source) == (None, None, "none")


def test_a_batch_scripts_own_slurm_variables_are_not_a_job():
    # sbatch runs the script once with SLURM_PROCID=0 and the allocation's SLURM_NTASKS; only tasks
    # that srun started (SLURM_STEP_*) are ranks, else `python train.py` in a batch script would
    # wait forever for 7 peers that nobody starts.
    e = env.resolve({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "9", "SLURM_JOB_NODELIST": "n1"})
    assert (e.rank, e.world_size, e.source) == (None, None, "none")


def test_mpi_wins_over_the_slurm_step_its_daemons_run_in():
    e = env.resolve({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                     "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "SLURM_PROCID": "1", "SLURM_STEP_ID": "0",
                     "SLURM_NTASKS": "2", "SLURM_JOB_ID": "77", "SLURM_STEP_NODELIST": "c[4-5]"})
    assert (e.rank, e.world_size, e.local_rank, e.master_addr, e.master_port, e.source) == (
        3, 4, 1, "c4", 15077, "openmpi")


def test_open_mpi_port_comes_from_its_job_id_and_mvapich_is_read():
    base = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    a = env.resolve({**base, "OMPI_MCA_ess_base_jobid": "1916862465"})
    b = env.resolve({**base, "OMPI_MCA_ess_base_jobid": "1916927999"})  # another mpirun (job family)
    assert 15000 <= a.master_port < 25000 and a.master_port != b.master_port
    assert a.master_port == env.resolve({**base, "OMPI_MCA_ess_base_jobid": "1916862465", "OMPI_COMM_WORLD_RANK": "0"}).master_port
    assert env.resolve({**base, "OMPI_MCA_ess_base_jobid": "1", "MASTER_PORT": "4000"}).master_port == 4000
    e = env.resolve({"MV2_COMM_WORLD_RANK": "2", "MV2_COMM_WORLD_SIZE": "3", "MV2_COMM_WORLD_LOCAL_RANK": "0",
                     "MV2_COMM_WORLD_LOCAL_SIZE": "1", "MASTER_ADDR": "m0"})
    assert (e.rank, e.world_size, e.local_rank, e.master_addr, e.source) == (2, 3, 0, "m0", "mvapich")


def test_mpich_pmi_variables_give_rank_size_and_local_rank():
    e = env.resolve({"PMI_RANK": "5", "PMI_SIZE": "8", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "8",
                     "MASTER_PORT": "2345"})
    assert (e.rank, e.world_size, e.local_rank, e.master_addr, e.master_port, e.source) == (
        5, 8, 1, "127.0.0.1", 2345, "pmi")
    with pytest.raises(ValueError, match="PMI_SIZE='eight' is not an integer"):
        env.resolve({"PMI_RANK": "5", "PMI_SIZE": "eight"})


def test_the_nodelist_parser_is_the_launchers_one():
    import disttorch_launcher.schedulers
    assert env.expand_nodelist is disttorch_launcher.schedulers.expand_nodelist
    assert env.expand_nodelist("node[01-04,07],gpu-[1-2]") == [
        "node01", "node02", "node03", "node04", "node07", "gpu-1", "gpu-2"]
