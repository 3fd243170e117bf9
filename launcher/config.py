"""The launch configuration, its value parsers, and the environment each worker gets.

Value parsers (and `config_from_args`, which builds the config from the options) raise ValueError
with the option and the bad value in the message; `cli.py` turns those into usage errors.
Nothing here starts processes.
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
    "config_from_args",
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


# --- building the configuration from disttorch-run's options -------------------------------

def _rdzv_conf(text: str) -> dict[str, float]:
    conf: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            conf[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--rdzv-conf: expected KEY=SECONDS, got {item!r}") from None
        if not sep:
            raise ValueError(f"--rdzv-conf: expected KEY=SECONDS, got {item!r}")
    unknown = set(conf) - {"timeout", "join_timeout", "last_call_timeout", "read_timeout"}
    if unknown:
        raise ValueError(f"--rdzv-conf: unknown key(s) {', '.join(sorted(unknown))}")
    return conf


def _check_port(value: int | None, option: str) -> None:
    if value is not None and not 1 <= value <= 65535:
        raise ValueError(f"{option}: expected a port in 1..65535, got {value}")


def config_from_args(args, env) -> tuple[LaunchConfig, bool]:
    """A LaunchConfig from `disttorch-run`'s parsed options (an argparse Namespace of
    `cli.build_parser()`) and the environment; also whether the master address was given (as
    opposed to defaulted). Raises ValueError naming the bad value."""
    import shlex

    from . import settings, simulate
    from .net import DEFAULT_MASTER_PORT
    from .schedulers import launcher_placement

    if args.max_restarts < 0:
        raise ValueError(f"--max-restarts: expected >= 0, got {args.max_restarts}")
    if args.start_method is not None and args.start_method not in ("forkserver", "fork", "spawn"):
        raise ValueError(f"--start-method: expected forkserver, fork or spawn, got "
                         f"{args.start_method!r}")
    if args.monitor_interval <= 0:
        raise ValueError(f"--monitor-interval: expected > 0 seconds, got {args.monitor_interval}")
    if args.grace_period < 0:
        raise ValueError(f"--grace-period: expected >= 0 seconds, got {args.grace_period}")
    if args.node_timeout <= 0:
        raise ValueError(f"--node-timeout: expected > 0 seconds, got {args.node_timeout}")
    _check_port(args.master_port, "--master-port")
    _check_port(args.control_port, "--control-port")
    if args.module and args.no_python:
        raise ValueError("--module and --no-python exclude each other")

    conf = _rdzv_conf(args.rdzv_conf)
    master_addr, master_port = args.master_addr, args.master_port
    if args.rdzv_endpoint:
        host, sep, port = args.rdzv_endpoint.rpartition(":")
        if not sep or not port.isdigit():
            host, port = args.rdzv_endpoint, ""
        master_addr = master_addr or host
        if port and master_port is None:
            master_port = int(port)
            _check_port(master_port, "--rdzv-endpoint")

    hosts = None
    if args.hosts and args.hostfile:
        raise ValueError("--hosts and --hostfile exclude each other")
    if args.hosts or args.hostfile:
        from .remote import parse_hostfile, parse_hosts

        hosts = parse_hosts(args.hosts) if args.hosts else parse_hostfile(args.hostfile)

    min_nodes, max_nodes = parse_nnodes(args.nnodes) if args.nnodes else (1, 1)
    node_rank = args.node_rank
    run_id = args.run_id
    scheduler = None
    if hosts is not None:
        if args.nnodes and (min_nodes, max_nodes) != (len(hosts), len(hosts)):
            raise ValueError(f"--nnodes {args.nnodes} differs from the {len(hosts)} hosts given")
        if node_rank not in (None, 0):
            raise ValueError("--node-rank makes no sense with --hosts/--hostfile (this machine "
                             "starts every node)")
        min_nodes = max_nodes = len(hosts)
    elif args.scheduler == "auto" and node_rank is None and not args.standalone:
        placement = launcher_placement(env)
        if placement is not None:
            if args.nnodes and (min_nodes, max_nodes) != (placement.nnodes, placement.nnodes):
                raise ValueError(f"--nnodes {args.nnodes} differs from the {placement.nnodes} "
                                 f"nodes {placement.scheduler} started")
            min_nodes = max_nodes = placement.nnodes
            node_rank = placement.node_rank
            scheduler = placement.scheduler
            if placement.nnodes > 1:
                master_addr = master_addr or env.get("MASTER_ADDR") or placement.master_addr
                if master_addr is None:
                    raise ValueError(f"under {placement.scheduler} with {placement.nnodes} "
                                     f"nodes, pass --master-addr (the host of node 0)")
                if master_port is None and placement.master_port is not None:
                    master_port = placement.master_port
            run_id = run_id or placement.run_id
    node_rank = node_rank or 0
    if args.standalone:
        if max_nodes != 1 or hosts is not None:
            raise ValueError("--standalone runs one node; drop --nnodes/--hosts or --standalone")
        master_addr = "127.0.0.1"
        master_port = None
    if not 0 <= node_rank < max_nodes:
        raise ValueError(f"--node-rank: expected 0..{max_nodes - 1} for {max_nodes} node"
                         f"{'s' if max_nodes > 1 else ''}, got {node_rank}")
    if max_nodes > 1 and hosts is None and master_port is None:
        master_port = DEFAULT_MASTER_PORT

    secret = settings.get("DISTTORCH_SECRET", env)
    cfg = LaunchConfig(
        entrypoint=args.training_script,
        entrypoint_args=list(args.training_script_args),
        run_module=args.module,
        no_python=args.no_python,
        nproc_per_node=parse_nproc(args.nproc_per_node, env),
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        node_rank=node_rank,
        master_addr=master_addr or "127.0.0.1",
        master_port=master_port,
        control_port=args.control_port,
        max_restarts=args.max_restarts,
        monitor_interval=args.monitor_interval,
        grace_period=args.grace_period,
        run_id=run_id,
        log_dir=args.log_dir,
        redirects=parse_stream_spec(args.redirects, "--redirects"),
        tee=parse_stream_spec(args.tee, "--tee"),
        local_ranks_filter=(parse_ranks_filter(args.local_ranks_filter)
                            if args.local_ranks_filter else None),
        role=args.role,
        hosts=hosts,
        ssh_command=shlex.split(args.ssh_command) or ["ssh"],
        dry_run=args.dry_run,
        join_timeout=args.join_timeout if args.join_timeout is not None else conf.get(
            "join_timeout", conf.get("timeout", 900.0)),
        last_call=conf.get("last_call_timeout", 5.0),
        node_timeout=args.node_timeout,
        isolate_gpus=args.isolate_gpus,
        start_method=args.start_method,
        secret=secret,
        secret_from_stdin=args.secret_stdin,
        scheduler=scheduler,
    )
    cfg.simulation = simulate.from_args(args, _world_size(cfg))
    if cfg.join_timeout <= 0:
        raise ValueError(f"--join-timeout: expected > 0 seconds, got {cfg.join_timeout}")
    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"--timeout: expected > 0 seconds, got {args.timeout}")
    cfg.collective_timeout = args.timeout
    cfg.worker_join_timeout = args.join_timeout
    return cfg, master_addr is not None


def _world_size(cfg: LaunchConfig) -> int | None:
    """The job's worker count when it is fixed (to check fault ranks), else None."""
    if cfg.hosts is not None:
        return sum(n or cfg.nproc_per_node for _, n in cfg.hosts)
    return cfg.nproc_per_node * cfg.max_nodes if not cfg.elastic else None
