"""Spawn and supervise one node's workers.

`WorkerGroup` is one attempt: it starts the node's workers, relays their output, waits, and when
one fails (or a stop is requested) stops all the others: SIGTERM to each worker's process
group, a grace period, then SIGKILL to the group and to any descendant that left it.
`run_single_node` runs attempts on one machine until success, a signal, or the restart budget
is spent, and prints the one failure report.

Workers are forked from a pre-imported template (`forkserver.py`) where that is safe, else
spawned as fresh interpreters; either way each leads its own session and is this launcher's child.
Workers are started from the main thread only: the kernel's parent-death signal fires when the
*thread* that forked the child exits, so a short-lived spawning thread would kill its workers.
"""
from __future__ import annotations

import collections
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from . import output
from . import forkserver
from .config import (STREAM_ERR, STREAM_OUT, LaunchConfig, python_executable, thread_env, visible_gpus,
                     worker_env)
from .net import free_port
from .process import (become_subreaper, descendants, kill_pids, own_children, raise_open_file_limit,
                      reap, signal_group, signal_name)
from .report import (WorkerFailure, early_exit_description, first_event, format_report,
                     last_stack_dump, read_error_file)
from .signals import SignalState

__all__ = ["WorkerPlan", "AttemptResult", "WorkerGroup", "RunFiles", "plan_workers",
           "worker_argv", "run_single_node", "LaunchError"]

BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap.py")
_FINAL_WAIT = 5.0  # seconds to wait for a SIGKILLed worker to be reaped
_STRAGGLER_GRACE = 0.5  # seconds leftover children of a finished worker get after SIGTERM
_DRAIN_WAIT = 2.0  # seconds to finish relaying output once every worker is gone

StopCheck = Callable[[], "tuple[str, int] | None"]


class LaunchError(RuntimeError):
    """A worker could not be started at all (bad interpreter, unreadable log dir, ...)."""


@dataclass
class WorkerPlan:
    """How to start one worker: its ranks, command, environment and where its output goes."""

    rank: int
    local_rank: int
    argv: list[str]
    env: dict[str, str]
    error_file: str
    stdout_console: bool = True
    stderr_console: bool = True
    stdout_log: str | None = None
    stderr_log: str | None = None


@dataclass
class AttemptResult:
    """How one attempt ended: 'succeeded', 'failed' (a worker failed) or 'stopped' (asked to)."""

    status: str
    failures: list[WorkerFailure] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    early_exits: list[str] = field(default_factory=list)  # clean exits while others still ran
    stacks: list[str] = field(default_factory=list)  # stopped ranks' last stack dumps (SIGUSR1)


_SCRATCH = re.compile(r"^disttorch-.+-p(\d+)-[A-Za-z0-9_]{8}$")


def sweep_stale_scratch(tmp: str | None = None) -> list[str]:
    """Removes scratch directories (error files) of launchers that are gone: a launcher killed with
    SIGKILL cannot remove its own. Each name carries its launcher's pid; only directories of this
    user whose launcher no longer runs are removed. Returns the removed paths."""
    import psutil
    tmp = tmp or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(tmp)
    except OSError:
        return removed
    for name in names:
        m = _SCRATCH.match(name)
        if not m or psutil.pid_exists(int(m.group(1))):
            continue
        path = os.path.join(tmp, name)
        try:
            if os.lstat(path).st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


class RunFiles:
    """Where error files and logs go: `<log_dir>/<run_id>/attempt_<k>/rank<R>/`.

    Without a log dir (or when redirection needs one) a temporary directory is used and removed
    by `cleanup`.
    """

    def __init__(self, log_dir: str | None, run_id: str, need_logs: bool) -> None:
        self._temp = None
        if log_dir is None:
            if need_logs:  # kept for the user to read afterwards: a name the sweep leaves alone
                self.root = tempfile.mkdtemp(prefix=f"disttorch-logs-{run_id}-")
                output.say(f"--redirects/--tee without --log-dir: logs go to {self.root}")
            else:
                sweep_stale_scratch()
                self._temp = tempfile.mkdtemp(prefix=f"disttorch-{run_id}-p{os.getpid()}-")
                self.root = self._temp
            self.logs = need_logs
        else:
            self.root = os.path.join(os.path.abspath(log_dir), run_id)
            self.logs = True

    def rank_dir(self, attempt: int, rank: int) -> str:
        path = os.path.join(self.root, f"attempt_{attempt}", f"rank{rank}")
        os.makedirs(path, exist_ok=True)
        return path

    def cleanup(self) -> None:
        if self._temp:
            shutil.rmtree(self._temp, ignore_errors=True)


