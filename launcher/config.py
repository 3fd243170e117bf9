"""The launch configuration, its value parsers, and the environment each worker gets.

Value parsers raise ValueError with the option and the bad value in the message; `cli.py` turns
those into usage errors. Nothing here starts processes.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from .net import free_port, is_loopback  # noqa: F401  (part of this module's API, see __all__)

if TYPE_CHECKING:
    from .simulate import SimulationConfig

__all__ = [
    "LaunchConfig",
    "StreamSpec",
    "parse_nproc",
    "parse_nnodes",
    "parse_stream_spec",
    "parse_ranks_filter",
    "available_cores",
    "visible_gpus",
    "free_port",
    "is_loopback",
    "thread_env",
    "worker_env",
    "THREAD_VARS",
]

# BLAS / OpenMP thread pools each worker would otherwise size to the whole machine: N workers x
# all cores oversubscribes the CPU and wrecks multi-worker speed.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Variables a parent torchrun / launcher may have left in our environment that would mislead the
# workers (torch's env:// would skip starting its store when the agent-store flag is set).
_STALE_VARS = ("TORCHELASTIC_USE_AGENT_STORE",)

STREAM_NONE, STREAM_OUT, STREAM_ERR, STREAM_ALL = 0, 1, 2, 3


@dataclass(frozen=True)
class StreamSpec:
    """Which std streams (0 none, 1 stdout, 2 stderr, 3 both) an option applies to, per local rank.

    torchrun's `--redirects` / `--tee` syntax: one digit for every rank, or 'local_rank:digit,...'.
    """

    default: int = STREAM_NONE
    per_rank: Mapping[int, int] = field(default_factory=dict)

    def for_local_rank(self, local_rank: int) -> int:
        return self.per_rank.get(local_rank, self.default)

    def covers(self, local_rank: int, stream: int) -> bool:
        """Whether `stream` (STREAM_OUT or STREAM_ERR) of `local_rank` is selected."""
        return bool(self.for_local_rank(local_rank) & stream)

    def any(self) -> bool:
        return bool(self.default) or any(self.per_rank.values())


@dataclass
class LaunchConfig:
    """Everything one node's launcher needs, after parsing and defaults are applied."""

    entrypoint: str
    entrypoint_args: list[str]
    run_module: bool = False
    no_python: bool = False
    nproc_per_node: int = 1
    min_nodes: int = 1
    max_nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    control_port: int | None = None
    max_restarts: int = 0
    monitor_interval: float = 0.1
    grace_period: float = 10.0
    run_id: str | None = None
    log_dir: str | None = None
    redirects: StreamSpec = field(default_factory=StreamSpec)
    tee: StreamSpec = field(default_factory=StreamSpec)
    local_ranks_filter: frozenset[int] | None = None
    role: str = "default"
    hosts: list[tuple[str, int | None]] | None = None
    ssh_command: list[str] = field(default_factory=lambda: ["ssh"])
    dry_run: bool = False
    join_timeout: float = 900.0
    last_call: float = 5.0
    node_timeout: float = 30.0
    isolate_gpus: bool = False
    secret: str | None = None
    secret_from_stdin: bool = False
    scheduler: str | None = None  # the scheduler that placed this launcher, for messages
    simulation: SimulationConfig | None = None  # --simulate-network / --inject-fault / --trace-dir
    collective_timeout: float | None = None  # --timeout: the workers' DISTTORCH_TIMEOUT
    worker_join_timeout: float | None = None  # --join-timeout given: the workers' rendezvous too
    start_method: str | None = None  # --start-method: None (fork server where safe), or spawn

    @property
    def multi_node(self) -> bool:
        return self.max_nodes > 1

    @property
    def elastic(self) -> bool:
        return self.min_nodes != self.max_nodes


def export_timeouts(cfg: LaunchConfig, environ: dict) -> None:
    """Put --timeout / --join-timeout into `environ` (the launcher's own environment, which
    the workers inherit and --hosts forwards) as DISTTORCH_TIMEOUT / DISTTORCH_JOIN_TIMEOUT."""
    if cfg.collective_timeout is not None:
        environ["DISTTORCH_TIMEOUT"] = f"{cfg.collective_timeout:g}"
    if cfg.worker_join_timeout is not None:
        environ["DISTTORCH_JOIN_TIMEOUT"] = f"{cfg.worker_join_timeout:g}"


def report_period(environ: Mapping[str, str] | None = None) -> float:
    """DISTTORCH_REPORT_PERIOD: seconds between the reports of a wait (30)."""
    value = (os.environ if environ is None else environ).get("DISTTORCH_REPORT_PERIOD", "")
    if not value.strip():
        return 30.0
    try:
        period = float(value)
    except ValueError:
        period = 0.0
    if not 0 < period < float("inf"):
        raise ValueError(f"DISTTORCH_REPORT_PERIOD={value!r}: expected a positive number of "
                         f"seconds")
    return period


def parse_nproc(text: str, env: Mapping[str, str] | None = None) -> int:
    """`--nproc-per-node`: a positive integer, 'cpu' (cores), 'gpu' (GPUs) or 'auto' (GPUs if any,
    else cores)."""
    env = os.environ if env is None else env
    value = text.strip().lower()
    if value == "cpu":
        return available_cores()
    if value in ("gpu", "auto"):
        gpus = len(visible_gpus(env))
        if gpus:
            return gpus
        if value == "gpu":
            raise ValueError("--nproc-per-node gpu: this machine has no visible GPU "
                             f"(CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')!r})")
        return available_cores()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--nproc-per-node: expected a positive integer, 'auto', 'cpu' or 'gpu', "
                         f"got {text!r}")
    return n


