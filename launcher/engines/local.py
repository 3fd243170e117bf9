"""The local engine: one node's ranks as child processes of this launcher, behind the engine
interface (start, poll, signal, stop).

It plans each attempt's workers with `disttorch_launcher.local.plan_workers` and runs them with
`disttorch_launcher.local.WorkerGroup`, the same spawning, output relay and process-group handling that
`disttorch-run --nproc-per-node N` uses; `supervise` (engines/supervise.py) then drives it exactly
as it drives the Ray engine.
"""
from __future__ import annotations

import os
import queue
import secrets
import signal as _signal
import socket
import time

from ..config import LaunchConfig, free_port
from ..local import RunFiles, WorkerGroup, plan_workers
from ..report import read_error_file
from . import RankExit

__all__ = ["LocalEngine"]


class LocalEngine:
    """`cfg.nproc_per_node` ranks on this machine, one attempt at a time."""

    def __init__(self, cfg: LaunchConfig, *, secret: str | None = None, run_id: str | None = None,
                 files: RunFiles | None = None) -> None:
        self.cfg = cfg
        self.world_size = cfg.nproc_per_node
        self.secret = secret or secrets.token_hex(32)
        self.run_id = run_id or secrets.token_hex(4)
        self.files = files or RunFiles(cfg.log_dir, self.run_id, need_logs=False)
        self.host = socket.gethostname()
        self._group: WorkerGroup | None = None
        self._alive: set[int] = set()

    def start(self, attempt: int) -> None:
        port = self.cfg.master_port or free_port(self.cfg.master_addr)
        plans = plan_workers(
            self.cfg, files=self.files, attempt=attempt, restart_count=attempt, rank_offset=0,
            world_size=self.world_size, node_rank=0, nnodes=1, master_port=port,
            secret=self.secret, run_id=self.run_id, base_env=dict(os.environ))
        self._group = WorkerGroup(plans, node_rank=0, host=self.host,
                                  grace_period=self.cfg.grace_period,
                                  monitor_interval=self.cfg.monitor_interval,
                                  start_method=self.cfg.start_method)
        self._group.start()
        self._alive = set(range(len(plans)))

    def poll(self) -> list[RankExit]:
        ended = []
        group = self._group
        while group is not None:
            try:
                index, returncode, when = group._exits.get_nowait()  # noqa: SLF001
            except queue.Empty:
                break
            self._alive.discard(index)
            ended.append(self._exit(index, returncode, when))
        return ended

    def signal(self, sig: int) -> None:
        for index in self._alive:
            self._group._signal_worker(index, sig)  # noqa: SLF001

    def stop(self, grace: float) -> list[RankExit]:
        group = self._group
        if group is None:
            return []
        stopping = set(self._alive)
        group.grace_period = grace
        group._stop(self._alive, _signal.SIGTERM, lambda: False)  # noqa: SLF001 - records exits
        group._finish()  # noqa: SLF001 - stragglers and output threads
        self._alive = set()
        return [self._exit(i, group.workers[i].returncode, time.time(), "stopped") for i in sorted(stopping)]

    def close(self) -> None:
        from ..forkserver import shutdown_fork_server
        shutdown_fork_server()
        self.files.cleanup()

    def _exit(self, index: int, returncode: int | None, when: float, cause: str | None = None) -> RankExit:
        w = self._group.workers[index]
        w.returncode, w.exit_time = returncode, when
        tail = None
        if returncode not in (0, None) and cause is None:
            record = read_error_file(w.plan.error_file)
            if record:
                cause = f"{record.get('exc_type')}: {record.get('message')}"
            tail = [line.decode("utf-8", "replace").rstrip("\n") for line in w.tail]
        return RankExit(w.plan.rank, w.plan.local_rank, 0, self.host, w.proc.pid, returncode,
                        when, cause, tail)
