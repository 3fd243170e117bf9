"""disttorch.set_num_threads / get_num_threads: real BLAS pools, torch's errors."""
import json
import os
import subprocess
import sys

import pytest

import disttorch
import torch

threadpoolctl = pytest.importorskip("threadpoolctl")


def test_set_num_threads_resizes_the_blas_pool_numpy_already_loaded():
    # A fresh interpreter: NumPy (and its OpenBLAS) is loaded with 2 threads before the call, so
    # only the library's own API can change the pool, not OMP_NUM_THREADS.
    code = ("import numpy, threadpoolctl, disttorch\n"
            "before = [p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas']\n"
            "disttorch.set_num_threads(1)\n"
            "after = [p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas']\n"
            "print(before, after, disttorch.get_num_threads())\n")
    env = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    before, after, got = done.stdout.replace("] [", "]|[").replace("] ", "]|").split("|")
    assert set(json.loads(before)) == {2} and set(json.loads(after)) == {1} and got.strip() == "1", done.stdout


def test_get_num_threads_returns_what_was_set():
    old = disttorch.get_num_threads()
    try:
        disttorch.set_num_threads(3)
        torch.set_num_threads(3)
        assert disttorch.get_num_threads() == torch.get_num_threads() == 3
    finally:
        disttorch.set_num_threads(old)
        torch.set_num_threads(old)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "2"])
def test_bad_thread_counts_raise_torchs_error(bad):
    with pytest.raises(RuntimeError) as ours:
        disttorch.set_num_threads(bad)
    with pytest.raises(RuntimeError) as theirs:
        torch.set_num_threads(bad)
    assert str(ours.value) == str(theirs.value)