def worker_argv(cfg: LaunchConfig) -> list[str]:
    """The command of every worker: the bootstrap wrapping the user's script, module or program."""
    python = python_executable()
    if cfg.no_python:
        return [python, BOOTSTRAP, "--exec", cfg.entrypoint, *cfg.entrypoint_args]
    if cfg.run_module:
        return [python, BOOTSTRAP, "-m", cfg.entrypoint, *cfg.entrypoint_args]
    return [python, BOOTSTRAP, cfg.entrypoint, *cfg.entrypoint_args]


def plan_workers(
    cfg: LaunchConfig,
    *,
    files: RunFiles,
    attempt: int,
    restart_count: int,
    rank_offset: int,
    world_size: int,
    node_rank: int,
    nnodes: int,
    master_port: int,
    secret: str,
    run_id: str,
    base_env: dict[str, str] | None = None,
) -> list[WorkerPlan]:
    """The plans of this node's `cfg.nproc_per_node` workers for one attempt."""
    base = dict(os.environ if base_env is None else base_env)
    threads = thread_env(base, cfg.nproc_per_node)
    gpus = visible_gpus(base)
    argv = worker_argv(cfg)
    plans = []
    for local_rank in range(cfg.nproc_per_node):
        rank = rank_offset + local_rank
        rank_dir = files.rank_dir(attempt, rank)
        error_file = os.path.join(rank_dir, "error.json")
        env = worker_env(
            base, rank=rank, local_rank=local_rank, world_size=world_size,
            local_world_size=cfg.nproc_per_node, node_rank=node_rank, nnodes=nnodes,
            master_addr=cfg.master_addr, master_port=master_port, secret=secret, run_id=run_id,
            restart_count=restart_count, max_restarts=cfg.max_restarts, role=cfg.role,
            error_file=error_file, launcher_pid=os.getpid(), grace_period=cfg.grace_period,
            threads=threads, gpus=gpus, isolate_gpus=cfg.isolate_gpus)
        if cfg.simulation is not None:
            env.update(cfg.simulation.worker_env(env))
        shown = cfg.local_ranks_filter is None or local_rank in cfg.local_ranks_filter
        out_redirected = cfg.redirects.covers(local_rank, STREAM_OUT)
        err_redirected = cfg.redirects.covers(local_rank, STREAM_ERR)
        if rank == 0 and shown and not err_redirected:  # rank 0's progress bar, on a terminal console
            for key, value in output.terminal_env(f"[rank{rank}]: ").items():
                env.setdefault(key, value)
        log_out = files.logs and (cfg.log_dir is not None or out_redirected
                                  or cfg.tee.covers(local_rank, STREAM_OUT))
        log_err = files.logs and (cfg.log_dir is not None or err_redirected
                                  or cfg.tee.covers(local_rank, STREAM_ERR))
        plans.append(WorkerPlan(
            rank=rank, local_rank=local_rank, argv=argv, env=env, error_file=error_file,
            stdout_console=shown and not out_redirected,
            stderr_console=shown and not err_redirected,
            stdout_log=os.path.join(rank_dir, "stdout.log") if log_out else None,
            stderr_log=os.path.join(rank_dir, "stderr.log") if log_err else None))
    return plans


class _Worker:
    """A started worker: its plan, process, output threads and how it ended."""

    def __init__(self, plan: WorkerPlan, proc: subprocess.Popen, threads: list[threading.Thread],
                 tail: collections.deque) -> None:
        self.plan = plan
        self.proc = proc
        self.threads = threads
        self.tail = tail
        self.returncode: int | None = None
        self.exit_time: float | None = None
        self.forced = False  # SIGKILLed after the grace period


