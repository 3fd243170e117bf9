"""Runs a function on N freshly spawned ranks of a real job and collects what each returns.

Each rank gets MASTER_ADDR / MASTER_PORT (a fresh free port per job), RANK, WORLD_SIZE, LOCAL_RANK,
joins with ``init_process_group`` (unless ``init=False``), runs ``fn(rank, world_size, *args)`` and
sends back the result or the exception (type, message). Every child is killed when the job ends or
times out, so no test leaves processes behind.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import socket
import time
import traceback

_CTX = mp.get_context("spawn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RankError(Exception):
    """What a rank raised: ``type_name`` and ``message``."""

    def __init__(self, rank, type_name, message, tb):
        super().__init__(f"rank {rank} raised {type_name}: {message}\n{tb}")
        self.rank, self.type_name, self.message = rank, type_name, message


def _child(fn, rank, world, port, env, init, timeout, args, results):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"})
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    for k, v in (env or {}).items():
        if v is None:
            os.environ.pop(k, None)
    try:
        import disttorch.distributed as dist

        if init:
            dist.init_process_group("zmq", timeout=timeout)
        try:
            out = fn(rank, world, *args)
        finally:
            if init and dist.is_initialized():
                dist.destroy_process_group()
        results.put((rank, "ok", out, None))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        results.put((rank, "err", (type(e).__name__, str(e)), traceback.format_exc()))


def run(fn, world: int, *args, env: dict | None = None, per_rank_env: dict | None = None, init: bool = True,
        timeout: float = 30.0, job_timeout: float = 90.0, raise_errors: bool = True, port: int | None = None,
        wait_for=None):
    """Returns ``[result of rank 0, ...]``; with ``raise_errors=False`` failed ranks give RankError objects.

    ``wait_for``: the ranks whose results matter (default all); the others are killed once those
    reported (a rank the test stops or kills never reports).
    """
    needed = set(range(world) if wait_for is None else wait_for)
    port = port or free_port()
    results = _CTX.Queue()
    procs = []
    for r in range(world):
        e = dict(env or {})
        e.update((per_rank_env or {}).get(r, {}))
        p = _CTX.Process(target=_child, args=(fn, r, world, port, e, init, timeout, args, results), daemon=True)
        p.start()
        procs.append(p)
    out: dict = {}
    deadline = time.monotonic() + job_timeout
    try:
        while not needed <= set(out):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                rank, status, value, tb = results.get(timeout=min(left, 0.5))
            except queue.Empty:
                if all(not p.is_alive() for p in procs) and results.empty():
                    break
                continue
            out[rank] = value if status == "ok" else RankError(rank, value[0], value[1], tb)
    finally:
        for p in procs:
            if p.is_alive():
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except OSError:
                    pass
                p.join(2)
            if p.is_alive():
                p.kill()
                p.join(5)
    missing = [r for r in range(world) if r not in out]
    listed = [out.get(r, RankError(r, "NoResult", "the rank exited without a result", "")) for r in range(world)]
    if raise_errors:
        errors = [v for v in listed if isinstance(v, RankError)]
        if errors or missing:
            raise errors[0] if errors else RuntimeError(f"ranks {missing} produced no result")
    return listed
