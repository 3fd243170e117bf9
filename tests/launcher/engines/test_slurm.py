"""Jobs under a real single-node SLURM cluster (slurmctld + slurmd started by the tests)."""
from __future__ import annotations

import os
import re
import sys

import pytest

from _digits import SCRIPT, assert_same_weights, child_env, digits_args, load_weights
from _slurm_cluster import SlurmCluster, missing_binaries

pytestmark = [
    pytest.mark.skipif(bool(missing_binaries()), reason=f"SLURM is not installed (missing "
                       f"{', '.join(missing_binaries())}; apt-get install slurm-wlm)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="slurmd needs root to start job steps"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
        yield c
    finally:
        stragglers = c.stop()
    assert not stragglers, f"processes of the SLURM jobs outlived the cluster: {stragglers}"


def _run(cluster, argv, cwd, timeout=240):
    import subprocess
    return subprocess.run(argv, cwd=cwd, env=cluster.env(child_env()), capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_srun_two_tasks_of_train_digits_are_one_two_rank_job(cluster, tmp_path, digits_reference):
    done = _run(cluster, ["srun", "-n", "2", sys.executable, str(SCRIPT),
                          *digits_args(tmp_path, "srun")], tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:] + cluster.logs()
    finals = [line for line in out.splitlines() if "final test accuracy" in line]
    assert len(finals) == 1 and "(2 ranks" in finals[0], out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert_same_weights(load_weights(tmp_path / "srun.npz"), digits_reference)


def test_srun_four_tasks_bare_init_process_group(cluster, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import disttorch as torch, disttorch.distributed as dist\n"
        "dist.init_process_group()\n"
        "t = torch.tensor([float(dist.get_rank() + 1)])\n"
        "dist.all_reduce(t)\n"
        "print(f'rank {dist.get_rank()} of {dist.get_world_size()} sum {t.item():g}', flush=True)\n")
    # No destroy_process_group: exiting with the group up must not print the store's traceback.
    done = _run(cluster, ["srun", "-n", "4", sys.executable, str(probe)], tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:] + cluster.logs()
    assert sorted(re.findall(r"rank \d+ of \d+ sum \d+", done.stdout)) == [
        f"rank {r} of 4 sum 10" for r in range(4)], out[-3000:]
    assert "Traceback" not in out, out[-3000:]


def test_sbatch_script_that_calls_disttorch_run(cluster, tmp_path, digits_reference):
    launcher = os.path.join(os.path.dirname(sys.executable), "disttorch-run")
    if not os.path.exists(launcher):
        launcher = f"{sys.executable} -m disttorch_launcher"
    batch = tmp_path / "train.sbatch"
    batch.write_text("#!/bin/bash\n#SBATCH --nodes=1\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=2\n"
                     f"exec {launcher} --nproc-per-node 2 {SCRIPT} "
                     + " ".join(digits_args(tmp_path, "sbatch")) + "\n")
    log = tmp_path / "job.out"
    done = _run(cluster, ["sbatch", "--wait", "--output", str(log), str(batch)], tmp_path)
    out = log.read_text() if log.exists() else ""
    assert done.returncode == 0, done.stdout + done.stderr + out[-4000:] + cluster.logs()
    assert re.search(r"Submitted batch job \d+", done.stdout), done.stdout
    finals = [line for line in out.splitlines() if "final test accuracy" in line]
    assert len(finals) == 1 and "(2 ranks" in finals[0], out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert_same_weights(load_weights(tmp_path / "sbatch.npz"), digits_reference)