def parse_nnodes(text: str) -> tuple[int, int]:
    """`--nnodes`: 'N' or 'MIN:MAX' (elastic), 1 <= MIN <= MAX."""
    lo, sep, hi = text.strip().partition(":")
    try:
        low, high = int(lo), int(hi if sep else lo)
    except ValueError:
        raise ValueError(f"--nnodes: expected N or MIN:MAX, got {text!r}") from None
    if low < 1 or high < low:
        raise ValueError(f"--nnodes: need 1 <= MIN <= MAX, got {text!r}")
    return low, high


def parse_stream_spec(text: str, option: str) -> StreamSpec:
    """`--redirects` / `--tee`: '3', or '0:3,1:1' (local rank: streams), streams in 0..3."""
    def digit(s: str) -> int:
        if s.strip() not in ("0", "1", "2", "3"):
            raise ValueError(f"{option}: expected 0 (none), 1 (stdout), 2 (stderr) or 3 (both), "
                             f"got {s!r} in {text!r}")
        return int(s)

    if ":" not in text:
        return StreamSpec(default=digit(text))
    per_rank: dict[int, int] = {}
    for item in text.split(","):
        rank, sep, value = item.partition(":")
        if not sep or not rank.strip().isdigit():
            raise ValueError(f"{option}: expected 'local_rank:streams' items, got {item!r} in "
                             f"{text!r}")
        per_rank[int(rank)] = digit(value)
    return StreamSpec(default=STREAM_NONE, per_rank=per_rank)


def parse_ranks_filter(text: str) -> frozenset[int]:
    """`--local-ranks-filter`: comma-separated local ranks whose output reaches the console."""
    try:
        ranks = frozenset(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--local-ranks-filter: expected comma-separated local ranks, got "
                         f"{text!r}") from None
    if not ranks or min(ranks) < 0:
        raise ValueError(f"--local-ranks-filter: expected non-negative local ranks, got {text!r}")
    return ranks


def available_cores() -> int:
    """Cores this process may use: taskset / cgroup cpusets (unlike os.cpu_count) and the cgroup
    CPU quota a container's CPU limit sets (see cpu_quota.py)."""
    from .cpu_quota import usable_cpus

    return usable_cpus()


def visible_gpus(env: Mapping[str, str]) -> list[str]:
    """Device ids of the NVIDIA GPUs this process may use, without importing any CUDA library.

    CUDA_VISIBLE_DEVICES wins when set (CUDA stops at the first invalid entry, so do we);
    otherwise the driver's /proc listing is counted, which costs no CUDA context.
    """
    if "CUDA_VISIBLE_DEVICES" in env:
        ids = []
        for item in env["CUDA_VISIBLE_DEVICES"].split(","):
            item = item.strip()
            if not item or item.startswith("-"):
                break
            ids.append(item)
        return ids
    try:
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        return []


def thread_env(env: Mapping[str, str], local_workers: int, cores: int | None = None) -> dict[str, str]:
    """BLAS / OpenMP thread counts for workers that share this node's cores.

    Each variable the user set is kept. Unset ones get the user's OMP_NUM_THREADS when that is
    set (one intent for all pools), else cores // local_workers (at least 1).
    """
    cores = available_cores() if cores is None else cores
    default = env.get("OMP_NUM_THREADS") or str(max(1, cores // max(1, local_workers)))
    return {var: env.get(var) or default for var in THREAD_VARS}


def worker_env(
    base: Mapping[str, str],
    *,
    rank: int,
    local_rank: int,
    world_size: int,
    local_world_size: int,
    node_rank: int,
    nnodes: int,
    master_addr: str,
    master_port: int,
    secret: str,
    run_id: str,
    restart_count: int,
    max_restarts: int,
    role: str,
    error_file: str,
    launcher_pid: int,
    grace_period: float,
    threads: Mapping[str, str],
    gpus: list[str],
    isolate_gpus: bool = False,
) -> dict[str, str]:
    """The full environment of one worker: the launcher's own plus torchrun's variables."""
    env = dict(base)
    for var in _STALE_VARS:
        env.pop(var, None)
    env.update({
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(local_world_size),
        "GROUP_RANK": str(node_rank),
        "NODE_RANK": str(node_rank),
        "GROUP_WORLD_SIZE": str(nnodes),
        "ROLE_NAME": role,
        "ROLE_RANK": str(rank),
        "ROLE_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
        "DISTTORCH_SECRET": secret,
        "TORCHELASTIC_RUN_ID": run_id,
        "DISTTORCH_RUN_ID": run_id,
        "TORCHELASTIC_RESTART_COUNT": str(restart_count),
        "DISTTORCH_RESTART_COUNT": str(restart_count),
        "TORCHELASTIC_MAX_RESTARTS": str(max_restarts),
        "TORCHELASTIC_ERROR_FILE": error_file,
        "DISTTORCH_ERROR_FILE": error_file,
        "DISTTORCH_LAUNCHER_PID": str(launcher_pid),
        "DISTTORCH_STOP_GRACE": f"{grace_period:g}",
    })
    env.update(threads)
    # Prefixed output is read line by line; a block-buffered worker would show nothing until
    # it exits. The user's explicit choice wins.
    env.setdefault("PYTHONUNBUFFERED", "1")
    if gpus:
        device = gpus[local_rank % len(gpus)]
        if isolate_gpus:
            env["CUDA_VISIBLE_DEVICES"] = device
            env["DISTTORCH_DEVICE_INDEX"] = "0"
        else:
            env["DISTTORCH_DEVICE_INDEX"] = str(local_rank % len(gpus))
    return env


def python_executable() -> str:
    """The interpreter the workers run under: the launcher's own."""
    return sys.executable or "python3"
