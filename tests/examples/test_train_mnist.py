"""examples/train_mnist.py on a tiny fake MNIST directory (IDX files written here), 2 ranks, 1 epoch."""
from __future__ import annotations

import gzip
import json
import os
import pathlib
import re
import struct
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "train_mnist.py"


def write_idx(path, array, compress):
    """An IDX file as the MNIST distribution has them: magic (0, 0, type, ndim), big-endian dims, data."""
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def fake_mnist(root, n_train=192, n_test=64):
    """Digits drawn as a bright 6x6 block whose position encodes the label, plus noise."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n, compress in [("train", n_train, True), ("t10k", n_test, False)]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for img, label in zip(images, labels):
            r, c = divmod(int(label), 5)
            img[2 + 12 * r: 8 + 12 * r, 1 + 5 * c: 6 + 5 * c] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)


def test_mnist_one_epoch_two_ranks(tmp_path):
    fake_mnist(tmp_path / "data")
    cmd = [sys.executable, "-m", "disttorch_launcher", "--nproc-per-node", "2", str(SCRIPT), "--data-dir",
           str(tmp_path / "data"), "--epochs", "1", "--batch-size", "16", "--test-batch-size", "32",
           "--checkpoint", str(tmp_path / "ckpt.pt"), "--metrics", str(tmp_path / "metrics.jsonl")]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", DISTTORCH_PROGRESS="0")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "192 training / 64 test images, 2 rank(s)" in out, out[-2000:]
    # Said once (by rank 0), with the absolute paths.
    assert out.count(f"checkpoints: {tmp_path / 'ckpt.pt'} (each epoch); metrics: {tmp_path / 'metrics.jsonl'}") == 1
    assert re.search(r"epoch  0  train_loss [0-9.]+  test_loss [0-9.]+  test_acc [0-9.]+", out), out[-2000:]
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # The block position gives the label away: one epoch of the real CNN learns it.
    assert record["epoch"] == 0 and np.isfinite(record["train_loss"]) and record["test_acc"] >= 0.8, record
    assert (tmp_path / "ckpt.pt").is_file()
