"""Helpers of the engine tests (Ray, SLURM): which processes belong to one job or cluster."""
from __future__ import annotations

import json
import os
import pathlib


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
