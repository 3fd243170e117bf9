"""Cluster schedulers: SLURM node lists, and where a job sits under srun or mpirun.

Everything here is a pure function of an environment mapping, so it is tested by simulating the
scheduler's variables; nothing reads `os.environ` by itself.

Two placements are derived:

* `launcher_placement(env)`: `disttorch-run` itself was started by `srun` / `mpirun` with one
  task per node; each task is one node's launcher, which then spawns that node's workers.
* `worker_placement(env)`: the training script was started directly by `srun` / `mpirun`, one
  task per worker, with no launcher at all (used by `init_process_group`).

Both agree on the master: the first host of the SLURM node list, and a port derived from the job
id so that every task computes the same one without talking to the others.

This is the project's one reader of scheduler variables: `disttorch.distributed.env` (workers
started without a launcher) and `disttorch.training` (whether to join a group) go through
`worker_placement`, so `mpirun -np 2` / `srun -n 2` can never silently become two 1-rank jobs
because one caller looked only at WORLD_SIZE. MPI variables win over SLURM's: `mpirun` inside a
SLURM allocation starts its daemons through `srun`, so its ranks inherit a step's SLURM_PROCID.
Stdlib only (the launcher never imports the tensor stack).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "LauncherPlacement",
    "WorkerPlacement",
    "expand_nodelist",
    "launcher_placement",
    "mpi_master_port",
    "slurm_master_port",
    "worker_placement",
]

# Ports derived from a SLURM job id: _PORT_BASE + job_id % _PORT_SPAN (the control channel takes
# port + 1). The same formula as disttorch.distributed's for scripts srun starts directly.
_PORT_BASE = 15000
_PORT_SPAN = 10000


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split `text` on `sep` outside square brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise ValueError(f"SLURM node list {text!r}: nested '[' at position {i}")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"SLURM node list {text!r}: unmatched ']' at position {i}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"SLURM node list {text!r}: unclosed '['")
    parts.append(text[start:])
    return parts


def _expand_range_list(body: str, whole: str) -> list[str]:
    """Expand the inside of one bracket, e.g. '01-03,07' -> ['01', '02', '03', '07']."""
    values: list[str] = []
    for item in body.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"SLURM node list {whole!r}: empty range in [{body}]")
        lo, dash, hi = item.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"SLURM node list {whole!r}: bad range {item!r} in [{body}]")
        if not dash:
            values.append(lo)
            continue
        start, stop = int(lo), int(hi)
        if stop < start:
            raise ValueError(f"SLURM node list {whole!r}: range {item!r} runs backwards")
        # SLURM pads every number to the width of the range's first bound: node[08-10].
        width = len(lo)
        values.extend(str(n).zfill(width) for n in range(start, stop + 1))
    return values


def _expand_host_pattern(pattern: str, whole: str) -> list[str]:
    """Expand one host pattern, which may hold several bracket groups: 'r[1-2]n[1-2]'."""
    hosts = [""]
    rest = pattern
    while rest:
        open_at = rest.find("[")
        if open_at < 0:
            hosts = [h + rest for h in hosts]
            break
        close_at = rest.find("]", open_at)
        prefix, body = rest[:open_at], rest[open_at + 1:close_at]
        choices = _expand_range_list(body, whole)
        hosts = [h + prefix + c for h in hosts for c in choices]
        rest = rest[close_at + 1:]
    return hosts


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM host list into host names, in SLURM's order.

    >>> expand_nodelist("node[01-03,07],gpu5")
    ['node01', 'node02', 'node03', 'node07', 'gpu5']

    Raises ValueError naming the list and the bad part for malformed input.
    """
    text = nodelist.strip()
    if not text:
        raise ValueError("SLURM node list is empty")
    hosts: list[str] = []
    for pattern in _split_top_level(text):
        pattern = pattern.strip()
        if not pattern:
            raise ValueError(f"SLURM node list {nodelist!r}: empty host between commas")
        hosts.extend(_expand_host_pattern(pattern, nodelist))
    return hosts


def slurm_master_port(job_id: str) -> int:
    """The master port every task of SLURM job `job_id` derives alike (control port is +1)."""
    digits = "".join(ch for ch in job_id if ch.isdigit())
    if not digits:
        raise ValueError(f"SLURM job id {job_id!r} holds no digits to derive a port from")
    return _PORT_BASE + int(digits) % _PORT_SPAN


def mpi_master_port(job_id: str) -> int:
    """The master port every rank of one `mpirun` derives alike from Open MPI's job id."""
    digits = "".join(ch for ch in job_id if ch.isdigit())
    if not digits:
        raise ValueError(f"MPI job id {job_id!r} holds no digits to derive a port from")
    # Open MPI's job ids differ in their high 16 bits (the job family); mix them in.
    value = int(digits)
    return _PORT_BASE + (value ^ (value >> 16)) % _PORT_SPAN


