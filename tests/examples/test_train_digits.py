"""The main job: examples/train_digits.py under disttorch-run, including a crash and resume."""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "train_digits.py"


def launch(tmp_path, *args, nproc=2, restarts=0, timeout=120):
    cmd = [sys.executable, "-m", "disttorch_launcher", "--nproc-per-node", str(nproc), "--max-restarts", str(restarts),
           str(SCRIPT), "--checkpoint", str(tmp_path / "ckpt.pt"), "--metrics", str(tmp_path / "metrics.jsonl"),
           *map(str, args)]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", DISTTORCH_PROGRESS="0")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - t0


def test_digits_two_ranks_reaches_97_percent(tmp_path):
    proc, seconds = launch(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    acc = float(re.search(r"final test accuracy ([0-9.]+)", out).group(1))
    assert acc >= 0.97, f"test accuracy {acc} < 0.97:\n{out[-2000:]}"
    assert seconds < 60, f"main job took {seconds:.1f}s"
    assert out.count(f"checkpoints: {tmp_path / 'ckpt.pt'} (every 10 steps and each epoch); "
                     f"metrics: {tmp_path / 'metrics.jsonl'}") == 1, out[-2000:]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(len(records))) and records[-1]["test_acc"] >= 0.97


def test_killed_mid_epoch_and_restarted_matches_unbroken_run(tmp_path):
    small = ["--epochs", "3", "--limit-train", "400", "--batch-size", "16", "--augment"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    proc, _ = launch(tmp_path / "a", *small, "--save-weights", tmp_path / "a" / "w.npz")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    proc, _ = launch(tmp_path / "b", *small, "--save-weights", tmp_path / "b" / "w.npz", "--crash-at", "1:10",
                     "--checkpoint-every", "4", restarts=1)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # The restart continues after the step-8 checkpoint instead of replaying epoch 1.
    assert "simulated crash at epoch 1 step 10" in out and "at epoch 1 step 8 (restart 1, 2 ranks)" in out, out[-4000:]
    a, b = np.load(tmp_path / "a" / "w.npz"), np.load(tmp_path / "b" / "w.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"weights {k} differ after resume")


def test_a_restart_does_not_resume_an_earlier_runs_checkpoint(tmp_path):
    small = ["--epochs", "1", "--limit-train", "128", "--batch-size", "16"]
    proc, _ = launch(tmp_path, *small, nproc=1)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    # Same checkpoint path, a new run that crashes before its first checkpoint: its restart must
    # start from scratch, not report the finished earlier run's accuracy as its own.
    proc, _ = launch(tmp_path, *small, "--crash-at", "0:3", "--lr", "0.0001", restarts=1, nproc=1)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "resumed from" not in out and "not to this run" in out, out[-4000:]
    assert re.search(r"epoch  0  train_loss", out), out[-4000:]  # epoch 0 trained again
