"""Where a worker learns its rank, world size and master from its environment.

Pure functions over an ``environ`` mapping, so they are tested with simulated environments.
Sources, most specific first (a process started by ``mpirun`` inside a SLURM allocation inherits
the batch step's ``SLURM_PROCID=0``, so the MPI variables must win over SLURM's):

1. torchrun / disttorch-run: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``
2. Open MPI: ``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``, ``OMPI_COMM_WORLD_LOCAL_RANK``
3. MVAPICH ``MV2_COMM_WORLD_*``; MPICH / Intel MPI (PMI): ``PMI_RANK``, ``PMI_SIZE``, ``MPI_LOCALRANKID``
4. SLURM (``srun``): ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` or ``SLURM_NTASKS``,
   ``SLURM_LOCALID``, master = first host of ``SLURM_STEP_NODELIST`` / ``SLURM_JOB_NODELIST``.

``MASTER_ADDR`` / ``MASTER_PORT`` always override what a scheduler implies. Everything but the torchrun
variables is read by ``disttorch_launcher.schedulers.worker_placement``, the project's one module for scheduler
variables (SLURM only counts inside an ``srun`` step: a batch script's own ``SLURM_PROCID`` is not a job).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# The one reader of scheduler variables and SLURM node lists (stdlib only, shared with the launcher).
from disttorch_launcher.schedulers import expand_nodelist, slurm_master_port, worker_placement  # noqa: F401

from disttorch_launcher.net import DEFAULT_MASTER_PORT  # noqa: F401  (torchrun's default port, defined once)


@dataclass(frozen=True)
class LaunchEnv:
    """What the environment says about this process's place in the job (None: not said)."""

    rank: int | None
    world_size: int | None
    local_rank: int | None
    master_addr: str | None
    master_port: int | None
    source: str  # "torchrun", "openmpi", "mvapich", "pmi", "slurm" or "none"


def _int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


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

    placement = worker_placement(env)
    if placement is not None:
        return LaunchEnv(placement.rank, placement.world_size, placement.local_rank,
                         master_addr or placement.master_addr,
                         master_port if master_port is not None else placement.master_port,
                         placement.scheduler)

    return LaunchEnv(None, None, _int(env, "LOCAL_RANK"), master_addr, master_port, "none")
