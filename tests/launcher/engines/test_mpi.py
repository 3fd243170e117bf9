"""Scripts started by a real Open MPI `mpirun`, without the launcher, form one group."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from _digits import (
    SCRIPT,
    assert_same_weights,
    child_env,
    digits_args,
    load_weights,
)

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None,
                                reason="Open MPI's mpirun is not installed (apt-get install openmpi-bin)")

_MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]


def _mpirun(np_: int, argv: list[str], cwd, timeout=240) -> subprocess.CompletedProcess:
    import sys
    return subprocess.run([*_MPIRUN, "-np", str(np_), sys.executable, *argv], check=False, cwd=cwd,
                          env=child_env(), capture_output=True, text=True, timeout=timeout)


def test_mpirun_two_copies_of_train_digits_are_one_two_rank_job(tmp_path, digits_reference):
    done = _mpirun(2, [str(SCRIPT), *digits_args(tmp_path, "mpi")], tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    # One job: exactly one "final" line (rank 0's), and it counts two ranks.
    finals = [line for line in out.splitlines() if "final test accuracy" in line]
    assert len(finals) == 1 and "(2 ranks" in finals[0], out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert_same_weights(load_weights(tmp_path / "mpi.npz"), digits_reference)


_RANKS_PROBE = """
import disttorch as torch, disttorch.distributed as dist
dist.init_process_group()
t = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(t)
print(f"rank {dist.get_rank()} of {dist.get_world_size()} sum {t.item():g}", flush=True)
dist.destroy_process_group()
"""


def test_mpirun_np_4_bare_init_process_group(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(_RANKS_PROBE)
    done = _mpirun(4, [str(probe)], tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    # mpirun may interleave the ranks' lines: find the reports, not whole lines.
    reports = sorted(re.findall(r"rank \d+ of \d+ sum \d+", done.stdout))
    assert reports == [f"rank {r} of 4 sum 10" for r in range(4)], out[-3000:]
    assert "Traceback" not in out, out[-3000:]