class WorkerGroup:
    """One attempt of one node: start the workers, supervise them, stop them all on failure."""

    def __init__(self, plans: list[WorkerPlan], *, node_rank: int = 0, host: str | None = None,
                 grace_period: float = 10.0, monitor_interval: float = 0.1,
                 start_method: str | None = None) -> None:
        self.plans = plans
        self.start_method = start_method
        self.node_rank = node_rank
        self.host = host or socket.gethostname()
        self.grace_period = grace_period
        self.monitor_interval = monitor_interval
        self.workers: list[_Worker] = []
        self._exits: queue.Queue = queue.Queue()
        self.started_at = 0.0
        self._subreaper = False
        self._preexisting: set[int] = set()

    def start(self) -> None:
        """Spawn every worker (main thread only, see the module docstring)."""
        self.started_at = time.time()
        # Orphans of the workers then come to us, and `_sweep_orphans` can stop them.
        self._subreaper = become_subreaper()
        # Two pipes per worker here; in each worker a socket or two per peer: 128 ranks outgrow
        # the common default of 1024 open files.
        raise_open_file_limit(4096 + 8 * len(self.plans))
        server = self._fork_server()
        self._preexisting = own_children() | ({server.pid} if server else set())
        cwd = os.getcwd()
        for plan in self.plans:
            try:
                if server is not None and server.suits(plan.env):
                    proc = server.fork(plan.argv[2:], plan.env, cwd)
                else:
                    proc = subprocess.Popen(
                        plan.argv, env=plan.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
            except (OSError, forkserver.ForkServerError) as exc:
                self._abort_start()
                raise LaunchError(f"cannot start rank {plan.rank}: {plan.argv[0]!r}: {exc}") from exc
            tag = f"[rank{plan.rank}]: ".encode()
            tail: collections.deque = collections.deque(maxlen=output.TAIL_LINES)
            threads = [
                output.start_pump(proc.stdout, prefix=tag,
                                  console="stdout" if plan.stdout_console else None,
                                  log_path=plan.stdout_log),
                output.start_pump(proc.stderr, prefix=tag,
                                  console="stderr" if plan.stderr_console else None,
                                  log_path=plan.stderr_log, tail=tail),
            ]
            worker = _Worker(plan, proc, threads, tail)
            self.workers.append(worker)
            threading.Thread(target=self._wait_for, args=(len(self.workers) - 1,),
                             name="disttorch-waiter", daemon=True).start()

    def _fork_server(self) -> forkserver.ForkServer | None:
        """The template to fork this attempt's workers from, or None to spawn them."""
        if (self.start_method == "spawn" or not self.plans or not self._subreaper
                or not forkserver.fork_supported()):
            return None
        first = self.plans[0]
        if first.argv[1:2] != [BOOTSTRAP] or first.argv[2:3] == ["--exec"]:
            return None  # --no-python: an exec gains nothing from a pre-imported template
        if "DISTTORCH_DEVICE_INDEX" in first.env:
            return None  # GPU workers: a CUDA context does not survive a fork
        try:
            return forkserver.fork_server_for(first.argv[0], first.env)
        except forkserver.ForkServerError as exc:
            output.say(f"{exc}; starting workers as fresh interpreters")
            self.start_method = "spawn"
            return None

    def _abort_start(self) -> None:
        for w in self.workers:
            signal_group(w.proc.pid, signal.SIGKILL)
        for w in self.workers:
            w.proc.wait()

    def _wait_for(self, index: int) -> None:
        returncode = self.workers[index].proc.wait()
        self._exits.put((index, returncode, time.time()))

    def _record(self, index: int, returncode: int, when: float) -> _Worker:
        w = self.workers[index]
        w.returncode, w.exit_time = returncode, when
        return w

    def supervise(self, stop_check: StopCheck, hurry: Callable[[], bool] = lambda: False
                  ) -> AttemptResult:
        """Wait until every worker succeeded, one failed, or `stop_check` asks for a stop.

        `stop_check()` returns None or (reason, signal to send the workers); `hurry()` True
        skips what is left of the grace period.
        """
        alive = set(range(len(self.workers)))
        failed: list[_Worker] = []
        early: list[str] = []
        stop: tuple[str, int] | None = None
        while alive:
            try:
                index, returncode, when = self._exits.get(timeout=self.monitor_interval)
            except queue.Empty:
                pass
            else:
                alive.discard(index)
                w = self._record(index, returncode, when)
                if returncode != 0:
                    failed.append(w)
                    break
                if alive:
                    early.append(early_exit_description(w.plan.rank, self.host, w.proc.pid, when,
                                                        self.started_at))
                continue  # drain other exits that are already queued before checking stops
            stop = stop_check()
            if stop is not None:
                break
        # Exits that raced with the decision above still belong to this phase.
        while True:
            try:
                index, returncode, when = self._exits.get_nowait()
            except queue.Empty:
                break
            alive.discard(index)
            w = self._record(index, returncode, when)
            if returncode != 0:
                failed.append(w)

        stop_started = time.time()
        to_stop = sorted(alive)
        sig = stop[1] if stop else signal.SIGTERM
        self._stop(alive, sig, hurry)
        self._finish()

        failures = [self._failure(w) for w in failed]
        stopped, stacks = [], []
        for index in to_stop:
            w = self.workers[index]
            record = read_error_file(w.plan.error_file)
            stamp = record.get("timestamp") if record else None
            if isinstance(stamp, (int, float)) and stamp < stop_started:
                failures.append(self._failure(w, record))  # it raised before we signalled
                continue
            if (w.returncode is not None and w.returncode < 0 and -w.returncode != sig
                    and not w.forced):
                # killed by a signal we never sent (e.g. every worker of a host SIGKILLed at
                # once): a failure of its own, not a rank we stopped
                failures.append(self._failure(w, record))
                continue
            if w.forced:
                how = f"SIGKILL after {self.grace_period:g} s grace"
            elif w.returncode is None:
                how = "not reaped"
            else:
                how = _short_status(w.returncode)
            stopped.append(f"rank {w.plan.rank} ({how})")
            dump = last_stack_dump([line.decode("utf-8", "replace") for line in w.tail])
            if dump:
                stacks.append(f"rank {w.plan.rank} (host {self.host}, pid {w.proc.pid}):\n{dump}")
        if failures:
            return AttemptResult("failed", failures, stopped, early_exits=early, stacks=stacks)
        if stop is not None:
            return AttemptResult("stopped", [], stopped, stop_reason=stop[0])
        return AttemptResult("succeeded")

    def _stop(self, alive: set[int], sig: int, hurry: Callable[[], bool]) -> None:
        """Signal the live workers' groups, wait out the grace period, then SIGKILL."""
        if not alive:
            return
        escaped = set()
        if not self._subreaper:  # otherwise escaped descendants come back to us as orphans
            for index in alive:
                escaped.update(descendants(self.workers[index].proc.pid))
        for index in alive:
            self._signal_worker(index, sig)
        deadline = time.monotonic() + self.grace_period
        while alive and time.monotonic() < deadline and not hurry():
            try:
                index, returncode, when = self._exits.get(timeout=min(0.05, self.grace_period))
            except queue.Empty:
                continue
            alive.discard(index)
            self._record(index, returncode, when)
        for index in alive:
            self.workers[index].forced = True
            self._signal_worker(index, signal.SIGKILL)
        deadline = time.monotonic() + _FINAL_WAIT
        while alive and time.monotonic() < deadline:
            try:
                index, returncode, when = self._exits.get(timeout=0.1)
            except queue.Empty:
                continue
            alive.discard(index)
            self._record(index, returncode, when)
        kill_pids(escaped, signal.SIGKILL)

    def _signal_worker(self, index: int, sig: int) -> None:
        proc = self.workers[index].proc
        if proc.returncode is None:  # once reaped, its id may already belong to someone else
            signal_group(proc.pid, sig)

    def _finish(self) -> None:
        """Stop what the finished workers left behind, then drain their output threads."""
        if self._subreaper:
            self._sweep_orphans()
        else:
            # Best effort without a subreaper: the workers' groups, by their (reaped) leaders'
            # ids, which the kernel does not hand out again while a member lives.
            groups = [w.proc.pid for w in self.workers
                      if signal_group(w.proc.pid, signal.SIGTERM)]
            deadline = time.monotonic() + _STRAGGLER_GRACE
            while groups and time.monotonic() < deadline:
                time.sleep(0.02)
                groups = [g for g in groups if signal_group(g, 0)]
            for g in groups:
                signal_group(g, signal.SIGKILL)
        deadline = time.monotonic() + _DRAIN_WAIT
        for w in self.workers:
            for t in w.threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()))

    def _sweep_orphans(self) -> None:
        """Stop processes the workers left behind that were reparented to the launcher."""
        workers = {w.proc.pid for w in self.workers}
        for _ in range(5):  # killing an orphan can orphan its own children in turn
            strays = own_children() - self._preexisting - workers
            if not strays:
                return
            kill_pids(strays, signal.SIGTERM)
            deadline = time.monotonic() + _STRAGGLER_GRACE
            while strays and time.monotonic() < deadline:
                time.sleep(0.02)
                reap(strays)
                strays &= own_children()
            kill_pids(strays, signal.SIGKILL)
            deadline = time.monotonic() + _FINAL_WAIT
            while strays and time.monotonic() < deadline:
                reap(strays)
                strays &= own_children()
                if strays:
                    time.sleep(0.02)

    def _failure(self, w: _Worker, record: dict | None = None) -> WorkerFailure:
        record = record if record is not None else read_error_file(w.plan.error_file)
        when = w.exit_time or time.time()
        if record and isinstance(record.get("timestamp"), (int, float)):
            when = min(when, float(record["timestamp"]))
        return WorkerFailure(
            rank=w.plan.rank, local_rank=w.plan.local_rank, node_rank=self.node_rank,
            host=self.host, pid=w.proc.pid, returncode=w.returncode, time=when,
            exc_type=record.get("exc_type") if record else None,
            message=record.get("message") if record else None,
            traceback=record.get("traceback") if record else None,
            error_file=w.plan.error_file if record else None,
            stderr_tail=[line.decode("utf-8", "replace") for line in w.tail])


