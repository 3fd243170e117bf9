"""examples/simulate_workers.py: N workers under DDP end with the weights of full-batch training."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_one_two_and_three_workers_match_single_process():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "simulate_workers.py"), "--workers", "1", "2", "3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    errors = {int(n): float(e) for n, e in re.findall(r"(\d) workers?\s*: max \|w - w_single\| = (\S+)", proc.stdout)}
    assert sorted(errors) == [1, 2, 3], proc.stdout
    assert all(e < 1e-9 for e in errors.values()), errors
