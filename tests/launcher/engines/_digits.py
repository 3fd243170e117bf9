"""Runs examples/train_digits.py under an engine and compares its weights with disttorch-run's."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[3]
SCRIPT = REPO / "examples" / "train_digits.py"
#: Small enough for a CI test, large enough that two ranks' shards and DDP's averaging matter.
QUICK_ARGS = ["--epochs", "2", "--limit-train", "256", "--batch-size", "16"]


def digits_args(out_dir: pathlib.Path, name: str, extra=QUICK_ARGS) -> list[str]:
    """train_digits.py's arguments writing weights, checkpoint and metrics under out_dir/name.*"""
    return [*extra, "--save-weights", str(out_dir / f"{name}.npz"),
            "--checkpoint", str(out_dir / f"{name}.pt"), "--metrics", str(out_dir / f"{name}.jsonl")]


def child_env(**extra) -> dict[str, str]:
    """This worktree's code first, and no rank variables inherited from whoever runs the tests."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
           and not k.startswith(("SLURM_", "OMPI_", "PMI_", "PMIX_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def reference_weights(out_dir: pathlib.Path, nproc: int = 2, extra=QUICK_ARGS) -> dict[str, np.ndarray]:
    """Weights of the same training under `disttorch-run --nproc-per-node nproc`."""
    cmd = [sys.executable, "-m", "disttorch_launcher", "--nproc-per-node", str(nproc), str(SCRIPT),
           *digits_args(out_dir, "reference", extra)]
    done = subprocess.run(cmd, check=False, cwd=out_dir, env=child_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return load_weights(out_dir / "reference.npz")


def load_weights(path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def assert_same_weights(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
