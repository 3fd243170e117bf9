"""Runs a script as N ranks (env:// variables as the launcher sets them); kills them on any exit."""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(script, world, args=(), timeout=60.0, extra_env=None, per_rank_env=None):
    """Runs ``script`` as ``world`` processes; returns [(returncode, output)] in rank order.
    ``per_rank_env``: {rank: {variable: value}} on top of ``extra_env``."""
    port = free_port()
    base = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                DISTTORCH_SECRET=secrets.token_hex(16), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                PYTHONUNBUFFERED="1", **(extra_env or {}))
    procs = []
    try:
        for rank in range(world):
            env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                       **(per_rank_env or {}).get(rank, {}))
            procs.append(subprocess.Popen([sys.executable, str(script), *map(str, args)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        deadline = time.monotonic() + timeout
        results = []
        for rank, p in enumerate(procs):
            try:
                out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
                raise AssertionError(f"rank {rank} of {script} timed out after {timeout}s:\n{out[-3000:]}")
            results.append((p.returncode, out))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
