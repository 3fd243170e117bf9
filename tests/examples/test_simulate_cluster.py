"""examples/simulate_cluster.py on a simulated 100 Mbit link: each step waits for the link."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_runs_on_a_simulated_link_and_reports_step_times(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISTTORCH_", "TORCHELASTIC_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "disttorch_launcher", "--nproc-per-node", "2", "--simulate-network",
                           "bandwidth=100mbit", "--trace-dir", str(tmp_path / "trace"),
                           str(ROOT / "examples" / "simulate_cluster.py"), "--steps", "6", "--report", "3"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    steps = [float(ms) for ms in re.findall(r"\[rank0\]: steps +\d+-\d+ +([\d.]+) ms/step", out)]
    assert len(steps) == 2, out
    # 2.7 MB of gradients, 2 ranks, 100 Mbit/s: at least S*8/B = 214 ms of ring per step
    assert min(steps) > 200, steps
    assert (tmp_path / "trace" / "trace.json").exists()
