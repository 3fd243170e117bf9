"""Where a worker learns its rank, world size and master from its environment.

Pure functions over an ``environ`` mapping, so they are tested with simulated environments.
Sources, most specific first (a process started by ``mpirun`` inside a SLURM allocation inherits
the batch step's ``SLURM_PROCID=0``, so the MPI variables must win over SLURM's):

1. torchrun / disttorch-run: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``
2. Open MPI: ``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``, ``OMPI_COMM_WORLD_LOCAL_RANK``
3. MPICH / Intel MPI (PMI): ``PMI_RANK``, ``PMI_SIZE``, ``MPI_LOCALRANKID``
4. SLURM (``srun``): ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` or ``SLURM_NTASKS``,
   ``SLURM_LOCALID``, master = first host of ``SLURM_STEP_NODELIST`` / ``SLURM_JOB_NODELIST``.

``MASTER_ADDR`` / ``MASTER_PORT`` always override what a scheduler implies. The launcher package has
its own small nodelist parser (it must not import the tensor stack); this one serves workers started
without any launcher.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping

from launcher.net import DEFAULT_MASTER_PORT  # noqa: F401  (torchrun's default port, defined once)

#: SLURM jobs without MASTER_PORT get ``SLURM_PORT_BASE + job_id % SLURM_PORT_SPAN``: distinct jobs
#: sharing a node get distinct ports, and the range stays below Linux's ephemeral ports (32768+).
SLURM_PORT_BASE = 15000
SLURM_PORT_SPAN = 10000


@dataclass(frozen=True)
class LaunchEnv:
    """What the environment says about this process's place in the job (None: not said)."""

    rank: int | None
    world_size: int | None
    local_rank: int | None
    master_addr: str | None
    master_port: int | None
    source: str  # "torchrun", "openmpi", "pmi", "slurm" or "none"


def _int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def expand_nodelist(spec: str) -> list[str]:
    """Expands a SLURM hostlist: ``"node[01-03,7],gpu-a[1-2]x"`` -> node01 node02 node03 node7 gpu-a1x gpu-a2x.

    Ranges keep their zero padding; several bracket groups in one name multiply out, as in SLURM.
    """
    hosts: list[str] = []
    for item in _split_top_level(spec.strip()):
        if item:
            hosts.extend(_expand_item(item))
    return hosts


def _split_top_level(spec: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, ch in enumerate(spec):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in SLURM nodelist {spec!r}")
        elif ch == "," and depth == 0:
            items.append(spec[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"unbalanced '[' in SLURM nodelist {spec!r}")
    items.append(spec[start:])
    return [s.strip() for s in items]


def _expand_item(item: str) -> list[str]:
    m = re.search(r"\[([^\]]*)\]", item)
    if m is None:
        return [item]
    prefix, suffix = item[: m.start()], item[m.end():]
    out = []
    for part in m.group(1).split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        if not dash:
            values = [lo]
        else:
            if not (lo.isdigit() and hi.isdigit()) or int(hi) < int(lo):
                raise ValueError(f"bad range {part!r} in SLURM nodelist item {item!r}")
            width = len(lo) if lo.startswith("0") else 0
            values = [str(v).zfill(width) for v in range(int(lo), int(hi) + 1)]
        for v in values:
            out.extend(_expand_item(prefix + v + suffix))
    return out


def slurm_master_port(job_id: str | int) -> int:
    """A port for a SLURM job without MASTER_PORT, the same on every node of the job."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return SLURM_PORT_BASE + int(digits) % SLURM_PORT_SPAN


def resolve(environ: Mapping[str, str] | None = None) -> LaunchEnv:
    """Reads rank, world size, local rank and master from ``environ`` (default: ``os.environ``)."""
    env = os.environ if environ is None else environ
    master_addr = env.get("MASTER_ADDR") or None
    master_port = _int(env, "MASTER_PORT")

    rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if rank is not None or world is not None:
        if rank is None or world is None:
            missing = "RANK" if rank is None else "WORLD_SIZE"
            raise ValueError(f"environment sets {'WORLD_SIZE' if rank is None else 'RANK'} but not {missing}")
        return LaunchEnv(rank, world, _int(env, "LOCAL_RANK"), master_addr, master_port, "torchrun")

    for source, rank_var, size_var, local_var, local_size_var in (
        ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
         "OMPI_COMM_WORLD_LOCAL_SIZE"),
        ("pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ):
        rank = _int(env, rank_var)
        if rank is None:
            continue
        world = _int(env, size_var)
        if world is None:
            raise ValueError(f"environment sets {rank_var} but not {size_var}")
        local_size = _int(env, local_size_var)
        if master_addr is None:
            if local_size is not None and local_size == world:
                master_addr = "127.0.0.1"  # every rank on this node
            else:
                master_addr = _slurm_first_node(env)
        return LaunchEnv(rank, world, _int(env, local_var), master_addr,
                         master_port if master_port is not None else _slurm_port(env), source)

    rank = _int(env, "SLURM_PROCID")
    if rank is not None:
        world = _int(env, "SLURM_STEP_NUM_TASKS")
        if world is None:
            world = _int(env, "SLURM_NTASKS") or _int(env, "SLURM_NPROCS")
        if world is None:
            raise ValueError("environment sets SLURM_PROCID but neither SLURM_STEP_NUM_TASKS nor SLURM_NTASKS")
        if master_addr is None:
            master_addr = _slurm_first_node(env)
        return LaunchEnv(rank, world, _int(env, "SLURM_LOCALID"), master_addr,
                         master_port if master_port is not None else _slurm_port(env), "slurm")

    return LaunchEnv(None, None, _int(env, "LOCAL_RANK"), master_addr, master_port, "none")


def _slurm_first_node(env: Mapping[str, str]) -> str | None:
    for name in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        spec = env.get(name)
        if spec:
            hosts = expand_nodelist(spec)
            if hosts:
                return hosts[0]
    return None


def _slurm_port(env: Mapping[str, str]) -> int | None:
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    return slurm_master_port(job_id) if job_id else None
