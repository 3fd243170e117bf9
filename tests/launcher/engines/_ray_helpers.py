"""Helpers of the engine tests (Ray, SLURM): which processes belong to one job or cluster, and
the Ray scenarios' records."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from _digits import child_env

SCENARIOS = os.path.join(os.path.dirname(__file__), "_ray_scenarios.py")


def processes_with_env(marker: str) -> list[int]:
    """Pids of the processes whose environment holds `marker` ('NAME=value')."""
    wanted = marker.encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if wanted in f.read().split(b"\0"):
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def read_ranks(out_dir: pathlib.Path, world: int) -> list[dict]:
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(world)]


def run_scenarios(which: str, out) -> dict:
    """Runs _ray_scenarios.py WHICH in a child process; {scenario: its record}."""
    done = subprocess.run([sys.executable, SCENARIOS, which, str(out)], env=child_env(),
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads((out / "results.json").read_text())


def scenario_result(scenarios, name):
    """(the scenario's output folder, its record) from a ``scenarios`` fixture's value; the
    scenario must have succeeded."""
    out, results = scenarios
    record = results[name]
    assert record["ok"], record.get("error")
    return out / name, record