def _int_var(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if env.get(name):
            return env[name]
    return None


@dataclass(frozen=True)
class LauncherPlacement:
    """Where this launcher sits when a scheduler started one launcher per node."""

    scheduler: str  # "slurm" or "mpi"
    node_rank: int
    nnodes: int
    master_addr: str | None  # None when the scheduler does not tell (mpirun)
    master_port: int | None
    run_id: str | None


@dataclass(frozen=True)
class WorkerPlacement:
    """A worker's place when the scheduler started every worker itself (no launcher)."""

    scheduler: str
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str | None
    master_port: int | None


def _in_slurm_step(env: Mapping[str, str]) -> bool:
    # SLURM_PROCID alone is also set inside a batch script; the SLURM_STEP_* variables are only
    # set for tasks that srun started, which is the case where every task runs this code.
    return "SLURM_PROCID" in env and any(
        k in env for k in ("SLURM_STEP_ID", "SLURM_STEPID", "SLURM_STEP_NODELIST")
    )


def _in_slurm_job(env: Mapping[str, str]) -> bool:
    return bool(_first(env, "SLURM_JOB_ID", "SLURM_JOBID"))


def _slurm_master(env: Mapping[str, str]) -> tuple[str | None, int | None, str | None]:
    nodelist = _first(env, "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
    master_addr = expand_nodelist(nodelist)[0] if nodelist else None
    job_id = _first(env, "SLURM_JOB_ID", "SLURM_JOBID")
    master_port = slurm_master_port(job_id) if job_id else None
    step = _first(env, "SLURM_STEP_ID", "SLURM_STEPID")
    run_id = f"slurm-{job_id}" + (f".{step}" if step else "") if job_id else None
    return master_addr, master_port, run_id


def _mpi_rank_size(env: Mapping[str, str]) -> tuple[str, int, int, int | None, int | None] | None:
    """(flavour, rank, size, local_rank, local_size) from Open MPI / MPICH / PMI variables."""
    flavours = (
        ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
         "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
        ("mvapich", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE",
         "MV2_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_SIZE"),
        ("pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    )
    for flavour, rank_var, size_var, lrank_var, lsize_var in flavours:
        if rank_var in env and size_var in env:
            local_rank = _int_var(env, lrank_var) if lrank_var in env else None
            local_size = _int_var(env, lsize_var) if lsize_var in env else None
            return flavour, _int_var(env, rank_var), _int_var(env, size_var), local_rank, local_size
    return None


def launcher_placement(env: Mapping[str, str]) -> LauncherPlacement | None:
    """Node rank, node count and master for a launcher started once per node by a scheduler.

    Returns None when no scheduler started this process. Raises ValueError when the scheduler
    started several launchers on one node (the launcher must be one task per node).
    """
    mpi = _mpi_rank_size(env)
    if mpi is not None:
        flavour, rank, size, _, local_size = mpi
        if local_size is not None and local_size > 1:
            raise ValueError(
                f"disttorch-run under mpirun ({flavour}) needs one process per node, got "
                f"{local_size} on this node: use e.g. 'mpirun --map-by ppr:1:node'")
        return LauncherPlacement("mpi", rank, size, None, None, None)
    if _in_slurm_step(env):
        ntasks = _int_var(env, "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env
                          else "SLURM_NTASKS")
        nnodes_var = _first(env, "SLURM_STEP_NUM_NODES", "SLURM_NNODES", "SLURM_JOB_NUM_NODES")
        nnodes = int(nnodes_var) if nnodes_var else ntasks
        if ntasks != nnodes:
            raise ValueError(
                f"disttorch-run under srun needs one task per node, got {ntasks} tasks on "
                f"{nnodes} nodes: use 'srun --ntasks-per-node=1 disttorch-run ...', or run the "
                f"script under srun without disttorch-run (one task per worker)")
        master_addr, master_port, run_id = _slurm_master(env)
        return LauncherPlacement("slurm", _int_var(env, "SLURM_PROCID"), ntasks,
                                 master_addr, master_port, run_id)
    return None


def worker_placement(env: Mapping[str, str]) -> WorkerPlacement | None:
    """Rank, world size, local rank and master for a script that srun/mpirun started directly.

    Returns None when no scheduler started this process. Under mpirun the master is 127.0.0.1
    when every rank is on this node, else the first SLURM node inside an allocation, else None
    (mpirun does not publish its host list; callers then need MASTER_ADDR). Under Open MPI the
    port derives from its job id, under SLURM from the SLURM job id.
    """
    mpi = _mpi_rank_size(env)
    if mpi is not None:
        flavour, rank, size, local_rank, local_size = mpi
        master_addr, master_port, _ = _slurm_master(env) if _in_slurm_job(env) else (None, None, None)
        if local_size is not None and local_size == size:
            master_addr = "127.0.0.1"  # every rank on this node
        if master_port is None and env.get("OMPI_MCA_ess_base_jobid"):
            master_port = mpi_master_port(env["OMPI_MCA_ess_base_jobid"])
        return WorkerPlacement(flavour, rank, size, local_rank or 0, local_size or 1,
                               master_addr, master_port)
    if _in_slurm_step(env):
        master_addr, master_port, _ = _slurm_master(env)
        ntasks = _int_var(env, "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env
                          else "SLURM_NTASKS")
        local_rank = _int_var(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or ""
        local_size = _tasks_on_this_node(per_node, env) or 1
        return WorkerPlacement("slurm", _int_var(env, "SLURM_PROCID"), ntasks, local_rank,
                               local_size, master_addr, master_port)
    return None


def _tasks_on_this_node(tasks_per_node: str, env: Mapping[str, str]) -> int | None:
    """Read SLURM's compressed tasks-per-node list ('2(x3),1') at this node's index."""
    if not tasks_per_node:
        return None
    counts: list[int] = []
    for item in tasks_per_node.split(","):
        count, _, repeat = item.partition("(x")
        try:
            counts.extend([int(count)] * (int(repeat.rstrip(")")) if repeat else 1))
        except ValueError:
            raise ValueError(f"SLURM tasks per node {tasks_per_node!r}: bad item {item!r}") from None
    node_id = int(env.get("SLURM_NODEID", "0"))
    return counts[node_id] if node_id < len(counts) else None