def _short_status(returncode: int) -> str:
    return signal_name(-returncode) if returncode < 0 else f"exit code {returncode}"


def write_report(text: str) -> None:
    """Print a multi-line report on stderr, line by line, without the launcher's prefix."""
    for line in text.splitlines():
        output.write_line("stderr", line.encode("utf-8", "replace"))


def run_single_node(cfg: LaunchConfig, *, secret: str, run_id: str) -> int:
    """Run the job on this machine alone; returns the launcher's exit status."""
    signals = SignalState().install()
    if cfg.simulation is not None:
        cfg.simulation.start()
    files = RunFiles(cfg.log_dir, run_id, need_logs=cfg.redirects.any() or cfg.tee.any())
    host = socket.gethostname()
    started_at = time.time()
    restart_count = 0
    try:
        while True:
            if signals.received is not None:
                output.say(f"received {signal_name(signals.received)} before starting workers")
                return signals.exit_code
            # A fresh port for every attempt unless one was given: the previous rank 0's socket
            # may still sit in TIME_WAIT.
            port = cfg.master_port or free_port(cfg.master_addr)
            plans = plan_workers(
                cfg, files=files, attempt=restart_count, restart_count=restart_count,
                rank_offset=0, world_size=cfg.nproc_per_node, node_rank=0, nnodes=1,
                master_port=port, secret=secret, run_id=run_id)
            group = WorkerGroup(plans, node_rank=0, host=host, grace_period=cfg.grace_period,
                                monitor_interval=cfg.monitor_interval,
                                start_method=cfg.start_method)
            try:
                group.start()
            except LaunchError as exc:
                output.say(str(exc))
                return 1
            result = group.supervise(signals.stop_request, signals.hurry)
            if result.status == "succeeded":
                return 0
            if result.status == "stopped":
                output.say(f"{result.stop_reason}: stopped {len(plans)} workers"
                           + (f" ({', '.join(result.stopped)})" if result.stopped else ""))
                return signals.exit_code
            first = first_event(result.failures, [])
            if restart_count < cfg.max_restarts:
                restart_count += 1
                output.say(f"attempt failed: {first.summary()}; restarting all "
                           f"{len(plans)} workers (restart {restart_count} of {cfg.max_restarts})")
                continue
            write_report(format_report(
                entrypoint=cfg.entrypoint, run_id=run_id, restart_count=restart_count,
                max_restarts=cfg.max_restarts, started_at=started_at, failures=result.failures,
                stopped=result.stopped, early_exits=result.early_exits, stacks=result.stacks))
            return 1
    finally:
        forkserver.shutdown_fork_server()
        files.cleanup()
        if cfg.simulation is not None:
            cfg.simulation.finish()  # merge the per-rank traces, whatever the outcome
        signals.restore()
